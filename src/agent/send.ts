// The agent's one door into the transfer protocol (src/transfer/: sendFile, TransferConnection;
// roster.md's contract). Kept to this file so the rest of the agent knows only "send this source
// to that share file under this task id".

import { vmError } from '../errors.js';

export interface SendReport {
  bytesRead: number;
  bytesSent: number;
  fingerprintBytes: number;
  segments: number;
  segmentsSent: number;
  segmentBytesSent: number;
  zeroBytes: number;
}

export interface Sendable {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  dataRanges?(offset: number, length: number): Promise<Array<{ offset: number; length: number; zero: boolean }>>;
}

export interface SendTarget {
  share: string;
  path: string;
  size: number;
  ranges?: Array<{ offset: number; length: number }>;
  taskId?: string;
}

export interface Connection {
  close(): Promise<void>;
}

interface TransferModules {
  open(opts: { url: string; token: string; pinSha256?: string }): Promise<Connection>;
  send(conn: Connection, source: Sendable, target: SendTarget, opts: { signal?: AbortSignal; onProgress?: (r: SendReport) => void }): Promise<SendReport>;
}

let loaded: Promise<TransferModules> | undefined;

// Loaded at run time by name until the transfer branch is merged here (the agent builds without
// it); then these become static imports.
async function load(): Promise<TransferModules> {
  loaded ??= (async () => {
    const clientPath = '../transfer/client.js';
    const senderPath = '../transfer/sender.js';
    try {
      const client = (await import(clientPath)) as { TransferConnection: { open: TransferModules['open'] } };
      const sender = (await import(senderPath)) as { sendFile: TransferModules['send'] };
      return { open: (o) => client.TransferConnection.open(o), send: sender.sendFile };
    } catch (err) {
      throw vmError('NOT_SUPPORTED', `this vmvault has no transfer protocol sender (src/transfer/): ${(err as Error).message}`);
    }
  })();
  loaded.catch(() => (loaded = undefined));
  return loaded;
}

export async function openTransfer(opts: { url: string; token: string; pinSha256?: string }): Promise<Connection> {
  return (await load()).open(opts);
}

export async function sendFile(conn: Connection, source: Sendable, target: SendTarget, opts: { signal?: AbortSignal; onProgress?: (r: SendReport) => void }): Promise<SendReport> {
  return (await load()).send(conn, source, target, opts);
}
