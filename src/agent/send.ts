// The agent's one door into the transfer protocol (src/transfer/: sendFile, TransferConnection;
// roster.md's contract). Kept to this file so the rest of the agent knows only "send this source
// to that share file under this task id".

import { TransferConnection } from '../transfer/client.js';
import { type ReadSource, type SendReport, type SendTarget, sendFile as transferSend } from '../transfer/sender.js';

export type { SendReport, SendTarget };
export type Sendable = ReadSource;
export type Connection = TransferConnection;

export function openTransfer(opts: { url: string; token: string; pinSha256?: string }): Promise<Connection> {
  return TransferConnection.open(opts);
}

export function sendFile(conn: Connection, source: Sendable, target: SendTarget, opts: { signal?: AbortSignal; onProgress?: (r: SendReport) => void }): Promise<SendReport> {
  return transferSend(conn, source, target, opts);
}
