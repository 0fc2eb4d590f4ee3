// The NBD client against the real qemu-nbd (holes and zeros via base:allocation, a dirty bitmap,
// many requests in flight, unknown exports and contexts), and against a tiny misbehaving server
// written here. That fake is the untrusted peer the client must survive: it is a test double
// only because no real server can be made to send wrong handles, stray chunks or short replies.
// Every bad reply must end in a clear error, never a hang (each case has a short deadline).

import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { NbdClient } from '../src/plugins/qemu/nbd-client.js';
import { runTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function tool(cmd: string, args: string[]): Promise<string> {
  const r = await runTool(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** qemu-nbd serving `image` read-only as `name` on a UNIX socket; killed by PID at teardown. */
async function qemuNbd(t: TestT, dir: string, image: string, name: string, extra: string[] = []): Promise<string> {
  const sock = path.join(dir, `${name}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const child: ChildProcess = spawn('qemu-nbd', ['-t', '-r', '-e', '4', '-f', 'qcow2', '-k', sock, '-x', name, ...extra, image], { stdio: 'ignore' });
  t.teardown(() => {
    if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  });
  for (let i = 0; i < 400 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
  if (!fs.existsSync(sock)) throw new Error('qemu-nbd made no socket');
  return sock;
}

t.test('qemu-nbd: holes, zeros and data; reads in flight equal qemu-img convert', async (t) => {
  const dir = tmpDir(t, 'vmvault-nbd-');
  const img = path.join(dir, 'd.qcow2');
  await tool('qemu-img', ['create', '-q', '-f', 'qcow2', img, String(16 * MiB)]);
  await tool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xaa 0 64k', '-c', 'write -P 0x55 1M 100k', '-c', 'write -z 3M 1M', '-c', 'write -P 0x77 15M 1M', img]);
  await tool('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', img, path.join(dir, 'd.raw')]);
  const expected = fs.readFileSync(path.join(dir, 'd.raw'));
  const sock = await qemuNbd(t, dir, img, 'vda');
  const c = await NbdClient.connect({ socket: sock, exportName: 'vda', metaContexts: ['base:allocation'] });
  t.teardown(() => c.close());
  t.equal(c.size, 16 * MiB);
  const ext = await c.blockStatus(0, c.size, 'base:allocation');
  t.same(ext, [
    { offset: 0, length: 64 * KiB, flags: 0 },
    { offset: 64 * KiB, length: 1 * MiB - 64 * KiB, flags: 3 },
    { offset: 1 * MiB, length: 128 * KiB, flags: 0 },
    { offset: 1 * MiB + 128 * KiB, length: 14 * MiB - 128 * KiB, flags: 3 },
    { offset: 15 * MiB, length: 1 * MiB, flags: 0 },
  ], 'holes and zero clusters reported, data extents exact');
  t.same(await c.blockStatus(1 * MiB + 4 * KiB, 8 * KiB, 'base:allocation'), [{ offset: 1 * MiB + 4 * KiB, length: 8 * KiB, flags: 0 }], 'clipped to the range asked');
  // 256 reads of 64 KiB at once, plus one whole-disk read (split into 1 MiB requests).
  const pieces = await Promise.all(Array.from({ length: 256 }, (_, i) => c.read(i * 64 * KiB, 64 * KiB)));
  t.ok(Buffer.concat(pieces).equals(expected), 'many small reads in flight, each got its own bytes');
  t.ok((await c.read(0, c.size)).equals(expected), 'one big read equals qemu-img convert');
  t.ok((await c.read(1 * MiB + 1, 3)).equals(expected.subarray(1 * MiB + 1, 1 * MiB + 4)), 'an unaligned tiny read');
  // readv: the same bytes as the socket's own buffers, in order (holes as zero buffers).
  const views = await Promise.all(Array.from({ length: 64 }, (_, i) => c.readv(i * 256 * KiB, 256 * KiB)));
  t.ok(Buffer.concat(views.flat()).equals(expected), 'readv of the whole disk in 256 KiB reads in flight equals qemu-img convert');
  t.ok(views.some((v) => v.length > 1), 'a 256 KiB readv comes as several buffers (no copy into one)');
  t.ok(Buffer.concat(await c.readv(0, c.size)).equals(expected), 'one big readv (1 MiB requests) equals qemu-img convert');
  await t.rejects(c.read(16 * MiB - 1, 2), { code: 'INVALID_ARGUMENT', message: /outside the export/ });
  await t.rejects(c.blockStatus(0, 1, 'qemu:dirty-bitmap:x'), { code: 'INVALID_ARGUMENT', message: /was not negotiated/ });
  await c.close();
  await c.close(); // idempotent
  await t.rejects(c.read(0, 1), { code: 'CLOSED' });
});

t.test('qemu-nbd: a dirty bitmap context, unknown export and context', async (t) => {
  const dir = tmpDir(t, 'vmvault-nbd-');
  const img = path.join(dir, 'd.qcow2');
  await tool('qemu-img', ['create', '-q', '-f', 'qcow2', img, String(8 * MiB)]);
  await tool('qemu-img', ['bitmap', '--add', img, 'b0']);
  await tool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 64k 64k', '-c', 'write -P 2 5M 1', img]);
  const sock = await qemuNbd(t, dir, img, 'vda', ['-B', 'b0']);
  const c = await NbdClient.connect({ socket: sock, exportName: 'vda', metaContexts: ['qemu:dirty-bitmap:b0', 'base:allocation'] });
  t.teardown(() => c.close());
  const dirty = (await c.blockStatus(0, c.size, 'qemu:dirty-bitmap:b0')).filter((e) => e.flags & 1);
  t.same(dirty, [
    { offset: 64 * KiB, length: 64 * KiB, flags: 1 },
    { offset: 5 * MiB, length: 64 * KiB, flags: 1 },
  ]);
  // Both contexts answered in one request each; the other context's extents do not leak in.
  t.same((await c.blockStatus(0, 128 * KiB, 'base:allocation')).map((e) => e.flags), [3, 0]);
  await t.rejects(NbdClient.connect({ socket: sock, exportName: 'nope' }), { code: 'NOT_FOUND', message: /export "nope": NBD_OPT_GO refused: unknown export/ });
  await t.rejects(NbdClient.connect({ socket: sock, exportName: 'vda', metaContexts: ['qemu:dirty-bitmap:other'] }), {
    code: 'NOT_FOUND',
    message: /offers no meta context qemu:dirty-bitmap:other \(a dirty bitmap must be named in block-export-add bitmaps/,
  });
});

// ---- the misbehaving server -------------------------------------------------------------

interface FakeRequest {
  type: number;
  handle: bigint;
  offset: number;
  length: number;
}

const EXPORT_SIZE = 1 * MiB;

function chunk(flags: number, type: number, handle: bigint, payload: Buffer, lenOverride?: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(0x668e33ef, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(handle, 8);
  h.writeUInt32BE(lenOverride ?? payload.length, 16);
  return Buffer.concat([h, payload]);
}

function dataChunk(req: FakeRequest, offset: number, data: Buffer, done = true): Buffer {
  const p = Buffer.alloc(8 + data.length);
  p.writeBigUInt64BE(BigInt(offset));
  data.copy(p, 8);
  return chunk(done ? 1 : 0, 1, req.handle, p);
}

function holeChunk(req: FakeRequest, offset: number, length: number, done = false): Buffer {
  const p = Buffer.alloc(12);
  p.writeBigUInt64BE(BigInt(offset));
  p.writeUInt32BE(length, 8);
  return chunk(done ? 1 : 0, 2, req.handle, p);
}

/**
 * A server with a correct handshake (export 'x' of 1 MiB, meta contexts numbered from 1) that
 * answers each request as `scenario` says. `greeting` replaces the whole handshake.
 */
async function fakeServer(t: TestT, scenario: (req: FakeRequest, s: net.Socket) => void, greeting?: Buffer): Promise<string> {
  const dir = tmpDir(t, 'vmvault-nbdfake-');
  const sock = path.join(dir, 'fake.sock');
  const conns = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns.add(s);
    s.on('error', () => undefined);
    if (greeting) {
      s.write(greeting);
      return;
    }
    const hello = Buffer.alloc(18);
    hello.write('NBDMAGIC', 0, 'latin1');
    hello.writeBigUInt64BE(0x49484156454f5054n, 8);
    hello.writeUInt16BE(3, 16);
    s.write(hello);
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    const optReply = (opt: number, type: number, data: Buffer) => {
      const h = Buffer.alloc(20);
      h.writeBigUInt64BE(0x3e889045565a9n, 0);
      h.writeUInt32BE(opt, 8);
      h.writeUInt32BE(type, 12);
      h.writeUInt32BE(data.length, 16);
      s.write(Buffer.concat([h, data]));
    };
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (buf.length < 16) return;
          const opt = buf.readUInt32BE(8);
          const len = buf.readUInt32BE(12);
          if (buf.length < 16 + len) return;
          const data = buf.subarray(16, 16 + len);
          buf = buf.subarray(16 + len);
          if (opt === 10) {
            const nameLen = data.readUInt32BE(0);
            const n = data.readUInt32BE(4 + nameLen);
            let p = 8 + nameLen;
            for (let i = 0; i < n; i++) {
              const l = data.readUInt32BE(p);
              const id = Buffer.alloc(4);
              id.writeUInt32BE(i + 1);
              optReply(opt, 4, Buffer.concat([id, data.subarray(p + 4, p + 4 + l)]));
              p += 4 + l;
            }
            optReply(opt, 1, Buffer.alloc(0));
          } else if (opt === 7) {
            const info = Buffer.alloc(12);
            info.writeUInt16BE(0, 0);
            info.writeBigUInt64BE(BigInt(EXPORT_SIZE), 2);
            info.writeUInt16BE(1, 10);
            optReply(opt, 3, info);
            optReply(opt, 1, Buffer.alloc(0));
            phase = 'transmission';
          } else {
            optReply(opt, 1, Buffer.alloc(0));
          }
        } else {
          if (buf.length < 28) return;
          const req = { type: buf.readUInt16BE(6), handle: buf.readBigUInt64BE(8), offset: Number(buf.readBigUInt64BE(16)), length: buf.readUInt32BE(24) };
          buf = buf.subarray(28);
          if (req.type === 2) {
            s.end();
            return;
          }
          scenario(req, s);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const c of conns) c.destroy();
        server.close(() => r());
      }),
  );
  return sock;
}

async function badReply(t: TestT, name: string, scenario: (req: FakeRequest, s: net.Socket) => void, expected: RegExp, op: (c: NbdClient) => Promise<unknown> = (c) => c.read(0, 64 * KiB)) {
  await t.test(name, async (t) => {
    const sock = await fakeServer(t, scenario);
    const c = await NbdClient.connect({ socket: sock, exportName: 'x', metaContexts: ['base:allocation'], timeoutMs: 1000 });
    t.teardown(() => c.close());
    const started = Date.now();
    await t.rejects(op(c), { code: 'IO', message: expected });
    t.ok(Date.now() - started < 5000, 'no hang');
    await t.rejects(c.read(0, 1), { code: 'IO' }, 'the connection is failed for good');
  });
}

t.test('a misbehaving server: every bad reply is a clear error, never a hang', async (t) => {
  await badReply(t, 'wrong handle', (r, s) => s.write(dataChunk({ ...r, handle: r.handle + 1000n }, r.offset, Buffer.alloc(r.length))), /names handle 100\d, which no request in flight carries/);
  await badReply(t, 'chunk outside the request', (r, s) => s.write(dataChunk(r, r.offset + r.length, Buffer.alloc(16))), /a chunk at 65536\+16 outside the NBD_CMD_READ at 0\+65536/);
  await badReply(t, 'read left half uncovered', (r, s) => s.write(dataChunk(r, r.offset, Buffer.alloc(r.length / 2))), /read reply leaves 32768\+32768 uncovered/);
  await badReply(
    t,
    'overlapping chunks',
    (r, s) => s.write(Buffer.concat([dataChunk(r, 0, Buffer.alloc(40 * KiB), false), dataChunk(r, 30 * KiB, Buffer.alloc(34 * KiB))])),
    /read chunks overlap at 30720/,
  );
  await badReply(t, 'a 4 GiB chunk length', (r, s) => s.write(chunk(1, 1, r.handle, Buffer.alloc(0), 0xfffffff0)), /of 4294967280 bytes to NBD_CMD_READ at 0\+65536 \(limit 65544\)/);
  await badReply(t, 'a short reply, then the server goes', (r, s) => s.end(dataChunk(r, r.offset, Buffer.alloc(r.length)).subarray(0, 1000)), /the server closed the connection with requests in flight/);
  await badReply(t, 'silence', () => undefined, /no complete reply to NBD_CMD_READ at 0\+65536 within 1000 ms; the server hangs/);
  await badReply(t, 'bad magic', (r, s) => s.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')), /bad reply magic 0x48545450/);
  await badReply(t, 'simple reply without error to a read', (r, s) => {
    const h = Buffer.alloc(16);
    h.writeUInt32BE(0x67446698, 0);
    h.writeBigUInt64BE(r.handle, 8);
    s.write(Buffer.concat([h, Buffer.alloc(r.length)]));
  }, /a simple reply without error to NBD_CMD_READ, where a structured reply is required/);
  await badReply(t, 'block status for a context not negotiated', (r, s) => {
    const p = Buffer.alloc(12);
    p.writeUInt32BE(77, 0);
    p.writeUInt32BE(r.length, 4);
    s.write(chunk(1, 5, r.handle, p));
  }, /block status for context id 77, which was not negotiated/, (c) => c.blockStatus(0, 4096, 'base:allocation'));
  await badReply(t, 'block status extent of length 0', (r, s) => {
    const p = Buffer.alloc(12);
    p.writeUInt32BE(1, 0);
    s.write(chunk(1, 5, r.handle, p));
  }, /block status extent of length 0/, (c) => c.blockStatus(0, 4096, 'base:allocation'));
  await badReply(t, 'a hole chunk answering block status', (r, s) => s.write(holeChunk(r, 0, 4096, true)), /reply chunk type 2 to NBD_CMD_BLOCK_STATUS, which does not allow it/, (c) =>
    c.blockStatus(0, 4096, 'base:allocation'),
  );
});

t.test('a well-behaved odd server: holes and data out of order, server errors, several in flight', async (t) => {
  const sock = await fakeServer(t, (r, s) => {
    if (r.offset === 512 * KiB) {
      const msg = Buffer.from('disk on fire');
      const p = Buffer.alloc(6 + msg.length);
      p.writeUInt32BE(5, 0);
      p.writeUInt16BE(msg.length, 4);
      msg.copy(p, 6);
      s.write(chunk(1, 0x8001, r.handle, p));
      return;
    }
    if (r.type === 7) {
      // Answer only the first 4 KiB; the client asks again for the rest.
      const p = Buffer.alloc(12);
      p.writeUInt32BE(1, 0);
      p.writeUInt32BE(Math.min(4096, r.length), 4);
      p.writeUInt32BE(r.offset === 0 ? 0 : 3, 8);
      s.write(chunk(1, 5, r.handle, p));
      return;
    }
    // Second half first (data, byte = offset % 251), then a hole for the first half, then NONE.
    const half = r.length / 2;
    const data = Buffer.alloc(half);
    for (let i = 0; i < half; i++) data[i] = (r.offset + half + i) % 251;
    s.write(Buffer.concat([dataChunk(r, r.offset + half, data, false), holeChunk(r, r.offset, half), chunk(1, 0, r.handle, Buffer.alloc(0))]));
  });
  const c = await NbdClient.connect({ socket: sock, exportName: 'x', metaContexts: ['base:allocation'], timeoutMs: 2000 });
  t.teardown(() => c.close());
  const [a, b] = await Promise.all([c.read(0, 8192), c.read(64 * KiB, 8192)]);
  for (const [buf, off] of [[a, 0], [b, 64 * KiB]] as const) {
    const want = Buffer.alloc(8192);
    for (let i = 4096; i < 8192; i++) want[i] = (off + i) % 251;
    t.ok(buf.equals(want), `read at ${off}: hole zeros then data, placed by offset`);
  }
  const [va, vb] = await Promise.all([c.readv(0, 8192), c.readv(64 * KiB, 8192)]);
  for (const [bufs, off] of [[va, 0], [vb, 64 * KiB]] as const) {
    const want = Buffer.alloc(8192);
    for (let i = 4096; i < 8192; i++) want[i] = (off + i) % 251;
    t.ok(Buffer.concat(bufs).equals(want), `readv at ${off}: hole zeros then data, placed by offset`);
  }
  await t.rejects(c.readv(512 * KiB, 4096), { code: 'IO', message: /EIO: disk on fire/ });
  await t.rejects(c.read(512 * KiB, 4096), { code: 'IO', message: /the server failed NBD_CMD_READ at 524288\+4096: EIO: disk on fire/ });
  t.equal((await c.read(0, 16)).length, 16, 'a server error fails one request, not the connection');
  t.same(await c.blockStatus(0, 12288, 'base:allocation'), [
    { offset: 0, length: 4096, flags: 0 },
    { offset: 4096, length: 8192, flags: 3 },
  ], 'partial block-status answers are asked again and merged');
});

t.test('handshakes that are not NBD, or not one we speak', async (t) => {
  const http = await fakeServer(t, () => undefined, Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
  await t.rejects(NbdClient.connect({ socket: http, exportName: 'x', timeoutMs: 1000 }), { code: 'IO', message: /did not greet with NBDMAGIC; is this an NBD server/ });
  const old = Buffer.alloc(152);
  old.write('NBDMAGIC', 0, 'latin1');
  old.writeBigUInt64BE(0x00420281861253n, 8);
  const oldstyle = await fakeServer(t, () => undefined, old);
  await t.rejects(NbdClient.connect({ socket: oldstyle, exportName: 'x', timeoutMs: 1000 }), { message: /speaks oldstyle NBD/ });
  const mute = await fakeServer(t, () => undefined, Buffer.from('NBD'));
  await t.rejects(NbdClient.connect({ socket: mute, exportName: 'x', timeoutMs: 500 }), { message: /handshake not finished within 500 ms/ });
  await t.rejects(NbdClient.connect({ exportName: 'x' }), { code: 'INVALID_ARGUMENT' });
});

t.test('reads beyond maxInflightBytes wait their turn and all complete in order', async (t) => {
  let outstanding = 0;
  let most = 0;
  const sock = await fakeServer(t, (r, s) => {
    outstanding++;
    most = Math.max(most, outstanding);
    setTimeout(() => {
      outstanding--;
      const data = Buffer.alloc(r.length, r.offset / (64 * KiB));
      s.write(dataChunk(r, r.offset, data));
    }, 10);
  });
  const c = await NbdClient.connect({ socket: sock, exportName: 'x', timeoutMs: 2000 });
  t.teardown(() => c.close());
  c.maxInflightBytes = 128 * KiB;
  const bufs = await Promise.all(Array.from({ length: 8 }, (_, i) => c.read(i * 64 * KiB, 64 * KiB)));
  t.same(bufs.map((b) => [b.length, b[0], b[b.length - 1]]), Array.from({ length: 8 }, (_, i) => [64 * KiB, i, i]));
  t.equal(most, 2, 'never more than 128 KiB of reads at the server');
});

t.test('receive slabs: replies arriving in odd-sized pieces read back exact, as views of a few large buffers never reused', async (t) => {
  // Every reply is written in pieces of odd sizes (headers split too), one piece per turn of
  // the server's event loop, so the client's socket sees many small reads as well as large ones.
  const sizes = [1, 7, 4093, 65537, 3, 131071, 19, 262147, 5, 997];
  // One queue for the connection: the replies' pieces go out in order, never interleaved.
  let turn = 0;
  const pieces: Buffer[] = [];
  let sending = false;
  const sock = await fakeServer(t, (r, s) => {
    const data = Buffer.alloc(r.length);
    for (let i = 0; i < r.length; i++) data[i] = (r.offset + i) % 251;
    const reply = dataChunk(r, r.offset, data);
    for (let at = 0; at < reply.length; ) {
      const n = Math.min(sizes[turn++ % sizes.length], reply.length - at);
      pieces.push(reply.subarray(at, at + n));
      at += n;
    }
    const next = () => {
      const p = pieces.shift();
      if (!p) {
        sending = false;
        return;
      }
      s.write(p);
      setImmediate(next);
    };
    if (!sending) {
      sending = true;
      next();
    }
  });
  const c = await NbdClient.connect({ socket: sock, exportName: 'x', timeoutMs: 5000 });
  t.teardown(() => c.close());
  const want = (off: number, len: number) => {
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = (off + i) % 251;
    return b;
  };
  const asked: Array<[number, number]> = [];
  for (let i = 0; i < 24; i++) asked.push([(i * 37 * KiB + i * 13) % (EXPORT_SIZE - 300 * KiB), 1 + ((i * 77773) % (300 * KiB))]);
  const got: Buffer[][] = [];
  for (let round = 0; round < 3; round++) {
    got.push(...(await Promise.all(asked.map(([off, len]) => c.readv(off, len)))));
  }
  got.push(await c.readv(0, EXPORT_SIZE));
  // Checked only now: a slab written twice would have overwritten the earlier reads' views.
  let pieceCount = 0;
  const buffers = new Set<ArrayBufferLike>();
  for (let k = 0; k < got.length; k++) {
    const [off, len] = k < 3 * asked.length ? asked[k % asked.length] : [0, EXPORT_SIZE];
    if (!Buffer.concat(got[k]).equals(want(off, len))) t.fail(`readv ${k} at ${off}+${len}: bytes differ`);
    pieceCount += got[k].length;
    for (const b of got[k]) buffers.add(b.buffer);
  }
  t.pass(`${got.length} readv results exact after all were read (${pieceCount} pieces)`);
  const stats = c.receiveStats;
  t.ok(stats.reads > 2 * stats.slabs, `several socket reads per slab (${stats.reads} reads, ${stats.slabs} slabs)`);
  t.ok(buffers.size <= stats.slabs && stats.slabs <= Math.ceil(stats.bytes / (3 * MiB)) + 1, `pieces are views of ${buffers.size} slabs (${stats.slabs} for ${stats.bytes} bytes), not a buffer per socket read`);
  for (const b of buffers) if (b.byteLength !== 4 * MiB) t.fail(`a piece's buffer is ${b.byteLength} bytes, not a 4 MiB slab`);
  // One 1 MiB reply written whole lands in at most two slabs (the rest of one, a fresh one).
  const whole = await fakeServer(t, (r, s) => s.write(dataChunk(r, r.offset, want(r.offset, r.length))));
  const c2 = await NbdClient.connect({ socket: whole, exportName: 'x', timeoutMs: 5000 });
  t.teardown(() => c2.close());
  const one = await c2.readv(0, MiB);
  t.ok(Buffer.concat(one).equals(want(0, MiB)), '1 MiB read whole: exact');
  t.ok(new Set(one.map((b) => b.buffer)).size <= 2, `1 MiB read whole: ${one.length} pieces in ${new Set(one.map((b) => b.buffer)).size} buffers (at most 2 slabs)`);
});
