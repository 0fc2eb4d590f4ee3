// See lz4.h. Only the prefix is ours; the block is liblz4's (LZ4_compress_fast_extState at
// acceleration 1, the default, and LZ4_decompress_safe, which checks every length and offset
// against both buffers).

#include "lz4.h"

#include <limits.h>

static inline void write_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t read_le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

size_t vv_lz4_compress(vv_lz4_state *st, const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
  if (cap < 5 || n > LZ4_MAX_INPUT_SIZE) return 0;
  // liblz4 takes int capacities; n <= LZ4_MAX_INPUT_SIZE never needs more than INT_MAX.
  size_t room = cap - 4 > INT_MAX ? INT_MAX : cap - 4;
  int r = LZ4_compress_fast_extState(&st->stream, (const char *)src, (char *)dst + 4, (int)n, (int)room, 1);
  if (r <= 0) return 0;
  write_le32(dst, (uint32_t)n);
  return (size_t)r + 4;
}

long vv_lz4_claimed(const uint8_t *src, size_t n) { return n < 4 ? -1 : (long)read_le32(src); }

long vv_lz4_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap) {
  if (n < 4 || n - 4 > INT_MAX) return -1;
  const size_t want = read_le32(src);
  if (want > cap || want > INT_MAX) return -1;
  int r = LZ4_decompress_safe((const char *)src + 4, (char *)dst, (int)(n - 4), (int)want);
  return r >= 0 && (size_t)r == want ? (long)want : -1;
}
