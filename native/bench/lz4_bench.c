// The hand-written LZ4 (native/bench/lz4_handwritten.c, the addon's codec until it was replaced) against Debian's liblz4 on the same data in one run, the way the
// store uses LZ4: each segment compressed on its own (one call per segment, prefixed payload),
// decompressed into a buffer of exactly the segment's size. Built -O3 like the addon by
// tools/bench-lz4.sh, which prints the figures for tools/PERFORMANCE.md.
//
//   lz4_bench <data file> <segment bytes> <rounds>
// prints: ours|liblz4  compress MB/s  decompress MB/s  ratio (payload bytes / input bytes)
// MB/s counts uncompressed bytes per second of this thread's CPU time (the machine is shared:
// CPU time, unlike wall time, leaves out the time other processes held the core), best of
// <rounds>; both sides' payloads are checked to decode
// to the input with the other side's decoder before timing.
#define _POSIX_C_SOURCE 200809L
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lz4_handwritten.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static hw_lz4_state st;
static LZ4_stream_t lz;

static size_t c_ours(const uint8_t *s, size_t n, uint8_t *d, size_t cap) { return hw_lz4_compress(&st, s, n, d, cap); }
static long d_ours(const uint8_t *s, size_t n, uint8_t *d, size_t cap) { return hw_lz4_decompress(s, n, d, cap); }

// The same payload layout with liblz4: u32 LE length, then the block.
static size_t c_lib(const uint8_t *s, size_t n, uint8_t *d, size_t cap) {
  d[0] = (uint8_t)n;
  d[1] = (uint8_t)(n >> 8);
  d[2] = (uint8_t)(n >> 16);
  d[3] = (uint8_t)(n >> 24);
  int r = LZ4_compress_fast_extState(&lz, (const char *)s, (char *)d + 4, (int)n, (int)(cap - 4), 1);
  return r > 0 ? (size_t)r + 4 : 0;
}
static long d_lib(const uint8_t *s, size_t n, uint8_t *d, size_t cap) {
  if (n < 4) return -1;
  size_t want = (size_t)s[0] | (size_t)s[1] << 8 | (size_t)s[2] << 16 | (size_t)s[3] << 24;
  if (want > cap) return -1;
  int r = LZ4_decompress_safe((const char *)s + 4, (char *)d, (int)(n - 4), (int)want);
  return r == (int)want ? r : -1;
}

typedef size_t (*cfn)(const uint8_t *, size_t, uint8_t *, size_t);
typedef long (*dfn)(const uint8_t *, size_t, uint8_t *, size_t);

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: lz4_bench <file> <segment bytes> <rounds>\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) return perror(argv[1]), 1;
  fseek(f, 0, SEEK_END);
  size_t n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = malloc(n);
  if (fread(data, 1, n, f) != n) return perror("read"), 1;
  fclose(f);
  size_t seg = (size_t)atol(argv[2]);
  int rounds = atoi(argv[3]);
  size_t nseg = (n + seg - 1) / seg;
  size_t bound = HW_LZ4_BOUND(seg);
  uint8_t *pay[2];
  size_t *plen[2];
  for (int k = 0; k < 2; k++) {
    pay[k] = malloc(nseg * bound);
    plen[k] = malloc(nseg * sizeof(size_t));
  }
  uint8_t *back = malloc(seg);
  const char *name[2] = {"ours", "liblz4"};
  cfn cf[2] = {c_ours, c_lib};
  dfn df[2] = {d_ours, d_lib};
  double cbest[2] = {1e9, 1e9}, dbest[2] = {1e9, 1e9};
  size_t total[2] = {0, 0};
  for (int r = 0; r < rounds; r++) {
    for (int k0 = 0; k0 < 2; k0++) {
      int k = (r & 1) ? 1 - k0 : k0;  // alternate who goes first
      double t = now();
      size_t sum = 0;
      for (size_t i = 0; i < nseg; i++) {
        size_t len = i + 1 < nseg ? seg : n - i * seg;
        plen[k][i] = cf[k](data + i * seg, len, pay[k] + i * bound, bound);
        sum += plen[k][i];
      }
      t = now() - t;
      if (t < cbest[k]) cbest[k] = t;
      total[k] = sum;
    }
    if (r == 0) {  // each side's payloads decode with the other's decoder
      for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < nseg; i++) {
          size_t len = i + 1 < nseg ? seg : n - i * seg;
          if (df[1 - k](pay[k] + i * bound, plen[k][i], back, len) != (long)len || memcmp(back, data + i * seg, len)) {
            fprintf(stderr, "%s payload of segment %zu does not decode with %s\n", name[k], i, name[1 - k]);
            return 1;
          }
        }
    }
    for (int k0 = 0; k0 < 2; k0++) {
      int k = (r & 1) ? 1 - k0 : k0;
      double t = now();
      for (size_t i = 0; i < nseg; i++) {
        size_t len = i + 1 < nseg ? seg : n - i * seg;
        if (df[k](pay[k] + i * bound, plen[k][i], back, len) != (long)len) return 1;
      }
      t = now() - t;
      if (t < dbest[k]) dbest[k] = t;
    }
  }
  for (int k = 0; k < 2; k++)
    printf("%s %.0f %.0f %.4f\n", name[k], n / cbest[k] / 1e6, n / dbest[k] / 1e6, (double)total[k] / n);
  return 0;
}
