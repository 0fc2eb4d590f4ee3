// libFuzzer target: vv_lz4_compress then decompress (native/src/lz4.c, around liblz4). Input: u8 mode, u16 LE
// room selector, then the data (the fuzzer finds repetitive, incompressible and mixed data
// itself; mode also stretches the data by repeating it, so matches cross 64 KiB windows).
//
// Checks: with room for VV_LZ4_BOUND the compressor never gives up; with any smaller room it
// either fits or returns 0, never writing past the room (the output buffer ends at a PROT_NONE
// page); the payload decodes back to the data with our decoder and with liblz4's
// LZ4_decompress_safe, and claims the right length.
#include <lz4.h>
#include <string.h>

#include "../src/lz4.h"
#include "fuzz_util.h"

static vv_lz4_state st;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vv_in in = {data, size};
  uint32_t mode = take(&in, 1);
  uint32_t sel = take(&in, 2);
  size_t reps = 1 + (mode & 7) * (mode & 8 ? 40 : 1);  // up to 281 copies
  size_t n = in.n * reps;
  if (n > (1u << 20)) n = in.n;
  uint8_t *src = malloc(n ? n : 1);
  for (size_t at = 0; at < n; at += in.n) memcpy(src + at, in.p, in.n);
  size_t bound = VV_LZ4_BOUND(n);
  size_t cap = mode & 16 ? bound : (size_t)sel % (bound + 1);
  uint8_t *dst = guarded_alloc(cap);
  size_t got = vv_lz4_compress(&st, src, n, dst, cap);
  MUST(got <= cap, "payload %zu bytes in room %zu", got, cap);
  if (cap >= bound) MUST(got > 0, "gave up on %zu bytes with worst-case room %zu", n, cap);
  if (got) {
    MUST(got >= 5 && vv_lz4_claimed(dst, got) == (long)n, "prefix claims %ld for %zu bytes", vv_lz4_claimed(dst, got), n);
    uint8_t *back = malloc(n ? n : 1);
    long d = vv_lz4_decompress(dst, got, back, n);
    MUST(d == (long)n && memcmp(back, src, n) == 0, "our decoder: %ld for %zu bytes", d, n);
    memset(back, 0xa5, n);
    int r = LZ4_decompress_safe((const char *)dst + 4, (char *)back, (int)(got - 4), (int)n);
    MUST(r == (int)n && memcmp(back, src, n) == 0, "liblz4: %d for %zu bytes", r, n);
    free(back);
  }
  guarded_free(dst, cap);
  free(src);
  return 0;
}
