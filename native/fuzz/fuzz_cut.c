// libFuzzer target: the FastCDC cut loop vv_cut (native/src/cut.c) against a byte-at-a-time
// transcription of cutTs (src/store/segmenter.ts), the reference it must equal because its
// boundaries are part of the store format. Input: parameters, a split list, then the data.
//
// Checks: the same cut list (offsets and zero flags) and the same carried state as the
// reference; the same cuts whether the data comes whole or in the fuzzer's pieces; every
// finished chunk longer than min and at most max; a zero flag exactly on all-zero chunks; and,
// with zero_fast derived as packParams derives it, the same cuts as without the shortcut.
#include <string.h>

#include "../src/cut.h"
#include "fuzz_util.h"

static uint32_t gear[256];

// GEAR of segmenter.ts: splitmix64 from a fixed seed, top 32 bits.
static void init_gear(void) {
  uint64_t s = 0x766d7661756c7431ull;
  for (int i = 0; i < 256; i++) {
    s += 0x9e3779b97f4a7c15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z = z ^ (z >> 31);
    gear[i] = (uint32_t)(z >> 32);
  }
}

static int all_zero(const uint8_t *p, size_t a, size_t b) {
  for (size_t i = a; i < b; i++)
    if (p[i]) return 0;
  return 1;
}

// cutTs, line for line.
static size_t ref_cut(const vv_params *p, uint32_t state[3], const uint8_t *buf, size_t n, uint32_t *out) {
  size_t pos = state[0];
  uint32_t fp = state[1];
  int zero = state[2] == 1;
  size_t count = 0, i = 0;
  while (i < n) {
    if (pos == 0 && p->zero_fast && n - i >= p->max_size && all_zero(buf, i, i + p->max_size)) {
      i += p->max_size;
      out[count++] = (uint32_t)i | VV_ZERO_FLAG;
      continue;
    }
    size_t from = i;
    if (pos < p->min_size) {
      size_t skip = p->min_size - pos < n - i ? p->min_size - pos : n - i;
      i += skip;
      pos += skip;
    }
    int cut = 0;
    if (pos >= p->min_size) {
      size_t strict = p->avg_size > pos ? p->avg_size - pos : 0;
      size_t lim = i + (strict < n - i ? strict : n - i);
      size_t start = i;
      while (i < lim) {
        fp = (fp << 1) + gear[buf[i++]];
        if ((fp & p->mask_s) == 0) {
          cut = 1;
          break;
        }
      }
      pos += i - start;
      if (!cut && i < n) {
        size_t start2 = i;
        lim = i + (p->max_size - pos < n - i ? p->max_size - pos : n - i);
        while (i < lim) {
          fp = (fp << 1) + gear[buf[i++]];
          if ((fp & p->mask_l) == 0) {
            cut = 1;
            break;
          }
        }
        pos += i - start2;
        if (pos >= p->max_size) cut = 1;
      }
    }
    if (zero) zero = all_zero(buf, from, i);
    if (!cut) break;
    out[count++] = zero ? ((uint32_t)i | VV_ZERO_FLAG) : (uint32_t)i;
    pos = 0;
    fp = 0;
    zero = 1;
  }
  state[0] = (uint32_t)pos;
  state[1] = fp;
  state[2] = zero ? 1 : 0;
  return count;
}

static uint32_t top_bits(unsigned k) { return k == 0 ? 0 : k >= 32 ? 0xffffffffu : ~0u << (32 - k); }

// zeroFast of packParams: 1 when a run of zeros never cuts before max.
static int derive_zero_fast(const vv_params *p) {
  uint32_t fp = 0;
  for (uint32_t i = p->min_size; i + 1 < p->max_size; i++) {
    fp = (fp << 1) + gear[0];
    if ((fp & (i < p->avg_size ? p->mask_s : p->mask_l)) == 0) return 0;
  }
  return 1;
}

#define MAX_PIECES 16

// Cuts buf in the given pieces with fn; writes absolute offsets (with flags) to out.
static size_t run(size_t (*fn)(const uint32_t *, const vv_params *, uint32_t *, const uint8_t *, size_t, uint32_t *),
                  const vv_params *p, const uint8_t *buf, size_t n, const size_t *cuts, size_t npieces, uint32_t *out,
                  uint32_t state[3]) {
  state[0] = 0;
  state[1] = 0;
  state[2] = 1;
  size_t count = 0, at = 0;
  for (size_t k = 0; k <= npieces; k++) {
    size_t end = k < npieces ? cuts[k] : n;
    if (end < at) end = at;
    size_t len = end - at;
    // Exactly the room the addon demands (addon.c check_cut), in its own allocation.
    size_t room = (len + p->min_size) / ((size_t)p->min_size + 1) + 2;
    uint32_t *piece = malloc(room * sizeof *piece);
    size_t c = len ? fn(gear, p, state, buf + at, len, piece) : 0;
    MUST(c <= room, "%zu entries in room for %zu", c, room);
    for (size_t i = 0; i < c; i++) {
      uint32_t flag = piece[i] & VV_ZERO_FLAG;
      out[count++] = ((piece[i] & ~VV_ZERO_FLAG) + (uint32_t)at) | flag;
    }
    free(piece);
    at = end;
  }
  return count;
}

