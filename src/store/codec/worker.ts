// A codec worker: the CPU-heavy half of ingest and read, off the main thread so both cores
// hash, compress and verify while the main thread chunks, indexes and serves FUSE.
// Messages are batches (hundreds of segments), never single segments: the per-message cost
// (~20 us) would otherwise dominate. Segment bytes arrive in SharedArrayBuffers, no copies.

import { parentPort } from 'node:worker_threads';
import fs from 'node:fs';
import { blake3 } from '@napi-rs/blake-hash';
import { compressSync, uncompressSync } from 'lz4-napi';
import { bloomProbe } from '../index/bloom.js';
import { compressionPays, lz4ClaimedLength } from './codec.js';
import { Codec } from '../container/format.js';
import type { DecodeRequest, DecodeResult, HashRequest, HashResult, WorkerRequest } from './messages.js';

const port = parentPort;
if (!port) throw new Error('codec-worker must run as a worker thread');

port.on('message', (msg: WorkerRequest) => {
  try {
    if (msg.type === 'hash') {
      const res = hashBatch(msg);
      port.postMessage(res, [res.fps.buffer as ArrayBuffer, res.payloads.buffer as ArrayBuffer, res.plens.buffer as ArrayBuffer]);
    } else {
      port.postMessage(decodeBatch(msg));
    }
  } catch (err) {
    port.postMessage({ id: msg.id, type: 'error', message: (err as Error).message, stack: (err as Error).stack });
  }
});

function hashBatch(req: HashRequest): HashResult {
  const { data, segs } = req;
  const n = segs.length >>> 1;
  // Own ArrayBuffers, never Node's shared pool: they are transferred to the main thread.
  const fps = Buffer.from(new ArrayBuffer(n * 32));
  const plens = new Int32Array(n);
  const parts: Buffer[] = [];
  let total = 0;
  const bloom = req.bloom;
  const words = bloom ? new Uint32Array(bloom.sab) : undefined;
  const mask = bloom ? (bloom.log2Bits >= 32 ? 0xffffffff : 2 ** bloom.log2Bits - 1) : 0;
  for (let i = 0; i < n; i++) {
    const seg = data.subarray(segs[2 * i], segs[2 * i] + segs[2 * i + 1]);
    const fp = blake3(seg);
    fp.copy(fps, i * 32);
    plens[i] = -1;
    // Compress only what is probably new: a duplicate stream must not pay for LZ4.
    if (req.compress && !(words && bloomProbe(words, mask, bloom!.probes, fp, 0))) {
      const c = compressSync(seg as Buffer);
      if (compressionPays(seg.length, c.length)) {
        plens[i] = c.length;
        parts.push(c);
        total += c.length;
      } else {
        plens[i] = -2; // store raw
      }
    }
  }
  const payloads = Buffer.from(new ArrayBuffer(total));
  let at = 0;
  for (const p of parts) {
    p.copy(payloads, at);
    at += p.length;
  }
  return { id: req.id, type: 'hash', fps: new Uint8Array(fps.buffer, fps.byteOffset, fps.length), payloads: new Uint8Array(payloads.buffer, payloads.byteOffset, payloads.length), plens };
}

/**
 * The workers' read seam: fs.readSync, unless the request carries a fault for this record
 * (file-io.ts ReadFault: 1 EIO, 2 a partial read of at most half, 3 end of file).
 */
function pread(fd: number, buf: Buffer, off: number, len: number, pos: number, fault: number): number {
  if (fault === 1) throw Object.assign(new Error('EIO: i/o error, read (injected fault)'), { code: 'EIO' });
  if (fault === 3) return 0;
  return fs.readSync(fd, buf, off, fault === 2 && len > 1 ? len >>> 1 : len, pos);
}

function decodeBatch(req: DecodeRequest): DecodeResult {
  const { items, fps, out } = req;
  const n = items.length / 7;
  const dst = new Uint8Array(out);
  const errors: DecodeResult['errors'] = [];
  let scratch = Buffer.allocUnsafe(0);
  for (let i = 0; i < n; i++) {
    const fd = items[i * 7];
    const pos = items[i * 7 + 1];
    const storedLen = items[i * 7 + 2];
    const rawLen = items[i * 7 + 3];
    const codec = items[i * 7 + 4];
    const outOff = items[i * 7 + 5];
    const fault = items[i * 7 + 6];
    const fp = fps.subarray(i * 32, i * 32 + 32);
    try {
      if (scratch.length < storedLen) scratch = Buffer.allocUnsafe(Math.max(storedLen, 256 * 1024));
      const payload = scratch.subarray(0, storedLen);
      let got = 0;
      while (got < storedLen) {
        const r = pread(fd, payload, got, storedLen - got, pos + got, fault);
        if (r === 0) break;
        got += r;
      }
      if (got < storedLen) {
        errors.push({ i, kind: 'short', message: `record is cut short (${got} of ${storedLen} bytes readable)` });
        continue;
      }
      let raw: Uint8Array;
      if (codec === Codec.Lz4) {
        // The length prefix first: lz4-napi allocates whatever it claims (codec.ts).
        const claimed = lz4ClaimedLength(payload);
        if (claimed !== rawLen) {
          errors.push({ i, kind: 'corrupt', message: claimed < 0 ? 'does not decompress (the payload is shorter than its length prefix)' : `decodes to ${claimed} bytes, expected ${rawLen}` });
          continue;
        }
        try {
          raw = uncompressSync(payload);
        } catch (err) {
          errors.push({ i, kind: 'corrupt', message: `does not decompress (${(err as Error).message})` });
          continue;
        }
      } else {
        raw = payload;
      }
      if (raw.length !== rawLen) {
        errors.push({ i, kind: 'corrupt', message: `decodes to ${raw.length} bytes, expected ${rawLen}` });
        continue;
      }
      const h = blake3(raw);
      if (!h.equals(fp)) {
        errors.push({ i, kind: 'corrupt', message: 'failed verification (BLAKE3 mismatch)' });
        continue;
      }
      dst.set(raw, outOff);
    } catch (err) {
      errors.push({ i, kind: 'io', message: (err as Error).message });
    }
  }
  return { id: req.id, type: 'decode', errors };
}
