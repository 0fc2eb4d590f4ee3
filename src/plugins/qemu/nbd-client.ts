// A small NBD client (read side only): the fixed newstyle handshake with structured replies,
// meta contexts and NBD_OPT_GO, then NBD_CMD_READ and NBD_CMD_BLOCK_STATUS with several requests
// in flight, and NBD_CMD_DISC. The subset and what it checks are written down in NBD.md.
//
// The server is untrusted (a VM's QEMU, or anything at that socket): every length it sends is
// bounded before anything is allocated, every reply must name a request in flight and stay inside
// it, a read must be covered exactly, and a short reply, a closed socket or silence past the
// deadline fails the requests with a clear error instead of hanging them.
//
// What a caller may rely on: read() resolves with a Buffer of exactly `length` bytes that it owns
// (holes are zeros); readv() with views it owns until it gives them back with release(); blockStatus() resolves with extents that cover [offset, offset+length)
// exactly, in order, adjacent extents with equal flags merged.

import type net from 'node:net';
import { vmError, type VmvaultError } from '../../errors.js';
import { ByteQueue } from './byte-queue.js';
import { openSocket } from './socket-address.js';

export interface NbdExtent {
  offset: number;
  length: number;
  /** Per context: base:allocation 1 = hole, 2 = zero; qemu:dirty-bitmap:NAME 1 = dirty. */
  flags: number;
}

export interface NbdConnectOptions {
  socket?: string;
  host?: string;
  port?: number;
  exportName: string;
  metaContexts?: string[];
  /** Deadline of the handshake and of each request (default 60 s). */
  timeoutMs?: number;
}

// Protocol constants (NBD.md lists where each is used).
const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OLDSTYLE_MAGIC = 0x00420281861253n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;

const OPT_ABORT = 2;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_SET_META_CONTEXT = 10;

const REP_ACK = 1;
const REP_INFO = 3;
const REP_META_CONTEXT = 4;
const REP_ERR_BIT = 0x80000000;
const REP_ERR_NAMES: Record<number, string> = {
  1: 'unsupported',
  2: 'forbidden by policy',
  3: 'invalid',
  4: 'not supported on this platform',
  5: 'TLS required',
  6: 'unknown export',
  7: 'server shutting down',
  8: 'block size required',
  9: 'too big',
};

const INFO_EXPORT = 0;
const INFO_BLOCK_SIZE = 3;

const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
const CMD_WRITE_ZEROES = 6;
const CMD_BLOCK_STATUS = 7;

/** Transmission flags (NBD_FLAG_*) the writer looks at. */
const TFLAG_READ_ONLY = 1 << 1;
const TFLAG_SEND_FLUSH = 1 << 2;
const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
/** A zero run asked of the server at once (NBD_CMD_WRITE_ZEROES carries a u32 length). */
const MAX_ZEROES_REQUEST = 1024 * 1024 * 1024;

const REPLY_FLAG_DONE = 1;
const REPLY_NONE = 0;
const REPLY_OFFSET_DATA = 1;
const REPLY_OFFSET_HOLE = 2;
const REPLY_BLOCK_STATUS = 5;
const REPLY_ERROR = 0x8001;
const REPLY_ERROR_OFFSET = 0x8002;

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};

/** Largest option reply we accept (names, context names, error text). */
const MAX_OPTION_REPLY = 64 * 1024;
/**
 * Largest read request we send; a smaller server maximum (NBD_INFO_BLOCK_SIZE) wins. Larger
 * requests are split into pieces of this size, all in flight: measured against qemu-nbd 7.2 here,
 * 4 MiB requests ran 5-7 times slower than 1 MiB ones (nbdcopy --request-size too).
 */
const MAX_READ = 1024 * 1024;
/**
 * Bytes of reads sent and not yet answered, per connection; further reads wait in order (and
 * their deadline starts when they are sent). Measured here reading 1 GiB (7/8 data, 1 MiB holes)
 * from qemu-nbd 7.2 in 1 MiB requests: a cap of 1 MiB took 3.7-6.6 s, 2 MiB 2.0-3.0 s, 4 MiB
 * 4.0-5.6 s, 8 MiB 10.4-11.0 s: more reads at once make the server slower, not faster.
 */
const MAX_INFLIGHT_BYTES = 2 * 1024 * 1024;
/** Largest block-status request (the server may answer less; we ask again for the rest). */
const MAX_STATUS_REQUEST = 0x80000000 - 512 * 1024 * 1024; // 1.5 GiB, aligned
/** Largest block-status chunk: 8 bytes per extent, 2 Mi extents. */
const MAX_STATUS_CHUNK = 4 + 8 * 2 * 1024 * 1024;
/** Largest error chunk: 4 error + 2 length + message (<= 4096 per spec) + 8 offset. */
const MAX_ERROR_CHUNK = 4 + 2 + 4096 + 8;