static size_t ref_fn(const uint32_t *g, const vv_params *p, uint32_t *s, const uint8_t *b, size_t n, uint32_t *o) {
  (void)g;
  return ref_cut(p, s, b, n, o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!gear[0]) init_gear();
  vv_in in = {data, size};
  // Small sizes most of the time, so many chunks fit in an input; the store's real ones
  // (2/8/64 KiB) sometimes.
  uint32_t shape = take(&in, 1);
  vv_params p;
  int real = (shape & 3) == 3;
  if (real) {
    p.min_size = 2048;
    p.avg_size = 8192;
    p.max_size = 65536;
  } else {
    p.min_size = 1 + take(&in, 1);
    p.avg_size = p.min_size + 1 + take(&in, 2) % 1024;
    p.max_size = p.avg_size + 1 + take(&in, 2) % 4096;
  }
  unsigned bits = 1 + (shape >> 1) % 14;  // as if avg were 2^bits
  if (shape & 0x80) {
    p.mask_s = take(&in, 4);
    p.mask_l = take(&in, 4);
  } else {
    p.mask_s = top_bits(bits + 2);
    p.mask_l = top_bits(bits > 2 ? bits - 2 : 1);
  }
  p.zero_fast = derive_zero_fast(&p);

  size_t npieces = take(&in, 1) % MAX_PIECES;
  size_t cuts[MAX_PIECES];
  for (size_t k = 0; k < npieces; k++) cuts[k] = take(&in, 2);
  // Data: the rest, optionally followed by a run of zeros (the shortcut's case).
  // (Kept short for small sizes: the four cuts of every run pass over every byte.)
  size_t zeros = (shape & 0x40) ? take(&in, 1) * (real ? 1024 : 32) : 0;
  size_t n = in.n + zeros;
  uint8_t *buf = calloc(n ? n : 1, 1);
  memcpy(buf, in.p, in.n);
  for (size_t k = 0; k < npieces; k++) cuts[k] = n ? cuts[k] % (n + 1) : 0;
  for (size_t k = 1; k < npieces; k++)  // ascending
    for (size_t j = k; j > 0 && cuts[j - 1] > cuts[j]; j--) {
      size_t t = cuts[j];
      cuts[j] = cuts[j - 1];
      cuts[j - 1] = t;
    }

  size_t room = n / ((size_t)p.min_size + 1) + 2 + 2 * MAX_PIECES;
  uint32_t *ours = malloc(room * 4), *whole = malloc(room * 4), *ref = malloc(room * 4);
  uint32_t s_ours[3], s_whole[3], s_ref[3];
  size_t c_ours = run(vv_cut, &p, buf, n, cuts, npieces, ours, s_ours);
  size_t c_whole = run(vv_cut, &p, buf, n, cuts, 0, whole, s_whole);
  size_t c_ref = run(ref_fn, &p, buf, n, cuts, 0, ref, s_ref);
  MUST(c_whole == c_ref, "%zu cuts, reference %zu", c_whole, c_ref);
  MUST(memcmp(whole, ref, c_ref * 4) == 0, "cut list differs from the reference");
  MUST(memcmp(s_whole, s_ref, sizeof s_ref) == 0, "state differs from the reference");
  MUST(c_ours == c_whole && memcmp(ours, whole, c_whole * 4) == 0, "%zu pieces cut differently from whole", npieces);
  MUST(memcmp(s_ours, s_whole, sizeof s_ref) == 0, "state after pieces differs from whole");
  size_t prev = 0;
  for (size_t i = 0; i < c_ref; i++) {
    size_t end = ref[i] & ~VV_ZERO_FLAG;
    MUST(end > prev + p.min_size && end - prev <= p.max_size, "chunk %zu: %zu bytes (min %u, max %u)", i, end - prev,
         p.min_size, p.max_size);
    MUST(!!(ref[i] & VV_ZERO_FLAG) == all_zero(buf, prev, end), "chunk %zu: zero flag wrong", i);
    prev = end;
  }
  MUST(s_ref[0] == n - prev, "open chunk %u bytes, %zu left", s_ref[0], n - prev);
  if (p.zero_fast) {
    vv_params q = p;
    q.zero_fast = 0;
    size_t c_slow = run(vv_cut, &q, buf, n, cuts, 0, ours, s_ours);
    MUST(c_slow == c_ref && memcmp(ours, ref, c_ref * 4) == 0, "the zero shortcut changed the cuts");
  }
  free(ours);
  free(whole);
  free(ref);
  free(buf);
  return 0;
}
