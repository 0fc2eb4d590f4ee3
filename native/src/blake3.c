// See blake3.h. Written from the BLAKE3 specification (Aumasson, Neves, O'Connor,
// Wilcox-O'Hearn, 2020): 1 KiB chunks of 64-byte blocks compressed with flags CHUNK_START /
// CHUNK_END and the chunk index as counter; chunk chaining values paired into parent nodes
// (flag PARENT, counter 0) up a left-complete binary tree; ROOT set on the last compression.
// Pairing each level left to right and carrying an odd last node up unchanged builds exactly
// that tree, so all nodes of one level of every segment are independent jobs.

#include "blake3.h"

#include <stdlib.h>
#include <string.h>

#define VV_CHUNK_START 1u
#define VV_CHUNK_END 2u
#define VV_PARENT 4u
#define VV_ROOT 8u
#define CHUNK_LEN 1024u

static const uint32_t IV[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                               0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};

// Row r: the message word used at each position in round r (the permutation
// 2,6,3,10,7,0,4,13,1,11,12,5,9,14,15,8 applied r times).
static const uint8_t SCHEDULE[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

static inline uint32_t load32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void store32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

// A chunk (len 0..1024 bytes) or a parent node (64 bytes: two chaining values).
typedef struct {
  const uint8_t *in;
  uint8_t *out;  // 32 bytes: the chaining value, or the hash when root
  uint64_t counter;
  uint32_t len;
  uint8_t flags;  // VV_PARENT or 0
  uint8_t root;
} vv_job;

#define LANES 1
#define SUFFIX portable
#define TARGET
#include "blake3_lanes.inc"
#undef LANES
#undef SUFFIX
#undef TARGET

#if defined(__x86_64__) && defined(__GNUC__)
#define VV_X86 1
#include <immintrin.h>

#define LANES 4
#define SUFFIX sse41
#define TARGET __attribute__((target("sse4.1")))
#include "blake3_lanes.inc"
#undef LANES
#undef SUFFIX
#undef TARGET

#define LANES 8
#define SUFFIX avx2
#define TARGET __attribute__((target("avx2")))
#include "blake3_lanes.inc"
#undef LANES
#undef SUFFIX
#undef TARGET

#define LANES 16
#define SUFFIX avx512
#define TARGET __attribute__((target("avx512f,avx512vl")))
#include "blake3_lanes.inc"
#undef LANES
#undef SUFFIX
#undef TARGET
#endif

typedef void (*run_fn)(const vv_job *, size_t);

static run_fn run_jobs;
static const char *run_name;

static int pick(const char *name) {
  if (!name) {
#ifdef VV_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return pick("avx512");
    if (__builtin_cpu_supports("avx2")) return pick("avx2");
    if (__builtin_cpu_supports("sse4.1")) return pick("sse41");
#endif
    return pick("portable");
  }
  if (strcmp(name, "portable") == 0) {
    run_jobs = run_jobs_portable;
    run_name = "portable";
    return 1;
  }
#ifdef VV_X86
  __builtin_cpu_init();
  if (strcmp(name, "sse41") == 0 && __builtin_cpu_supports("sse4.1")) {
    run_jobs = run_jobs_sse41;
    run_name = "sse41";
    return 1;
  }
  if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
    run_jobs = run_jobs_avx2;
    run_name = "avx2";
    return 1;
  }
  if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
    run_jobs = run_jobs_avx512;
    run_name = "avx512";
    return 1;
  }
#endif
  return 0;
}

const char *vv_blake3_impl(void) {
  if (!run_jobs) pick(NULL);
  return run_name;
}

int vv_blake3_force(const char *name) { return pick(name); }

