// Writes test/fixtures/lz4/handwritten.bin: payloads of the hand-written compressor the addon
// used until it linked liblz4, with their plain bytes, so test/native-reference.test.ts can
// show that what containers already hold still decodes. Run once (the fixture is committed):
//   cc -O2 -o /tmp/lz4_fixture native/bench/lz4_fixture.c native/bench/lz4_handwritten.c
//   /tmp/lz4_fixture /usr/bin/perl > test/fixtures/lz4/handwritten.bin (binaries: any file)
// Records: u32 LE plain length, plain bytes, u32 LE payload length, payload (u32 LE length +
// LZ4 block).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lz4_handwritten.h"

static uint32_t s = 0x12345678;
static uint32_t next(void) {
  s ^= s << 13;
  s ^= s >> 17;
  s ^= s << 5;
  return s;
}

static void put32(uint32_t v) {
  uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  fwrite(b, 1, 4, stdout);
}

static hw_lz4_state st;

static void record(const uint8_t *p, size_t n) {
  static uint8_t out[HW_LZ4_BOUND(70000)];
  size_t got = hw_lz4_compress(&st, p, n, out, sizeof out);
  if (!got) abort();
  put32((uint32_t)n);
  fwrite(p, 1, n, stdout);
  put32((uint32_t)got);
  fwrite(out, 1, got, stdout);
}

int main(int argc, char **argv) {
  static uint8_t sample[1 << 20], buf[70000];
  FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
  size_t have = f ? fread(sample, 1, sizeof sample, f) : 0;
  // Sizes at the format's edges (MFLIMIT 12, LASTLITERALS 5, the 15 and 255 length steps).
  const size_t sizes[] = {0, 1, 4, 5, 12, 13, 16, 19, 20, 64, 270, 271, 4096, 8192, 8193};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    memset(buf, 0, n);
    record(buf, n);  // zeros
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)"vmvault "[i % 8];
    record(buf, n);  // period 8
    {
      for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)next();
      record(buf, n);  // incompressible
    }
    if (have >= n) record(sample + (next() % (have - n + 1)), n);  // binaries
  }
  return 0;
}