interface Request {
  handle: bigint;
  type: number;
  offset: number;
  length: number;
  /** READ: the destination; holes stay zero. WRITE: the payload sent after the header. */
  buf?: Buffer;
  /** READ by readv: the reply's bytes as received, (position in the request, view) in any order. */
  parts?: Array<{ pos: number; buf: Buffer }>;
  /** READ: [start, end) of every chunk, to prove exact coverage. */
  covered?: Array<[number, number]>;
  /** BLOCK_STATUS: descriptors per context id. */
  status?: Map<number, Array<{ length: number; flags: number }>>;
  error?: VmvaultError;
  resolve(r: Request): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

type Address = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export class NbdClient {
  /** The export's size in bytes. */
  size = 0;
  /** Transmission flags of the export (NBD_FLAG_*). */
  transmissionFlags = 0;
  /** The largest read request sent: MAX_READ or the server's maximum when smaller. */
  maxBlock = MAX_READ;
  /** Read bytes in flight on this connection before further reads wait (MAX_INFLIGHT_BYTES). */
  maxInflightBytes = MAX_INFLIGHT_BYTES;
  /** Context name -> id the server assigned. */
  readonly contexts = new Map<string, number>();

  private readonly inflight = new Map<bigint, Request>();
  private nextHandle = 1n;
  private broken: VmvaultError | null = null;
  private pumping = false;
  /** The chunk being streamed into a read's buffer: request, position, bytes left. */
  private streaming: { req: Request; pos: number; left: number; done: boolean } | null = null;

  private constructor(
    private readonly sock: net.Socket,
    private readonly where: string,
    readonly exportName: string,
    private readonly timeoutMs: number,
    private readonly q: ByteQueue,
    private readonly slabs: ReceiveSlabs,
  ) {}

  /** Socket reads so far and the receive slabs they filled (for tests and benches). */
  get receiveStats(): { reads: number; slabs: number; reused: number; bytes: number } {
    return { reads: this.slabs.reads, slabs: this.slabs.count, reused: this.slabs.reused, bytes: this.slabs.bytes };
  }

  static async connect(opts: NbdConnectOptions): Promise<NbdClient> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    let addr: Address;
    if (opts.socket) addr = { kind: 'unix', path: opts.socket };
    else if (opts.host && opts.port) addr = { kind: 'tcp', host: opts.host, port: opts.port };
    else throw vmError('INVALID_ARGUMENT', 'NBD: give either socket or host and port');
    if (Buffer.byteLength(opts.exportName) > 4096) throw vmError('INVALID_ARGUMENT', 'NBD: export name longer than 4096 bytes');
    // The socket reads into receive slabs (see ReceiveSlabs); what arrives before the client
    // exists (the server's greeting may) waits in the queue the client takes over.
    const q = new ByteQueue();
    const slabs = new ReceiveSlabs();
    let c: NbdClient | undefined;
    const sock = await openSocket(addr, 'NBD server', timeoutMs, {
      buffer: () => slabs.next(q.length),
      callback: (n: number, buf: Uint8Array) => {
        q.push(slabs.took(buf, n));
        if (c?.handshaken) c.pump();
        return true;
      },
    });
    const where = addr.kind === 'unix' ? addr.path : `${addr.host}:${addr.port}`;
    c = new NbdClient(sock, where, opts.exportName, timeoutMs, q, slabs);
    sock.on('error', (err) => c.breakWith(vmError('IO', `NBD ${c.where}: ${err.message}`, undefined, err)));
    sock.on('close', () => c.breakWith(vmError('IO', `NBD ${c.where}: the server closed the connection${c.inflight.size ? ' with requests in flight' : ''}`)));
    const timer = setTimeout(
      () => c.breakWith(vmError('IO', `NBD ${c.where}: handshake not finished within ${timeoutMs} ms; is this an NBD server (qemu block-export-add, qemu-nbd)?`)),
      timeoutMs,
    );
    try {
      await c.handshake(opts.metaContexts ?? []);
    } catch (err) {
      // A server we negotiate with is told we leave (NBD_OPT_ABORT) instead of seeing EOF.
      if (c.negotiating && !sock.destroyed) {
        c.sendOption(OPT_ABORT, Buffer.alloc(0));
        sock.end();
        setTimeout(() => sock.destroy(), 1000).unref();
      } else {
        sock.destroy();
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
    c.handshaken = true;
    if (c.q.length > 0) c.pump();
    return c;
  }

  private handshaken = false;
  /** Past the greeting: options may be sent. */
  private negotiating = false;

  // ---- handshake -------------------------------------------------------------------------

  private async readN(n: number): Promise<Buffer> {
    await this.q.need(n);
    return this.q.take(n);
  }

  private protocol(msg: string): VmvaultError {
    return vmError('IO', `NBD ${this.where}: protocol error: ${msg}`);
  }

  private async handshake(metaContexts: string[]): Promise<void> {
    const hello = await this.readN(16);
    if (hello.readBigUInt64BE(0) !== NBDMAGIC) throw this.protocol('the server did not greet with NBDMAGIC; is this an NBD server?');
    const second = hello.readBigUInt64BE(8);
    if (second === OLDSTYLE_MAGIC) throw this.protocol('the server speaks oldstyle NBD; only fixed newstyle is supported');
    if (second !== IHAVEOPT) throw this.protocol(`unknown handshake magic 0x${second.toString(16)}`);
    const sflags = (await this.readN(2)).readUInt16BE(0);
    if (!(sflags & FLAG_FIXED_NEWSTYLE)) throw this.protocol('the server does not offer fixed newstyle negotiation');
    const cflags = Buffer.alloc(4);
    cflags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (sflags & FLAG_NO_ZEROES));
    this.sock.write(cflags);
    this.negotiating = true;

    // Structured replies: required (block status needs them, and reads with holes use them).
    this.sendOption(OPT_STRUCTURED_REPLY, Buffer.alloc(0));
    const sr = await this.readOptionReply(OPT_STRUCTURED_REPLY);
    if (sr.type !== REP_ACK) throw this.protocol(`unexpected reply ${sr.type} to NBD_OPT_STRUCTURED_REPLY`);

    const name = Buffer.from(this.exportName);
    if (metaContexts.length > 0) {
      const parts: Buffer[] = [u32(name.length), name, u32(metaContexts.length)];
      for (const m of metaContexts) {
        const mb = Buffer.from(m);
        parts.push(u32(mb.length), mb);
      }
      this.sendOption(OPT_SET_META_CONTEXT, Buffer.concat(parts));
      for (let n = 0; ; n++) {
        if (n > metaContexts.length) throw this.protocol('more meta contexts than were asked for');
        const r = await this.readOptionReply(OPT_SET_META_CONTEXT);
        if (r.type === REP_ACK) break;
        if (r.type !== REP_META_CONTEXT || r.data.length < 4) throw this.protocol(`unexpected reply ${r.type} to NBD_OPT_SET_META_CONTEXT`);
        const id = r.data.readUInt32BE(0);
        const ctx = r.data.subarray(4).toString();
        if (!metaContexts.includes(ctx)) throw this.protocol(`the server chose meta context ${JSON.stringify(ctx)}, which was not asked for`);
        this.contexts.set(ctx, id);
      }
      const missing = metaContexts.filter((m) => !this.contexts.has(m));
      if (missing.length > 0) {
        const hint = missing.some((m) => m.startsWith('qemu:dirty-bitmap:'))
          ? ' (a dirty bitmap must be named in block-export-add bitmaps:[...], or qemu-nbd -B)'
          : '';
        throw vmError('NOT_FOUND', `NBD ${this.where}: export ${JSON.stringify(this.exportName)} offers no meta context ${missing.join(', ')}${hint}`);
      }
    }

    this.sendOption(OPT_GO, Buffer.concat([u32(name.length), name, u16(1), u16(INFO_BLOCK_SIZE)]));
    let haveExport = false;
    for (let n = 0; ; n++) {
      if (n > 16) throw this.protocol('too many NBD_REP_INFO replies');
      const r = await this.readOptionReply(OPT_GO);
      if (r.type === REP_ACK) break;
      if (r.type !== REP_INFO || r.data.length < 2) throw this.protocol(`unexpected reply ${r.type} to NBD_OPT_GO`);
      const info = r.data.readUInt16BE(0);
      if (info === INFO_EXPORT) {
        if (r.data.length !== 12) throw this.protocol(`NBD_INFO_EXPORT of ${r.data.length} bytes, not 12`);
        const size = r.data.readBigUInt64BE(2);
        if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw this.protocol(`export size ${size} is beyond what this client handles`);
        this.size = Number(size);
        this.transmissionFlags = r.data.readUInt16BE(10);
        haveExport = true;
      } else if (info === INFO_BLOCK_SIZE && r.data.length === 14) {
        const max = r.data.readUInt32BE(10);
        if (max >= 512) this.maxBlock = Math.min(MAX_READ, max);
      }
    }
    if (!haveExport) throw this.protocol('NBD_OPT_GO succeeded without NBD_INFO_EXPORT (size unknown)');
  }

  private sendOption(option: number, data: Buffer): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(data.length, 12);
    this.sock.write(Buffer.concat([h, data]));
  }

