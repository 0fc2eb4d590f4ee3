// LZ4 block compression for the store's payloads, through liblz4 (Debian `liblz4-dev` to
// build, `liblz4-1` to run): the uncompressed length first (u32 little-endian), then one LZ4
// block (not the frame format). That is the layout of lz4-napi's compressSync/uncompressSync
// (lz4_flex `compress_prepend_size`), so containers written by either path are read by both.
//
// Until this file, the codec was hand-written; measured against liblz4 on the same data, liblz4
// compressed faster, decoded about as fast, and its decoder refuses blocks the format forbids
// that ours accepted (tools/PERFORMANCE.md, "LZ4"). The old code is kept in native/bench/ as
// the baseline of tools/bench-lz4.sh only.
#ifndef VMVAULT_LZ4_H
#define VMVAULT_LZ4_H

#include <lz4.h>
#include <stddef.h>
#include <stdint.h>

// Worst-case payload size (prefix included) for n input bytes: liblz4's LZ4_COMPRESSBOUND
// (n + n/255 + 16) plus the prefix.
#define VV_LZ4_BOUND(n) ((n) + (n) / 255 + 16 + 4)

// Scratch for the compressor's match table; one per thread.
typedef struct {
  LZ4_stream_t stream;
} vv_lz4_state;

// Compresses src[0..n) (n < 2^31) into dst as a prefixed payload. Returns the payload length,
// or 0 when it would exceed cap bytes (the caller then stores the segment raw).
size_t vv_lz4_compress(vv_lz4_state *st, const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

// Decodes a prefixed payload into dst (room for cap bytes). Returns the decoded length, or -1
// when the payload is malformed, decodes to a length other than its prefix says, or exceeds cap.
// Never reads outside src[0..n) nor writes outside dst[0..cap).
long vv_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

// The length a payload's prefix claims, or -1 when it is shorter than a prefix.
long vv_lz4_claimed(const uint8_t *src, size_t n);

#endif
