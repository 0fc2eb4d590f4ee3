// The FastCDC cut loop of src/store/segmenter/segmenter.ts (cutTs), in C. Its boundaries are part of the
// store format: they must match the TypeScript reference byte for byte.
#ifndef VMVAULT_CUT_H
#define VMVAULT_CUT_H

#include <stddef.h>
#include <stdint.h>

// Set on an entry of the cut list when the chunk that ends there is all zero bytes.
#define VV_ZERO_FLAG 0x80000000u

typedef struct {
  uint32_t min_size;
  uint32_t avg_size;
  uint32_t max_size;
  uint32_t mask_s;
  uint32_t mask_l;
  int zero_fast;
} vv_params;

// state: [bytes of the open chunk, fp, open chunk all zero so far], updated in place.
// The caller guarantees state[0] < max_size, n < 2^31 and that out has room for
// ceil(n / (min_size + 1)) + 2 entries. Returns the number of entries written.
size_t vv_cut(const uint32_t gear[256], const vv_params *p, uint32_t state[3],
              const uint8_t *buf, size_t n, uint32_t *out);

#endif