  private async readOptionReply(option: number): Promise<{ type: number; data: Buffer }> {
    const h = await this.readN(20);
    if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw this.protocol('bad option reply magic');
    const opt = h.readUInt32BE(8);
    if (opt !== option) throw this.protocol(`reply to option ${opt} while option ${option} was asked`);
    const type = h.readUInt32BE(12);
    const len = h.readUInt32BE(16);
    if (len > MAX_OPTION_REPLY) throw this.protocol(`option reply of ${len} bytes (limit ${MAX_OPTION_REPLY})`);
    const data = Buffer.from(await this.readN(len));
    if (type >= REP_ERR_BIT) {
      const err = type - REP_ERR_BIT;
      const what = REP_ERR_NAMES[err] ?? `error ${err}`;
      const text = data.toString().slice(0, 500);
      const code = err === 6 ? 'NOT_FOUND' : err === 1 ? 'NOT_SUPPORTED' : 'IO';
      throw vmError(code, `NBD ${this.where}: export ${JSON.stringify(this.exportName)}: ${optionName(option)} refused: ${what}${text ? `: ${text}` : ''}`);
    }
    return { type, data };
  }

  // ---- transmission ----------------------------------------------------------------------

  /** Reads waiting for room under MAX_INFLIGHT_BYTES, in order; the waker reserves their cost. */
  private readonly waiting: Array<{ cost: number; go(): void }> = [];
  private inflightBytes = 0;

