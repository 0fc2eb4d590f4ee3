// The write ring: one region of VV_RING_BLOCKS blocks of 1 MiB, allocated once per process and
// never freed. A large write's payload is copied into a free block (the one copy out of
// libfuse's receive buffer, as before) and JavaScript gets a view of that block (a subarray of
// the one Buffer over the region, made once: `writeRing()`), not a new external Buffer per
// write. It gives the block back with `releaseWrite(slot)` once nothing reads the view.
//
// Why: V8 counts every new external ArrayBuffer against its external-memory limit, so a
// Buffer per 1 MiB write started an incremental mark-compact every ~64-100 MiB written
// ("external memory pressure", --trace-incremental-marking), and the blocks came back to the
// pool only when the collector finalized them. With the ring, writes allocate nothing V8
// counts. When every block is taken (JavaScript holds more unwritten payloads than the ring
// has blocks), a write falls back to the old path (pool block, external Buffer): the ring
// never makes a writer wait.
//
// Blocks are tracked in a free stack and an "out" flag each, under one mutex: a block given
// back twice, or never taken, is ignored (and counted), so no caller mistake can put a block
// on the free stack twice and hand it to two writes at once.
#include "ring.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "../napi_util.h"

static pthread_mutex_t ring_mu = PTHREAD_MUTEX_INITIALIZER;
static char *ring_base;   // VV_RING_BLOCKS * VV_RING_BLOCK bytes; pages touched on first use
static int ring_state;    // 0 not yet allocated, 1 ready, -1 allocation failed
static uint16_t ring_free[VV_RING_BLOCKS];
static unsigned ring_nfree;
static uint8_t ring_out[VV_RING_BLOCKS];
static double ring_taken, ring_missed, ring_bad_gives;

static void ring_init_locked(void) {
  if (ring_state != 0) return;
  ring_base = malloc((size_t)VV_RING_BLOCKS * VV_RING_BLOCK);
  if (!ring_base) {
    ring_state = -1;
    return;
  }
  for (unsigned i = 0; i < VV_RING_BLOCKS; i++) ring_free[i] = (uint16_t)(VV_RING_BLOCKS - 1 - i);
  ring_nfree = VV_RING_BLOCKS;
  ring_state = 1;
}

void *vv_ring_take(size_t len) {
  if (len < VV_RING_MIN || len > VV_RING_BLOCK) return NULL;
  void *p = NULL;
  pthread_mutex_lock(&ring_mu);
  ring_init_locked();
  if (ring_state == 1 && ring_nfree > 0) {
    unsigned slot = ring_free[--ring_nfree];
    ring_out[slot] = 1;
    p = ring_base + (size_t)slot * VV_RING_BLOCK;
    ring_taken++;
  } else {
    ring_missed++;
  }
  pthread_mutex_unlock(&ring_mu);
  return p;
}

int vv_ring_slot(const void *p) {
  // ring_base is set once, before any pointer into it exists, and never changes.
  const char *base = ring_base;
  if (!base || !p) return -1;
  const char *c = (const char *)p;
  if (c < base || c >= base + (size_t)VV_RING_BLOCKS * VV_RING_BLOCK) return -1;
  return (int)((size_t)(c - base) / VV_RING_BLOCK);
}

int vv_ring_give(int slot) {
  int ok = 0;
  pthread_mutex_lock(&ring_mu);
  if (slot >= 0 && (unsigned)slot < VV_RING_BLOCKS && ring_out[slot]) {
    ring_out[slot] = 0;
    ring_free[ring_nfree++] = (uint16_t)slot;
    ok = 1;
  } else {
    ring_bad_gives++;
  }
  pthread_mutex_unlock(&ring_mu);
  return ok;
}

// writeRing() -> Buffer over the whole region (no finalizer: the region lives as long as the
// process), or null when it cannot be allocated. Each call makes a new Buffer object over the
// same memory; session.ts keeps one.
static napi_value js_write_ring(napi_env env, napi_callback_info info) {
  pthread_mutex_lock(&ring_mu);
  ring_init_locked();
  int ready = ring_state == 1;
  pthread_mutex_unlock(&ring_mu);
  napi_value out;
  if (!ready) {
    napi_get_null(env, &out);
    return out;
  }
  if (napi_create_external_buffer(env, (size_t)VV_RING_BLOCKS * VV_RING_BLOCK, ring_base, NULL, NULL, &out) != napi_ok) {
    napi_get_null(env, &out);
  }
  return out;
}

// releaseWrite(slot) -> whether the block was out (false: already given back, or never taken).
static napi_value js_release_write(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "releaseWrite(slot)")) return NULL;
  int32_t slot;
  if (napi_get_value_int32(env, argv[0], &slot) != napi_ok) return vv_fail_type(env, "slot must be a number");
  napi_value out;
  napi_get_boolean(env, vv_ring_give(slot) == 1, &out);
  return out;
}

// ringStats() -> { blocks, blockBytes, free, taken, missed, badReleases }
static napi_value js_ring_stats(napi_env env, napi_callback_info info) {
  pthread_mutex_lock(&ring_mu);
  double nfree = ring_state == 1 ? ring_nfree : 0, taken = ring_taken, missed = ring_missed, bad = ring_bad_gives;
  pthread_mutex_unlock(&ring_mu);
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, VV_RING_BLOCKS, &v);
  napi_set_named_property(env, o, "blocks", v);
  napi_create_double(env, VV_RING_BLOCK, &v);
  napi_set_named_property(env, o, "blockBytes", v);
  napi_create_double(env, nfree, &v);
  napi_set_named_property(env, o, "free", v);
  napi_create_double(env, taken, &v);
  napi_set_named_property(env, o, "taken", v);
  napi_create_double(env, missed, &v);
  napi_set_named_property(env, o, "missed", v);
  napi_create_double(env, bad, &v);
  napi_set_named_property(env, o, "badReleases", v);
  return o;
}

napi_value vv_init_ring(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"writeRing", NULL, js_write_ring, NULL, NULL, NULL, napi_default, NULL},
      {"releaseWrite", NULL, js_release_write, NULL, NULL, NULL, napi_default, NULL},
      {"ringStats", NULL, js_ring_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
