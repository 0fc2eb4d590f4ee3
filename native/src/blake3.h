// BLAKE3-256 (unkeyed hash mode), written from the BLAKE3 specification, for the store's
// fingerprints. One call hashes many segments of one buffer: the compression function runs on
// W independent blocks at once (W = 16 with AVX-512, 8 with AVX2, 4 with SSE4.1, 1 portable),
// taking blocks from chunks of every segment of the batch, then from their parent nodes level
// by level, so even 2 KiB segments keep every lane busy.
#ifndef VMVAULT_BLAKE3_H
#define VMVAULT_BLAKE3_H

#include <stddef.h>
#include <stdint.h>

#define VV_BLAKE3_OUT 32

// Hashes n segments of base, segment i being base[segs[2i] .. segs[2i] + segs[2i+1]), into
// out[32 i .. 32 i + 32). Returns 0, or -1 when memory for the work lists ran out.
int vv_blake3_many(const uint8_t *base, const uint32_t *segs, size_t n, uint8_t *out);

// One input.
int vv_blake3(const uint8_t *in, size_t len, uint8_t out[VV_BLAKE3_OUT]);

// n inputs anywhere in memory: ptr[i], len[i] -> out[32 i ..].
int vv_blake3_ptrs(size_t n, const uint8_t *const *ptr, const size_t *len, uint8_t *out);

// The kernel in use: "avx512", "avx2", "sse41" or "portable". vv_blake3_force() selects one
// for tests (returns 0 when this CPU cannot run it); NULL restores the best.
const char *vv_blake3_impl(void);
int vv_blake3_force(const char *name);

#endif