  /** Cost of a request against MAX_INFLIGHT_BYTES: the bytes it moves (a read's reply, a write's payload). */
  private static cost(type: number, length: number): number {
    return type === CMD_READ || type === CMD_WRITE ? length : 0;
  }

  private async send(type: number, offset: number, length: number, extra: Partial<Request> = {}): Promise<Request> {
    if (this.broken) throw vmError(this.broken.code, this.broken.message);
    const cost = NbdClient.cost(type, length);
    if (cost > 0) {
      if (this.waiting.length === 0 && (this.inflightBytes === 0 || this.inflightBytes + cost <= this.maxInflightBytes)) this.inflightBytes += cost;
      else await new Promise<void>((go) => this.waiting.push({ cost, go }));
      // The connection may have failed while this read waited (TS cannot see that across await).
      const broken = this.broken as VmvaultError | null;
      if (broken) throw vmError(broken.code, broken.message);
    }
    return this.sendNow(type, offset, length, extra);
  }

  /** Lets queued reads go, in order, while they fit (one always may when nothing is in flight). */
  private wakeWaiting(): void {
    while (this.waiting.length > 0) {
      const w = this.waiting[0];
      if (!this.broken && this.inflightBytes > 0 && this.inflightBytes + w.cost > this.maxInflightBytes) return;
      this.waiting.shift();
      this.inflightBytes += w.cost;
      w.go();
    }
  }

  private sendNow(type: number, offset: number, length: number, extra: Partial<Request>): Promise<Request> {
    const handle = this.nextHandle++;
    return new Promise<Request>((resolve, reject) => {
      const req: Request = {
        handle,
        type,
        offset,
        length,
        resolve,
        reject,
        ...extra,
        timer: setTimeout(
          () =>
            this.breakWith(
              vmError('IO', `NBD ${this.where}: no complete reply to ${cmdName(type)} at ${offset}+${length} within ${this.timeoutMs} ms; the server hangs`),
            ),
          this.timeoutMs,
        ),
      };
      this.inflight.set(handle, req);
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(0, 4);
      h.writeUInt16BE(type, 6);
      h.writeBigUInt64BE(handle, 8);
      h.writeBigUInt64BE(BigInt(offset), 16);
      h.writeUInt32BE(length, 24);
      this.queueRequest(h);
      if (type === CMD_WRITE) this.queueRequest(req.buf!);
    });
  }

  /** Request headers sent in this tick, written together once it ends. */
  private outgoing: Buffer[] = [];

  /**
   * Queues a request header (or a write's payload, right after its header); what one tick
   * queued (the reads a batch of replies let go) leaves in one corked socket write. One write per
   * 28-byte request cost ~0.4 s of main-thread CPU over a 460 MiB full backup (a syscall each,
   * and a wake-up of the server each). Payloads are not copied into one buffer: cork and uncork
   * make the writes of a tick one writev.
   */
  private queueRequest(h: Buffer): void {
    this.outgoing.push(h);
    if (this.outgoing.length > 1) return;
    process.nextTick(() => {
      const out = this.outgoing;
      this.outgoing = [];
      if (this.sock.destroyed) return;
      if (out.length === 1) {
        this.sock.write(out[0]);
        return;
      }
      this.sock.cork();
      for (const b of out) this.sock.write(b);
      this.sock.uncork();
    });
  }

