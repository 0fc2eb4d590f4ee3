// libFuzzer target: vv_lz4_decompress (native/src/lz4.c: our prefix handling around liblz4's
// LZ4_decompress_safe) on arbitrary bytes, into a buffer of an arbitrary size. Both buffers end
// at a PROT_NONE page (liblz4 is not instrumented, so AddressSanitizer alone would not see it
// read or write past them). Input: u16 LE room selector, then the payload (u32 LE
// claimed length + LZ4 block).
//
// Checks: the result is -1 or exactly the claimed length and within the room; and it agrees
// with LZ4_decompress_safe called directly on the block: whatever liblz4 accepts is accepted
// with the same bytes, and nothing else is. (Run against the hand-written decoder this replaced,
// this check found it accepting blocks liblz4 refuses: an empty block, and blocks ending in a
// match, which the format forbids.)
#include <lz4.h>
#include <string.h>

#include "../src/lz4.h"
#include "fuzz_util.h"

// One decode into a room of cap bytes, with every check.
static void one(const uint8_t *src, size_t n, long claimed, size_t cap) {
  uint8_t *dst = guarded_alloc(cap);
  long got = vv_lz4_decompress(src, n, dst, cap);
  MUST(got == -1 || (got == claimed && (size_t)got <= cap), "got %ld, claimed %ld, cap %zu", got, claimed, cap);
  if (claimed >= 0 && (size_t)claimed <= cap && n - 4 <= 0x7fffffffu) {
    uint8_t *ref = guarded_alloc((size_t)claimed);
    int r = LZ4_decompress_safe((const char *)src + 4, (char *)ref, (int)(n - 4), (int)claimed);
    int ref_ok = r == (int)claimed;
    MUST(ref_ok == (got >= 0), "liblz4 %s (%d) where ours %s (%ld); claimed %ld, block %zu bytes",
         ref_ok ? "decodes" : "refuses", r, got >= 0 ? "decodes" : "refuses", got, claimed, n - 4);
    if (ref_ok) MUST(memcmp(ref, dst, (size_t)claimed) == 0, "bytes differ from liblz4's");
    guarded_free(ref, (size_t)claimed);
  }
  guarded_free(dst, cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vv_in in = {data, size};
  uint32_t sel = take(&in, 2);
  // Copied so the payload ends at a guard page (the fuzzer's own buffer may have slack).
  uint8_t *src = guarded_alloc(in.n);
  memcpy(src, in.p, in.n);
  long claimed = vv_lz4_claimed(src, in.n);
  // Rooms: the selector's (up to 64 KiB + 64, so a claim of 4 GiB costs nothing), and when the
  // claim is small, exactly it and one byte either side: the edges where an overrun would be.
  one(src, in.n, claimed, sel % 65601);
  if (claimed >= 0 && claimed <= 65600) {
    one(src, in.n, claimed, (size_t)claimed);
    one(src, in.n, claimed, (size_t)claimed + 1);
    if (claimed > 0) one(src, in.n, claimed, (size_t)claimed - 1);
  }
  guarded_free(src, in.n);
  return 0;
}
