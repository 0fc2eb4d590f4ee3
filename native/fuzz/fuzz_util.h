// Shared by the libFuzzer harnesses of native/fuzz/: a reader that takes parameters from the
// front of the fuzzer's input (so the fuzzer steers sizes and modes as well as bytes), and a
// check that aborts with a message, which libFuzzer reports as a crash and saves the input.
#ifndef VMVAULT_FUZZ_UTIL_H
#define VMVAULT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  const uint8_t *p;
  size_t n;
} vv_in;

// Little-endian integer of k bytes (0 when the input ran out), consumed from the front.
static inline uint32_t take(vv_in *in, int k) {
  uint32_t v = 0;
  for (int i = 0; i < k; i++) {
    if (in->n == 0) break;
    v |= (uint32_t)in->p[0] << (8 * i);
    in->p++;
    in->n--;
  }
  return v;
}

#define MUST(cond, ...)                                         \
  do {                                                          \
    if (!(cond)) {                                              \
      fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                             \
      fputc('\n', stderr);                                      \
      abort();                                                  \
    }                                                           \
  } while (0)

// n bytes that end right before a PROT_NONE page, so a read or write past the end faults even in
// code AddressSanitizer does not instrument (Debian's liblz4). Freed with guarded_free.
#include <sys/mman.h>
#include <unistd.h>

static inline void *guarded_alloc(size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t body = (n + page - 1) / page * page;
  uint8_t *base = mmap(NULL, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) abort();
  if (mprotect(base + body, page, PROT_NONE) != 0) abort();
  return base + body - n;
}

static inline void guarded_free(void *p, size_t n) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t body = (n + page - 1) / page * page;
  munmap((uint8_t *)p + n - body, body + page);
}

#endif