  private checkRange(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw vmError('INVALID_ARGUMENT', `NBD ${what} ${offset}+${length}: outside the export (size ${this.size})`);
    }
  }

  /** Reads [offset, offset+length); split into requests of at most maxBlock, all in flight. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange(offset, length, 'read');
    // Not zeroed: finish() proves data and hole chunks covered every byte (holes are filled).
    const out = Buffer.allocUnsafe(length);
    const parts: Promise<Request>[] = [];
    for (let pos = 0; pos < length; pos += this.maxBlock) {
      const n = Math.min(this.maxBlock, length - pos);
      parts.push(this.send(CMD_READ, offset + pos, n, { buf: out.subarray(pos, pos + n), covered: [] }));
    }
    await Promise.all(parts);
    return out;
  }

  /**
   * Reads [offset, offset+length) like read(), but returns the bytes as they arrived: views of
   * the socket's own receive buffers, in order, with no copy into one buffer. The copy into a
   * fresh buffer per read cost 0.73 s of main-thread CPU over a 460 MiB full backup (fresh
   * memory: a page fault every 4 KiB); the socket's buffers are written once by the kernel and
   * can be handed on as they are. Holes come as zero-filled buffers.
   *
   * The caller owns the views until it passes them to release(), after which it must not touch
   * them (nor anything cut from them): their memory takes later replies. Views never released
   * stay valid for good (their slab is not reused); release() is what lets the client reuse
   * receive slabs instead of allocating fresh ones (see ReceiveSlabs).
   */
  async readv(offset: number, length: number): Promise<Buffer[]> {
    this.checkRange(offset, length, 'read');
    const parts: Promise<Request>[] = [];
    for (let pos = 0; pos < length; pos += this.maxBlock) {
      const n = Math.min(this.maxBlock, length - pos);
      parts.push(this.send(CMD_READ, offset + pos, n, { parts: [], covered: [] }));
    }
    const out: Buffer[] = [];
    // finish() proved that each request's parts cover it exactly, without overlap.
    for (const req of await Promise.all(parts)) for (const p of req.parts!.sort((a, b) => a.pos - b.pos)) out.push(p.buf);
    return out;
  }

  /** Gives back views readv() returned once their bytes were copied (see readv); anything else is ignored. */
  release(bufs: Buffer[]): void {
    for (const b of bufs) this.slabs.release(b);
  }

  /** The extents of `context` over [offset, offset+length), asking again where the server answered less. */
  async blockStatus(offset: number, length: number, context: string): Promise<NbdExtent[]> {
    this.checkRange(offset, length, 'block status');
    const id = this.contexts.get(context);
    if (id === undefined) {
      throw vmError('INVALID_ARGUMENT', `NBD: meta context ${JSON.stringify(context)} was not negotiated (connect with metaContexts: [${JSON.stringify(context)}])`);
    }
    const out: NbdExtent[] = [];
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const n = Math.min(MAX_STATUS_REQUEST, end - pos);
      const req = await this.send(CMD_BLOCK_STATUS, pos, n, { status: new Map() });
      const descs = req.status!.get(id);
      if (!descs || descs.length === 0) throw this.fatal(`no block status for context ${context} at ${pos}+${n}`);
      for (const d of descs) {
        if (pos >= end) break;
        const len = Math.min(d.length, end - pos);
        const last = out[out.length - 1];
        if (last && last.flags === d.flags) last.length += len;
        else out.push({ offset: pos, length: len, flags: d.flags });
        pos += len;
      }
    }
    return out;
  }

  /** True when the server lets us write (NBD_FLAG_READ_ONLY is clear). */
  get writable(): boolean {
    return (this.transmissionFlags & TFLAG_READ_ONLY) === 0;
  }

  private checkWritable(what: string): void {
    if (!this.writable) throw vmError('READ_ONLY', `NBD ${this.where}: export ${JSON.stringify(this.exportName)} is read-only; cannot ${what} (export it writable, e.g. qemu-nbd without --read-only)`);
  }

  /**
   * Writes `data` at `offset`, split into requests of at most maxBlock, all in flight (bounded by
   * maxInflightBytes like reads). Resolves when the server has answered every piece; the bytes
   * are durable only after flush().
   */
  async write(offset: number, data: Buffer): Promise<void> {
    this.checkRange(offset, data.length, 'write');
    this.checkWritable('write');
    const parts: Promise<Request>[] = [];
    for (let pos = 0; pos < data.length; pos += this.maxBlock) {
      const n = Math.min(this.maxBlock, data.length - pos);
      parts.push(this.send(CMD_WRITE, offset + pos, n, { buf: data.subarray(pos, pos + n) }));
    }
    await Promise.all(parts);
  }

  /**
   * Makes [offset, offset+length) read as zeros: NBD_CMD_WRITE_ZEROES where the server offers it
   * (without NO_HOLE, so it may punch holes: zeros cost the target nothing), else writes of zeros.
   */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length, 'write zeroes');
    this.checkWritable('write zeroes');
    const parts: Promise<unknown>[] = [];
    if (this.transmissionFlags & TFLAG_SEND_WRITE_ZEROES) {
      for (let pos = 0; pos < length; pos += MAX_ZEROES_REQUEST) parts.push(this.send(CMD_WRITE_ZEROES, offset + pos, Math.min(MAX_ZEROES_REQUEST, length - pos)));
    } else {
      const zeros = Buffer.alloc(Math.min(this.maxBlock, length));
      for (let pos = 0; pos < length; pos += zeros.length) {
        const n = Math.min(zeros.length, length - pos);
        parts.push(this.send(CMD_WRITE, offset + pos, n, { buf: zeros.subarray(0, n) }));
      }
    }
    await Promise.all(parts);
  }

  /** Asks the server to make every answered write durable (NBD_CMD_FLUSH); a no-op when it offers no flush. */
  async flush(): Promise<void> {
    if (!(this.transmissionFlags & TFLAG_SEND_FLUSH)) return;
    await this.send(CMD_FLUSH, 0, 0);
  }

  /** Sends NBD_CMD_DISC once nothing is in flight, and closes the socket. Idempotent. */
  async close(): Promise<void> {
    if (this.sock.destroyed) return;
    if (!this.broken && this.inflight.size === 0) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(CMD_DISC, 6);
      h.writeBigUInt64BE(this.nextHandle++, 8);
      this.sock.write(h);
    }
    const closed = new Promise<void>((resolve) => this.sock.once('close', () => resolve()));
    this.breakWith(vmError('CLOSED', `NBD ${this.where}: the client was closed`), true);
    await closed;
  }

  /** Fails every request in flight and the connection. */
  private breakWith(err: VmvaultError, graceful = false): void {
    if (this.broken) return;
    this.broken = err;
    this.q.fail(err);
    for (const r of this.inflight.values()) {
      clearTimeout(r.timer);
      r.reject(vmError(err.code, `${err.message} (${cmdName(r.type)} at ${r.offset}+${r.length} unanswered)`));
    }
    this.inflight.clear();
    this.wakeWaiting(); // they see `broken` and fail
    if (graceful) this.sock.end();
    else this.sock.destroy();
  }

  private fatal(msg: string): VmvaultError {
    const e = this.protocol(msg);
    this.breakWith(e);
    return e;
  }

  /** Parses every complete reply (or part of a data chunk) that has arrived. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.broken) {
        if (this.streaming) {
          const s = this.streaming;
          const k = Math.min(s.left, this.q.length);
          if (k === 0) return;
          if (s.req.parts) {
            for (const v of this.q.takeViews(k)) {
              this.slabs.lend(v);
              s.req.parts.push({ pos: s.pos, buf: v });
              s.pos += v.length;
            }
            s.pos -= k;
          } else {
            this.q.copyInto(s.req.buf!, s.pos, k);
          }
          s.pos += k;
          s.left -= k;
          if (s.left > 0) return;
          this.streaming = null;
          if (s.done) this.finish(s.req);
          continue;
        }
        if (this.q.length < 4) return;
        const m = this.q.peek(4).readUInt32BE(0);
        if (m === SIMPLE_REPLY_MAGIC) {
          if (!this.parseSimple()) return;
        } else if (m === STRUCTURED_REPLY_MAGIC) {
          if (!this.parseStructured()) return;
        } else {
          this.fatal(`bad reply magic 0x${m.toString(16)}`);
          return;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private request(handle: bigint): Request | null {
    const r = this.inflight.get(handle);
    if (!r) {
      this.fatal(`a reply names handle ${handle}, which no request in flight carries`);
      return null;
    }
    return r;
  }

  /** Parses one simple reply if it has arrived whole; false when more bytes are needed or it failed. */
  private parseSimple(): boolean {
    if (this.q.length < 16) return false;
    const h = this.q.take(16);
    const error = h.readUInt32BE(4);
    const req = this.request(h.readBigUInt64BE(8));
    if (!req) return false;
    if (error === 0) {
      // With structured replies negotiated, a READ or BLOCK_STATUS must be answered structured;
      // a write, write-zeroes or flush may be answered either way (QEMU answers them simply).
      if (req.type === CMD_READ || req.type === CMD_BLOCK_STATUS) {
        this.fatal(`a simple reply without error to ${cmdName(req.type)}, where a structured reply is required`);
        return false;
      }
      this.finish(req);
      return true;
    }
    req.error = this.serverError(req, error, '');
    this.finish(req);
    return true;
  }

  /** Parses one structured chunk (or starts streaming a data chunk); false when more bytes are needed or it failed. */
  private parseStructured(): boolean {
    if (this.q.length < 20) return false;
    const h = this.q.peek(20);
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const handle = h.readBigUInt64BE(8);
    const len = h.readUInt32BE(16);
    const req = this.request(handle);
    if (!req) return false;
    const done = (flags & REPLY_FLAG_DONE) !== 0;
    const limit =
      type === REPLY_NONE
        ? 0
        : type === REPLY_OFFSET_DATA
          ? req.type === CMD_READ
            ? 8 + req.length
            : -1
          : type === REPLY_OFFSET_HOLE
            ? req.type === CMD_READ
              ? 12
              : -1
            : type === REPLY_BLOCK_STATUS
              ? req.type === CMD_BLOCK_STATUS
                ? MAX_STATUS_CHUNK
                : -1
              : type & 0x8000
                ? MAX_ERROR_CHUNK
                : -1;
    if (limit < 0) {
      this.fatal(`reply chunk type ${type} to ${cmdName(req.type)}, which does not allow it`);
      return false;
    }
    if (len > limit || (type === REPLY_NONE && !done)) {
      this.fatal(`reply chunk type ${type} of ${len} bytes to ${cmdName(req.type)} at ${req.offset}+${req.length} (limit ${limit})`);
      return false;
    }
    if (type === REPLY_OFFSET_DATA) {
      // Stream the data straight into the read's buffer once its offset is known.
      if (len < 9) {
        this.fatal(`data chunk of ${len} bytes (at least 9)`);
        return false;
      }
      if (this.q.length < 28) return false;
      const off = Number(this.q.take(28).readBigUInt64BE(20));
      const n = len - 8;
      if (!this.cover(req, off, n)) return false;
      this.streaming = { req, pos: off - req.offset, left: n, done };
      return true;
    }
    if (this.q.length < 20 + len) return false;
    this.q.skip(20);
    const p = this.q.take(len);
    switch (type) {
      case REPLY_NONE:
        break;
      case REPLY_OFFSET_HOLE: {
        if (len !== 12) return !this.fatal(`hole chunk of ${len} bytes, not 12`);
        const off = Number(p.readBigUInt64BE(0));
        const n = p.readUInt32BE(8);
        if (n === 0) return !this.fatal('hole chunk of length 0');
        if (!this.cover(req, off, n)) return false;
        if (req.parts) req.parts.push({ pos: off - req.offset, buf: Buffer.alloc(n) });
        else req.buf!.fill(0, off - req.offset, off - req.offset + n);
        break;
      }
      case REPLY_BLOCK_STATUS: {
        if (len < 12 || (len - 4) % 8 !== 0) return !this.fatal(`block status chunk of ${len} bytes`);
        const id = p.readUInt32BE(0);
        if (![...this.contexts.values()].includes(id)) return !this.fatal(`block status for context id ${id}, which was not negotiated`);
        const descs: Array<{ length: number; flags: number }> = [];
        for (let i = 4; i < len; i += 8) {
          const l = p.readUInt32BE(i);
          if (l === 0) return !this.fatal('block status extent of length 0');
          descs.push({ length: l, flags: p.readUInt32BE(i + 4) });
        }
        req.status!.set(id, descs);
        break;
      }
      default: {
        // Error chunks (type has bit 15 set).
        if (len < 6) return !this.fatal(`error chunk of ${len} bytes`);
        const error = p.readUInt32BE(0);
        const mlen = p.readUInt16BE(4);
        const tail = type === REPLY_ERROR_OFFSET ? 8 : type === REPLY_ERROR ? 0 : len - 6 - mlen;
        if (6 + mlen + tail !== len) return !this.fatal(`error chunk of ${len} bytes with a message of ${mlen}`);
        if (error === 0) return !this.fatal('error chunk with error 0');
        const msg = p.subarray(6, 6 + mlen).toString().slice(0, 500);
        req.error ??= this.serverError(req, error, msg);
      }
    }
    if (done) this.finish(req);
    return true;
  }

  /** Records that a chunk covers [off, off+n) of req; false (connection failed) when it strays. */
  private cover(req: Request, off: number, n: number): boolean {
    if (off < req.offset || off + n > req.offset + req.length) {
      this.fatal(`a chunk at ${off}+${n} outside the ${cmdName(req.type)} at ${req.offset}+${req.length}`);
      return false;
    }
    req.covered!.push([off, off + n]);
    return true;
  }

  private serverError(req: Request, errno: number, msg: string): VmvaultError {
    const name = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    return vmError('IO', `NBD ${this.where}: the server failed ${cmdName(req.type)} at ${req.offset}+${req.length}: ${name}${msg ? `: ${msg}` : ''}`, {
      nbdErrno: errno,
    });
  }

  private finish(req: Request): void {
    this.inflight.delete(req.handle);
    clearTimeout(req.timer);
    this.inflightBytes -= NbdClient.cost(req.type, req.length);
    this.wakeWaiting();
    if (req.error) {
      req.reject(req.error);
      return;
    }
    if (req.type === CMD_READ) {
      const c = req.covered!.sort((a, b) => a[0] - b[0]);
      let pos = req.offset;
      for (const [s, e] of c) {
        if (s !== pos) {
          req.reject(this.fatal(s < pos ? `read chunks overlap at ${s}` : `read reply leaves ${pos}+${s - pos} uncovered`));
          return;
        }
        pos = e;
      }
      if (pos !== req.offset + req.length) {
        req.reject(this.fatal(`read reply leaves ${pos}+${req.offset + req.length - pos} uncovered`));
        return;
      }
    }
    req.resolve(req);
  }
}

