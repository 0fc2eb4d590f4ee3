// Per request kind, the time from libfuse's receipt of a request (req_new) to its answer, split
// into: receipt -> queued (a slot; waits only when maxInFlight are out), queued -> handed to
// JavaScript (the thread-safe function's wake-up of the JS thread, and whatever the JS thread
// was doing meanwhile), handed -> answered (the handler, awaits included). Kept on the JS
// thread, which alone answers (vv_take), so without a lock; read with reqTimes(handle).
// Requests the addon answers on libfuse's thread (attrs.c, names.c, quiet.c, ...) never
// reach vv_take and are not counted here.
#define _GNU_SOURCE
#include "reqtime.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../napi_util.h"

// Histogram buckets of the total: bucket k holds [2^(k-1), 2^k) microseconds (bucket 0: below
// 1 us), k = 0..HB-1; the last also takes everything longer (4.2 s and up).
#define HB 24

typedef struct vv_reqtime {
  double n[OP_COUNT];
  double slot_ns[OP_COUNT], wait_ns[OP_COUNT], js_ns[OP_COUNT], max_ns[OP_COUNT];
  double hist[OP_COUNT][HB];
} vv_reqtime;

uint64_t vv_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void vv_reqtime_done(vv_sess *s, const vv_req *r) {
  if (!r->t_recv || !r->t_handed || r->op < 0 || r->op >= OP_COUNT) return;
  if (!s->reqtime) s->reqtime = calloc(1, sizeof *s->reqtime);
  vv_reqtime *t = s->reqtime;
  if (!t) return;
  uint64_t now = vv_now_ns();
  int op = r->op;
  double total = (double)(now - r->t_recv);
  t->n[op]++;
  t->slot_ns[op] += (double)(r->t_queued - r->t_recv);
  t->wait_ns[op] += (double)(r->t_handed - r->t_queued);
  t->js_ns[op] += (double)(now - r->t_handed);
  if (total > t->max_ns[op]) t->max_ns[op] = total;
  int b = 0;
  for (double us = total / 1000.0; us >= 1.0 && b < HB - 1; us /= 2.0) b++;
  t->hist[op][b]++;
}

void vv_reqtime_free(vv_sess *s) {
  free(s->reqtime);
  s->reqtime = NULL;
}

static const char *const NAMES[OP_COUNT] = {
    "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
    "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync",
    "opendir", "readdir", "releasedir", "fsyncdir", "statfs", "access", "create", "getlk",
    "setlk", "flock", "fallocate", "lseek", "copy_file_range", "interrupt"};

static void put(napi_env env, napi_value o, const char *k, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, o, k, x);
}

// reqTimes(handle) -> { [op]: { n, slotMs, waitMs, jsMs, maxMs, hist: number[] } } (sums in ms;
// hist[k]: totals in [2^(k-1), 2^k) us, the last bucket also the rest).
static napi_value js_req_times(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "reqTimes(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  napi_value o;
  napi_create_object(env, &o);
  vv_reqtime *t = s->reqtime;
  if (!t) return o;
  for (int op = 0; op < OP_COUNT; op++) {
    if (!t->n[op]) continue;
    napi_value e, h;
    napi_create_object(env, &e);
    put(env, e, "n", t->n[op]);
    put(env, e, "slotMs", t->slot_ns[op] / 1e6);
    put(env, e, "waitMs", t->wait_ns[op] / 1e6);
    put(env, e, "jsMs", t->js_ns[op] / 1e6);
    put(env, e, "maxMs", t->max_ns[op] / 1e6);
    napi_create_array_with_length(env, HB, &h);
    for (uint32_t b = 0; b < HB; b++) {
      napi_value x;
      napi_create_double(env, t->hist[op][b], &x);
      napi_set_element(env, h, b, x);
    }
    napi_set_named_property(env, e, "hist", h);
    napi_set_named_property(env, o, NAMES[op], e);
  }
  return o;
}

napi_value vv_init_reqtime(napi_env env, napi_value exports) {
  napi_property_descriptor p = {"reqTimes", NULL, js_req_times, NULL, NULL, NULL, napi_default, NULL};
  napi_define_properties(env, exports, 1, &p);
  return exports;
}
