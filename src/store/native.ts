// The C addon in native/ (built by `npm install`, see native/README.md): the segmenter's cut
// loop, BLAKE3 and LZ4 for one buffer, and the batch operations that run on the libuv thread
// pool. Loaded once; absent (not built, or VMVAULT_NO_NATIVE=1), the store falls back to its
// TypeScript cut loop, @napi-rs/blake-hash, lz4-napi and codec worker threads, which produce
// the same boundaries, fingerprints and (readable by either) payloads.

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

type Callback<T> = (err: Error | null, result: T) => void;

export interface NativeAddon {
  cut(gear: Uint32Array, params: Int32Array, state: Uint32Array, buf: Uint8Array, out: Uint32Array): number;
  /** cut() on the libuv pool; state, buf and out must not be touched until cb runs. */
  cutAsync(gear: Uint32Array, params: Int32Array, state: Uint32Array, buf: Uint8Array, out: Uint32Array, cb: Callback<number>): void;
  /** glibc malloc's view of native memory (bytes), for the benches' memory figures. */
  mallocStats(): { arena: number; inUse: number; mmapped: number };
  /** glibc malloc_trim(0): returns free pages inside malloc's heaps to the system. */
  mallocTrim(): boolean;
  /** glibc mallopt(M_MMAP_THRESHOLD): a fixed threshold instead of one that only grows. */
  mallocTune(mmapThreshold: number): boolean;
  blake3(data: Uint8Array): Buffer;
  blake3Many(data: Uint8Array, segs: Uint32Array, out: Uint8Array): void;
  blake3Impl(): string;
  blake3Force(name?: string): boolean;
  /** Prefixed LZ4 payload of src into dst; its length, or 0 when it does not fit dst. */
  lz4Compress(src: Uint8Array, dst: Uint8Array): number;
  /** Decodes a prefixed payload into dst; the decoded length, or -1 when malformed. */
  lz4Decompress(src: Uint8Array, dst: Uint8Array): number;
  lz4Claimed(src: Uint8Array): number;
  hashBatch(
    data: Uint8Array,
    segs: Uint32Array,
    bloom: Uint32Array | null,
    log2Bits: number,
    probes: number,
    compress: boolean,
    fps: Uint8Array,
    plens: Int32Array,
    payloads: Uint8Array,
    cb: Callback<number>,
  ): void;
  decodeBatch(items: Float64Array, fps: Uint8Array, targets: Uint8Array[], status: Int32Array, cb: Callback<number>): void;
  /** Decodes received segments (4 numbers each: offset in src, payload length, codec, plain length) into plain, hashes them and LZ4s the raw ones, on the pool (batch.h). Absent in older builds. */
  acceptBatch?(src: Uint8Array, items: Uint32Array, plain: Uint8Array, fps: Uint8Array, status: Int32Array, plens: Int32Array, payloads: Uint8Array, cb: Callback<number>): void;
  /** Tests: the read fault seam (native/src/read_seam.c); kinds as file-io.ts's ReadFault. Absent in older builds. */
  setReadFaults?(fds: Int32Array, kinds: Int32Array): void;
}

function load(): { cut?: NativeAddon['cut']; cutAsync?: NativeAddon['cutAsync']; codec?: NativeAddon } {
  if (process.env.VMVAULT_NO_NATIVE === '1') return {};
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/src/store -> repository root
  const root = path.resolve(here, '..', '..', '..');
  let addon: Partial<NativeAddon>;
  try {
    // VMVAULT_NATIVE_ADDON: another build of the same addon, for tests (the sanitizer build in
    // native/build-asan/, test/native-asan.test.ts).
    const file = process.env.VMVAULT_NATIVE_ADDON || path.join(root, 'native', 'build', 'Release', 'vmvault_native.node');
    addon = createRequire(import.meta.url)(file) as Partial<NativeAddon>;
  } catch {
    return {};
  }
  // An addon built before the codec existed still cuts.
  const codec = typeof addon.hashBatch === 'function' && typeof addon.decodeBatch === 'function' ? (addon as NativeAddon) : undefined;
  const noCodec = process.env.VMVAULT_NO_NATIVE_CODEC === '1';
  return { cut: addon.cut, cutAsync: noCodec ? undefined : addon.cutAsync, codec: noCodec ? undefined : codec };
}

const loaded = load();

/** The native cut loop, if the addon is built; and its thread-pool form. */
export const nativeCutFn = loaded.cut;
export const nativeCutAsyncFn = loaded.cutAsync;

/** The native codec (BLAKE3, LZ4, batches on the thread pool), if the addon is built. */
export const nativeCodec = loaded.codec;

/** Which codec the store uses: 'native' (the addon) or 'js' (@napi-rs/blake-hash, lz4-napi, workers). */
export const codecImpl: 'native' | 'js' = nativeCodec ? 'native' : 'js';

let tuned = false;

/**
 * Fixes glibc's malloc thresholds (once per process, when a store opens). By default glibc
 * adapts them to the largest block freed so far, and the heap then grows and fragments with
 * the store's churn of medium blocks (tables, batch arrays, LevelDB write batches): measured
 * +96 MiB over an ingest from 50 k to 1 M segments; with the mmap threshold fixed at 16 MiB
 * (above the 4-8 MiB buffers the store reuses, so those come from the heap and never fault in
 * afresh: a 4 MiB read result mapped anew costs ~0.5 CPU s per GiB read in page faults) and
 * the heap trimmed after checkpoints, ~40 MiB.
 */
export function tuneMalloc(): void {
  if (tuned || !nativeCodec || process.env.VMVAULT_NO_MALLOC_TUNE === '1') return;
  tuned = true;
  nativeCodec.mallocTune(16 * 1024 * 1024);
}