/**
 * Where the socket's reads land: the unused tail of a large buffer (a slab), each read's bytes a
 * view of it, the next read into the rest. Node's default gives every socket read a fresh
 * buffer of at most 64 KiB (an allocation, its external-memory accounting and its GC per
 * 64 KiB, 7,000+ per 460 MiB full backup: 10-20% of the backup's main-thread samples, PERFORMANCE.md
 * backupinc); here a read may fill up to the slab's rest (1-1.3 MiB per read measured on
 * loopback) and one allocation serves SLAB_BYTES.
 *
 * A slab is written again only when nothing can still see its bytes: every byte of it has left
 * the ByteQueue (parsed, or copied into a read()'s buffer), and every view of it handed to a
 * consumer (readv's pieces, lend()) has come back through release(). A consumer that never
 * releases (the incremental copy hands its views to the namespace until commit) keeps the old
 * rule: the slab is never written twice and is garbage once no view of it is left. Fresh slabs
 * still cost a full V8 GC now and then as their external memory adds up (agent5 counted most
 * of the sender's full GCs from them); reusing released ones avoids that. At most POOL_SLABS
 * retired slabs are watched for reuse; an older one is let go (garbage once unseen).
 */
export class ReceiveSlabs {
  /** Socket reads, slabs allocated fresh, bytes received, slabs written again. */
  reads = 0;
  count = 0;
  bytes = 0;
  reused = 0;
  private slab: Slab = { buf: Buffer.alloc(0), end: 0, lent: new Set() };
  private used = 0;
  /** Retired slabs that may come back, oldest first (at most POOL_SLABS). */
  private readonly pool: Slab[] = [];

