// What an agent reads a task's bytes from: an NBD export (QEMU's fleecing export, read with the
// qemu plug-in's NBD client: ARCHITECTURE.md's departure agent -> plugins/qemu), a file, or a
// block device. Each becomes the transfer sender's ReadSource; an NBD source also answers which
// ranges hold data (base:allocation), so holes and zeros cross as extents only, and, for an
// incremental, which ranges the dirty bitmap marks (only those are read).
//
// Memory: nothing here buffers beyond one read the sender asks for.

import fs from 'node:fs/promises';
import path from 'node:path';
import { vmError } from '../errors.js';
import { NbdClient } from '../plugins/qemu/nbd-client.js';
import { BASE_ALLOCATION, extents, STATE_DIRTY, STATE_ZERO } from '../plugins/qemu/nbd-extents.js';
import { parseSocketAddress } from '../plugins/qemu/socket-address.js';

export interface Range {
  offset: number;
  length: number;
}

export interface AgentSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** The same bytes as pieces in order, not copied into one buffer (the sender's ReadSource.readv). */
  readv?(offset: number, length: number): Promise<Buffer[]>;
  /** Gives back readv's pieces once copied (the sender's ReadSource.release). */
  release?(bufs: Buffer[]): void;
  dataRanges?(offset: number, length: number): Promise<Array<{ offset: number; length: number; zero: boolean }>>;
  /** Incremental: the ranges the dirty bitmap marks, in order. */
  dirtyRanges?(): Promise<Range[]>;
  close(): Promise<void>;
}

export type SourceSpec = { kind: 'nbd'; address: string; exportName: string; dirtyContext?: string } | { kind: 'file'; path: string };

export async function openSource(spec: SourceSpec): Promise<AgentSource> {
  if (spec === null || typeof spec !== 'object') throw vmError('INVALID_ARGUMENT', 'task source is not an object');
  if (spec.kind === 'nbd') return NbdSource.open(spec.address, spec.exportName, spec.dirtyContext);
  if (spec.kind === 'file') return FileSource.open(spec.path);
  throw vmError('NOT_SUPPORTED', `task source kind ${JSON.stringify(String((spec as { kind?: unknown }).kind).slice(0, 40))} is not one this agent reads (nbd, file)`);
}

class NbdSource implements AgentSource {
  private constructor(
    private readonly client: NbdClient,
    private readonly dirtyContext: string | undefined,
  ) {}

  static async open(address: string, exportName: string, dirtyContext?: string): Promise<NbdSource> {
    if (typeof address !== 'string' || typeof exportName !== 'string') throw vmError('INVALID_ARGUMENT', 'an NBD source needs an address and an export name');
    if (dirtyContext !== undefined && (typeof dirtyContext !== 'string' || !dirtyContext.startsWith('qemu:dirty-bitmap:'))) {
      throw vmError('INVALID_ARGUMENT', `dirty context ${JSON.stringify(String(dirtyContext).slice(0, 80))} is not qemu:dirty-bitmap:NAME`);
    }
    const a = parseSocketAddress(address, 'NBD source');
    const client = await NbdClient.connect({
      ...(a.kind === 'unix' ? { socket: a.path } : { host: a.host, port: a.port }),
      exportName,
      metaContexts: dirtyContext ? [BASE_ALLOCATION, dirtyContext] : [BASE_ALLOCATION],
    });
    return new NbdSource(client, dirtyContext);
  }

  get size(): number {
    return this.client.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = await this.client.read(offset, length);
    if (buf.length !== length) throw vmError('IO', `NBD read at ${offset} returned ${buf.length} bytes, not ${length}`);
    return buf;
  }

  /**
   * The socket's receive buffers as they arrived (NbdClient.readv): the sender copies them into
   * its slabs, so copying them first into a fresh buffer per read (a page fault every 4 KiB,
   * and garbage) was a second copy of every byte read.
   */
  async readv(offset: number, length: number): Promise<Buffer[]> {
    const bufs = await this.client.readv(offset, length);
    let got = 0;
    for (const b of bufs) got += b.length;
    if (got !== length) throw vmError('IO', `NBD read at ${offset} returned ${got} bytes, not ${length}`);
    return bufs;
  }

  /** readv's pieces are copied: the client may reuse their receive slab (NbdClient.release). */
  release(bufs: Buffer[]): void {
    this.client.release(bufs);
  }

  async dataRanges(offset: number, length: number): Promise<Array<{ offset: number; length: number; zero: boolean }>> {
    const out: Array<{ offset: number; length: number; zero: boolean }> = [];
    for await (const e of extents(this.client, BASE_ALLOCATION, offset, length)) {
      const zero = (e.flags & STATE_ZERO) !== 0;
      const last = out.at(-1);
      if (last && last.zero === zero && last.offset + last.length === e.offset) last.length += e.length;
      else out.push({ offset: e.offset, length: e.length, zero });
    }
    return out;
  }

  async dirtyRanges(): Promise<Range[]> {
    if (this.dirtyContext === undefined) throw vmError('INVALID_ARGUMENT', 'this NBD source has no dirty bitmap');
    const out: Range[] = [];
    for await (const e of extents(this.client, this.dirtyContext, 0, this.client.size)) {
      if (!(e.flags & STATE_DIRTY)) continue;
      const last = out.at(-1);
      if (last && last.offset + last.length === e.offset) last.length += e.length;
      else out.push({ offset: e.offset, length: e.length });
    }
    return out;
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/** Walks a metadata context over [offset, offset+length), clipped, refusing gaps and stalls (the server is untrusted). */

/** A regular file or a block device, read with pread. */
class FileSource implements AgentSource {
  private constructor(
    private readonly fh: fs.FileHandle,
    readonly size: number,
  ) {}

  static async open(file: string): Promise<FileSource> {
    if (typeof file !== 'string' || !path.isAbsolute(file)) throw vmError('INVALID_ARGUMENT', `a file source needs an absolute path, not ${JSON.stringify(String(file).slice(0, 200))}`);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(file, 'r');
    } catch (err) {
      throw vmError('IO', `opening source ${file}: ${(err as Error).message}`, undefined, err);
    }
    try {
      const st = await fh.stat();
      let size = st.size;
      if (st.isBlockDevice()) size = await blockDeviceSize(st.rdev);
      else if (!st.isFile()) throw vmError('INVALID_ARGUMENT', `source ${file} is neither a file nor a block device`);
      return new FileSource(fh, size);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) throw vmError('IO', `source ended at ${offset + got}, before ${offset + length} (did it shrink?)`);
      got += bytesRead;
    }
    return buf;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** A block device's size from sysfs (in 512-byte sectors whatever the device's block size). */
async function blockDeviceSize(rdev: number): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 4096) & 0xfff00) >>> 0);
  const text = await fs.readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8').catch((err) => {
    throw vmError('IO', `cannot read the size of block device ${major}:${minor} from sysfs: ${(err as Error).message}`);
  });
  return Number(text.trim()) * 512;
}