// Hashes n inputs (ptr[i], len[i]) into out[32 i ..]. Inputs of one chunk are jobs with the
// ROOT flag; longer ones become chunk jobs and then parent jobs, one level at a time.
static int hash_inputs(size_t n, const uint8_t *const *ptr, const size_t *len, uint8_t *out) {
  if (!run_jobs) pick(NULL);
  size_t chunks = 0;
  for (size_t i = 0; i < n; i++) {
    size_t c = len[i] <= CHUNK_LEN ? 1 : (len[i] + CHUNK_LEN - 1) / CHUNK_LEN;
    chunks += c;
  }
  vv_job stack_jobs[64];
  uint8_t stack_cv[2 * 64 * 32];
  vv_job *jobs = stack_jobs;
  uint8_t *cv = stack_cv;          // chaining values of the current level, per input in order
  size_t *count = NULL;            // nodes of the current level, per input (0: done)
  size_t *base = NULL;             // where an input's nodes start in cv
  int heap = chunks > 64;
  if (heap) {
    jobs = malloc(chunks * sizeof *jobs);
    cv = malloc(2 * chunks * 32);
    if (!jobs || !cv) goto oom;
  }
  count = malloc((n ? n : 1) * 2 * sizeof *count);
  if (!count) goto oom;
  base = count + n;

  // Full chunks of multi-chunk inputs first (the kernels' fast path), then the rest.
  size_t full = 0;
  for (size_t i = 0; i < n; i++) {
    if (len[i] > CHUNK_LEN) full += len[i] / CHUNK_LEN - (len[i] % CHUNK_LEN == 0 ? 1 : 0);
  }
  size_t nf = 0, nj = full, at = 0;
  for (size_t i = 0; i < n; i++) {
    if (len[i] <= CHUNK_LEN) {
      jobs[nj++] = (vv_job){ptr[i], out + 32 * i, 0, (uint32_t)len[i], 0, 1};
      count[i] = 0;
      continue;
    }
    size_t c = (len[i] + CHUNK_LEN - 1) / CHUNK_LEN;
    base[i] = at;
    count[i] = c;
    for (size_t k = 0; k + 1 < c; k++) jobs[nf++] = (vv_job){ptr[i] + k * CHUNK_LEN, cv + 32 * (at + k), k, CHUNK_LEN, 0, 0};
    size_t l = len[i] - (c - 1) * CHUNK_LEN;
    jobs[nj++] = (vv_job){ptr[i] + (c - 1) * CHUNK_LEN, cv + 32 * (at + c - 1), c - 1, (uint32_t)l, 0, 0};
    at += c;
  }
  run_jobs(jobs, nj);

  // Parent levels: ping-pong between the two halves of cv.
  uint8_t *cur = cv, *nxt = cv + 32 * chunks;
  for (;;) {
    nj = 0;
    at = 0;
    for (size_t i = 0; i < n; i++) {
      size_t c = count[i];
      if (c < 2) continue;
      const uint8_t *src = cur + 32 * base[i];
      if (c == 2) {
        jobs[nj++] = (vv_job){src, out + 32 * i, 0, 64, VV_PARENT, 1};
        count[i] = 0;
        continue;
      }
      size_t pairs = c / 2;
      for (size_t k = 0; k < pairs; k++) jobs[nj++] = (vv_job){src + 64 * k, nxt + 32 * (at + k), 0, 64, VV_PARENT, 0};
      if (c & 1) memcpy(nxt + 32 * (at + pairs), src + 64 * pairs, 32);
      base[i] = at;
      count[i] = pairs + (c & 1);
      at += count[i];
    }
    if (nj == 0) break;
    run_jobs(jobs, nj);
    uint8_t *t = cur;
    cur = nxt;
    nxt = t;
  }
  free(count);
  if (heap) {
    free(jobs);
    free(cv);
  }
  return 0;
oom:
  free(count);
  if (heap) {
    free(jobs);
    free(cv);
  }
  return -1;
}

int vv_blake3_many(const uint8_t *b, const uint32_t *segs, size_t n, uint8_t *out) {
  enum { STEP = 4096 };
  const uint8_t *ptr[STEP];
  size_t len[STEP];
  for (size_t i = 0; i < n; i += STEP) {
    size_t m = n - i < STEP ? n - i : STEP;
    for (size_t k = 0; k < m; k++) {
      ptr[k] = b + segs[2 * (i + k)];
      len[k] = segs[2 * (i + k) + 1];
    }
    if (hash_inputs(m, ptr, len, out + 32 * i) != 0) return -1;
  }
  return 0;
}

int vv_blake3_ptrs(size_t n, const uint8_t *const *ptr, const size_t *len, uint8_t *out) {
  return hash_inputs(n, ptr, len, out);
}

int vv_blake3(const uint8_t *in, size_t len, uint8_t out[VV_BLAKE3_OUT]) {
  const uint8_t *p = in;
  return hash_inputs(1, &p, &len, out);
}