  /**
   * The buffer the next socket read fills: the current slab's rest, else a retired slab nothing
   * sees any more, else a fresh slab. `queued` is how many received bytes the parser has not
   * consumed yet (they are the last ones received).
   */
  next(queued: number): Buffer {
    if (this.slab.buf.length - this.used < SLAB_MIN_TAIL) {
      if (this.slab.buf.length > 0) {
        this.slab.end = this.bytes;
        this.pool.push(this.slab);
        if (this.pool.length > POOL_SLABS) this.pool.shift();
      }
      const consumed = this.bytes - queued;
      const i = this.pool.findIndex((s) => s.lent.size === 0 && s.end <= consumed);
      if (i >= 0) {
        this.slab = this.pool.splice(i, 1)[0];
        this.reused++;
      } else {
        // Not from Buffer's shared pool: a slab's lifetime is its views', not the pool's.
        this.slab = { buf: Buffer.allocUnsafeSlow(SLAB_BYTES), end: 0, lent: new Set() };
        this.count++;
      }
      this.used = 0;
    }
    return this.slab.buf.subarray(this.used);
  }

  /** A read put n bytes at the start of `buf` (what next() returned): their view; the slab moves past them. */
  took(buf: Uint8Array, n: number): Buffer {
    this.reads++;
    this.bytes += n;
    this.used += n;
    return Buffer.from(buf.buffer, buf.byteOffset, n);
  }

