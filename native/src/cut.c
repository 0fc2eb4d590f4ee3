// See cut.h. The hash loop is the hot path: fp stays a uint32_t in a register, the byte loop
// is unrolled, and the mask is chosen once per phase (MASK_S, then MASK_L) instead of per
// byte. Zero-ness is not tracked per byte; it is checked afterwards with word loads, which
// stop at the first non-zero word and so cost almost nothing on ordinary data.

#include <string.h>

#include "cut.h"

static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);  // unaligned-safe; compiles to one load
  return v;
}

static int all_zero(const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (load64(p + i) | load64(p + i + 8) | load64(p + i + 16) | load64(p + i + 24)) return 0;
  }
  for (; i + 8 <= n; i += 8) {
    if (load64(p + i)) return 0;
  }
  for (; i < n; i++) {
    if (p[i]) return 0;
  }
  return 1;
}

// Keeps the compiler from re-associating the sum that carries fp from one group of four bytes
// to the next; re-associated, that chain grows from two operations to four.
#if defined(__GNUC__)
#define OPAQUE(x) __asm__("" : "+r"(x))
#else
#define OPAQUE(x) ((void)0)
#endif

// Hashes buf[i..end) under one mask. Returns the index just past the byte that cut, or end
// when none did; *cut says which.
//
// fp after one byte is 2fp + g, a chain of two dependent operations per byte. Four bytes at a
// time, fp advances as (fp << 4) + t3 with t3 = 8g0 + 4g1 + 2g2 + g3 computed beside the chain,
// and the fp of each intermediate byte is derived from the same fp for the check only.
static inline size_t scan(const uint32_t *gear, const uint8_t *buf, size_t i, size_t end,
                          uint32_t mask, uint32_t *fpp, int *cut) {
  uint32_t fp = *fpp;
#define HIT(f, k)                               \
  if (__builtin_expect(((f) & mask) == 0, 0)) { \
    *fpp = (f);                                 \
    *cut = 1;                                   \
    return i + (k);                             \
  }
#define QUAD(o)                                                     \
  {                                                                 \
    uint32_t g0 = gear[buf[i + (o)]], g1 = gear[buf[i + (o) + 1]];  \
    uint32_t g2 = gear[buf[i + (o) + 2]], g3 = gear[buf[i + (o) + 3]]; \
    uint32_t f = (fp << 1) + g0;                                    \
    HIT(f, (o) + 1)                                                 \
    uint32_t t1 = (g0 << 1) + g1;                                   \
    f = (fp << 2) + t1;                                             \
    HIT(f, (o) + 2)                                                 \
    uint32_t t2 = (t1 << 1) + g2;                                   \
    f = (fp << 3) + t2;                                             \
    HIT(f, (o) + 3)                                                 \
    uint32_t t3 = (t2 << 1) + g3;                                   \
    OPAQUE(t3);                             \
    fp = (fp << 4) + t3;                                            \
    HIT(fp, (o) + 4)                                                \
  }
  for (; i + 8 <= end; i += 8) {
    QUAD(0)
    QUAD(4)
  }
  for (; i < end; i++) {
    fp = (fp << 1) + gear[buf[i]];
    HIT(fp, 1)
  }
#undef QUAD
#undef HIT
  *fpp = fp;
  *cut = 0;
  return end;
}

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

size_t vv_cut(const uint32_t gear[256], const vv_params *p, uint32_t state[3],
              const uint8_t *buf, size_t n, uint32_t *out) {
  const size_t min = p->min_size, avg = p->avg_size, max = p->max_size;
  size_t pos = state[0];
  uint32_t fp = state[1];
  int zero = state[2] == 1;
  size_t count = 0;
  size_t i = 0;
  while (i < n) {
    if (pos == 0 && p->zero_fast && n - i >= max && all_zero(buf + i, max)) {
      i += max;
      out[count++] = (uint32_t)i | VV_ZERO_FLAG;
      continue;
    }
    const size_t start = i;
    int cut = 0;
    if (pos < min) {
      size_t skip = min_sz(min - pos, n - i);
      i += skip;
      pos += skip;
    }
    // A byte is judged by MASK_S while the chunk held fewer than avg bytes before it.
    if (pos >= min && pos < avg) {
      size_t k = scan(gear, buf, i, i + min_sz(avg - pos, n - i), p->mask_s, &fp, &cut);
      pos += k - i;
      i = k;
    }
    if (!cut && pos >= avg) {
      size_t k = scan(gear, buf, i, i + min_sz(max - pos, n - i), p->mask_l, &fp, &cut);
      pos += k - i;
      i = k;
      if (pos >= max) cut = 1;
    }
    if (zero) zero = all_zero(buf + start, i - start);
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
