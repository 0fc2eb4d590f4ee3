// libFuzzer target: our BLAKE3 (native/src/blake3.c), every kernel against our portable
// single-lane kernel. Input: u8 mode, a segment list, then the data. The portable kernel is
// checked against the BLAKE3 team's official test vectors and against @napi-rs/blake-hash (an
// independent implementation) by test/native-reference.test.ts on every run; no third-party
// C code is built in here.
//
// Checks, for the data and every segment: vv_blake3_many over the segment list (the ingest batch) and
// vv_blake3_ptrs (the read batch) give the same hashes as one at a time; and every SIMD
// kernel this CPU runs (16/8/4 lanes) equals the portable single-lane kernel.
#include <string.h>

#include "../src/blake3.h"
#include "fuzz_util.h"

#define MAX_SEGS 64

static const char *const kernels[] = {"portable", "sse41", "avx2", "avx512"};

// The portable kernel's one-shot hash: what every SIMD kernel and batch path must equal.
static void reference(const uint8_t *p, size_t n, uint8_t out[32]) {
  vv_blake3_force("portable");
  MUST(vv_blake3(p, n, out) == 0, "vv_blake3 (portable) failed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vv_in in = {data, size};
  uint32_t mode = take(&in, 1);
  size_t nsegs = take(&in, 1) % MAX_SEGS;
  uint32_t segs[2 * MAX_SEGS];
  for (size_t i = 0; i < nsegs; i++) {
    segs[2 * i] = take(&in, 2);
    segs[2 * i + 1] = take(&in, 2) * ((mode & 1) ? 4 : 1);
  }
  // The data, stretched by repetition sometimes (multi-chunk trees with few input bytes).
  size_t reps = mode & 2 ? 1 + (mode >> 2) : 1;
  size_t n = in.n * reps;
  uint8_t *buf = malloc(n ? n : 1);
  for (size_t at = 0; at < n; at += in.n) memcpy(buf + at, in.p, in.n);
  for (size_t i = 0; i < nsegs; i++) {
    segs[2 * i] = n ? segs[2 * i] % (n + 1) : 0;
    if (segs[2 * i + 1] > n - segs[2 * i]) segs[2 * i + 1] = (uint32_t)(n - segs[2 * i]);
  }

  uint8_t want[32], got[32];
  reference(buf, n, want);
  uint8_t *seg_want = malloc(32 * (nsegs + 1));
  for (size_t i = 0; i < nsegs; i++) reference(buf + segs[2 * i], segs[2 * i + 1], seg_want + 32 * i);

  const uint8_t *ptrs[MAX_SEGS];
  size_t lens[MAX_SEGS];
  for (size_t i = 0; i < nsegs; i++) {
    ptrs[i] = buf + segs[2 * i];
    lens[i] = segs[2 * i + 1];
  }
  uint8_t *many = malloc(32 * (nsegs + 1));
  for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
    if (!vv_blake3_force(kernels[k])) continue;
    MUST(vv_blake3(buf, n, got) == 0, "vv_blake3 failed");
    MUST(memcmp(got, want, 32) == 0, "%s: %zu bytes hash differently from the portable kernel", kernels[k], n);
    memset(many, 0, 32 * (nsegs + 1));
    MUST(vv_blake3_many(buf, segs, nsegs, many) == 0, "vv_blake3_many failed");
    for (size_t i = 0; i < nsegs; i++)
      MUST(memcmp(many + 32 * i, seg_want + 32 * i, 32) == 0, "%s: segment %zu (%u bytes at %u) of a batch differs",
           kernels[k], i, segs[2 * i + 1], segs[2 * i]);
    memset(many, 0, 32 * (nsegs + 1));
    MUST(vv_blake3_ptrs(nsegs, ptrs, lens, many) == 0, "vv_blake3_ptrs failed");
    MUST(memcmp(many, seg_want, 32 * nsegs) == 0, "%s: vv_blake3_ptrs differs", kernels[k]);
  }
  vv_blake3_force(NULL);
  free(many);
  free(seg_want);
  free(buf);
  return 0;
}