  /** Records that `view` (a view the queue gave out) is held by a consumer until release(). */
  lend(view: Buffer): void {
    this.owner(view)?.lent.add(view);
  }

  /**
   * The consumer is done with `view` (one lend() gave out): its slab may be written again once
   * nothing else sees it. Views of no watched slab (holes, let-go slabs), and a second release
   * of the same view, are ignored: a release can never free a slab early.
   */
  release(view: Buffer): void {
    this.owner(view)?.lent.delete(view);
  }

  private owner(view: Buffer): Slab | undefined {
    const ab = view.buffer;
    if (this.slab.buf.buffer === ab) return this.slab;
    for (const s of this.pool) if (s.buf.buffer === ab) return s;
    return undefined;
  }
}

interface Slab {
  buf: Buffer;
  /** Bytes received on the connection up to this slab's last byte (set when it is retired). */
  end: number;
  /** Views of it held by consumers (lend() to release()). */
  lent: Set<Buffer>;
}

/**
 * Receive slab size and the least rest a read is given (a smaller rest starts a new slab). 4 MiB
 * holds about four reads of a busy connection; a rest of 256 KiB keeps reads large.
 */
const SLAB_BYTES = 4 * 1024 * 1024;
const SLAB_MIN_TAIL = 256 * 1024;
/**
 * Retired slabs watched for reuse per connection (so at most this many idle slabs held, 16 MiB).
 * A consumer holds about 2-3 slabs' worth (2 MiB in flight on the socket, the sender's read
 * ahead, a full copy's 8 reads of 256 KiB waiting their turn).
 */
const POOL_SLABS = 4;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function optionName(o: number): string {
  return { [OPT_ABORT]: 'NBD_OPT_ABORT', [OPT_GO]: 'NBD_OPT_GO', [OPT_STRUCTURED_REPLY]: 'NBD_OPT_STRUCTURED_REPLY', [OPT_SET_META_CONTEXT]: 'NBD_OPT_SET_META_CONTEXT' }[o] ?? `option ${o}`;
}

function cmdName(t: number): string {
  const names: Record<number, string> = {
    [CMD_READ]: 'NBD_CMD_READ',
    [CMD_WRITE]: 'NBD_CMD_WRITE',
    [CMD_DISC]: 'NBD_CMD_DISC',
    [CMD_FLUSH]: 'NBD_CMD_FLUSH',
    [CMD_WRITE_ZEROES]: 'NBD_CMD_WRITE_ZEROES',
    [CMD_BLOCK_STATUS]: 'NBD_CMD_BLOCK_STATUS',
  };
  return names[t] ?? `command ${t}`;
}
