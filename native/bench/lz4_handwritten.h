// The hand-written codec replaced by liblz4 in native/src/lz4.c; the benchmark's baseline only.
// LZ4 block compression, written from the LZ4 block format description (lz4_Block_format.md):
// sequences of (token, literal length, literals, 2-byte offset, match length), the last five
// bytes always literals and no match starting in the last twelve. Payloads carry the
// uncompressed length first (u32 little-endian), the layout lz4-napi's compressSync writes and
// uncompressSync reads, so containers written with either are read by both.
#ifndef VMVAULT_LZ4_HANDWRITTEN_H
#define VMVAULT_LZ4_HANDWRITTEN_H

#include <stddef.h>
#include <stdint.h>

// Worst-case payload size (prefix included) for n input bytes.
#define HW_LZ4_BOUND(n) ((n) + (n) / 255 + 16 + 4)

// Scratch for the compressor's match table; one per thread.
typedef struct {
  uint32_t table[1 << 12];
} hw_lz4_state;

// Compresses src[0..n) (n < 2^31) into dst as a prefixed payload. Returns the payload length,
// or 0 when it would exceed cap bytes (the caller then stores the segment raw).
size_t hw_lz4_compress(hw_lz4_state *st, const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

// Decodes a prefixed payload into dst (room for cap bytes). Returns the decoded length, or -1
// when the payload is malformed, decodes to a length other than its prefix says, or exceeds cap.
long hw_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap);

// The length a payload's prefix claims, or -1 when it is shorter than a prefix.
long hw_lz4_claimed(const uint8_t *src, size_t n);

#endif
