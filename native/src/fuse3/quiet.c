// Flushes that do nothing, answered on libfuse's worker thread: no queue, no hop to the
// JavaScript thread and back. close(2) sends a flush and waits for it; for a handle opened
// read-only the namespace has nothing to commit (FsOps.flush), and the only other duty of a
// flush, dropping the caller's POSIX locks on the file (ll-filesystem.ts), has nothing to do
// while no POSIX lock was ever taken on the mount. rsync opens each file it copies once more,
// read-only, to fchmod it: one flush per file (tools/PERFORMANCE.md, "rsync5").
//
// JavaScript marks a handle quiet (quietFlush) before it answers the open that made it, and
// tells the addon before it answers the first lock request (locksUsed): from then on every flush
// goes to JavaScript again (the mark is never taken back: locks are rare on this mount, QEMU's
// images aside). The mark goes when the kernel releases the handle, on libfuse's thread before
// the release is queued, so a handle number JavaScript hands out again is never marked by
// mistake. The table is direct-mapped by handle: a newer handle may take an older one's slot
// (that one's flush then goes to JavaScript).
#define _GNU_SOURCE
#include "quiet.h"

#include <stdlib.h>

#include "../napi_util.h"

#define SLOT_BITS 10
#define NSLOTS (1u << SLOT_BITS)

struct vv_quiet {
  pthread_mutex_t mu;
  uint64_t fh[NSLOTS];     // handle + 1 (0: empty)
  int locks_used;          // a POSIX lock request was seen: no flush is answered here
  double answered;         // flushes answered here (stats)
};

static uint32_t slot_of(uint64_t fh) { return (uint32_t)((fh * 0x9E3779B97F4A7C15ull) >> (64 - SLOT_BITS)); }

static vv_quiet *quiet_of(vv_sess *s) {
  // Made on the JS thread (quietFlush) before any handle is marked; read by libfuse's threads after.
  return __atomic_load_n(&s->quiet, __ATOMIC_ACQUIRE);
}

int vv_quiet_flush(vv_sess *s, fuse_req_t req, uint64_t fh) {
  vv_quiet *q = quiet_of(s);
  if (!q) return 0;
  int hit = 0;
  pthread_mutex_lock(&q->mu);
  if (!q->locks_used && q->fh[slot_of(fh)] == fh + 1) {
    hit = 1;
    q->answered++;
  }
  pthread_mutex_unlock(&q->mu);
  if (!hit) return 0;
  fuse_reply_err(req, 0);
  return 1;
}

void vv_quiet_release(vv_sess *s, uint64_t fh) {
  vv_quiet *q = quiet_of(s);
  if (!q) return;
  pthread_mutex_lock(&q->mu);
  if (q->fh[slot_of(fh)] == fh + 1) q->fh[slot_of(fh)] = 0;
  pthread_mutex_unlock(&q->mu);
}

void vv_quiet_free(vv_sess *s) {
  vv_quiet *q = s->quiet;
  if (!q) return;
  pthread_mutex_destroy(&q->mu);
  free(q);
  s->quiet = NULL;
}

static vv_quiet *quiet_made(vv_sess *s) {
  vv_quiet *q = s->quiet;
  if (q) return q;
  q = calloc(1, sizeof *q);
  if (!q) return NULL;
  pthread_mutex_init(&q->mu, NULL);
  __atomic_store_n(&s->quiet, q, __ATOMIC_RELEASE);
  return q;
}

static int fh_arg(napi_env env, napi_value v, uint64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 9007199254740991.0 || d != (double)(uint64_t)d) return 0;
  *out = (uint64_t)d;
  return 1;
}

// quietFlush(handle, fh: number) -> bool: flushes of fh are answered here until its release.
// False: not taken (locks were used, or out of memory).
static napi_value js_quiet_flush(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "quietFlush(handle, fh)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t fh;
  if (!fh_arg(env, argv[1], &fh)) return vv_fail_type(env, "fh must be a non-negative integer");
  vv_quiet *q = quiet_made(s);
  bool ok = false;
  if (q) {
    pthread_mutex_lock(&q->mu);
    if (!q->locks_used) {
      q->fh[slot_of(fh)] = fh + 1;
      ok = true;
    }
    pthread_mutex_unlock(&q->mu);
  }
  napi_value v;
  napi_get_boolean(env, ok, &v);
  return v;
}

// unquiet(handle, fh: number): flushes of fh go to JavaScript (an open that was not answered).
static napi_value js_unquiet(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "unquiet(handle, fh)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t fh;
  if (!fh_arg(env, argv[1], &fh)) return vv_fail_type(env, "fh must be a non-negative integer");
  vv_quiet_release(s, fh);
  return NULL;
}

// locksUsed(handle): a POSIX lock may be taken from now on: every flush goes to JavaScript.
static napi_value js_locks_used(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "locksUsed(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  vv_quiet *q = quiet_made(s);
  if (q) {
    pthread_mutex_lock(&q->mu);
    q->locks_used = 1;
    pthread_mutex_unlock(&q->mu);
  } else {
    // No table, no marks: nothing is answered here. Throw so the lock is not granted unseen.
    return vv_fail_range(env, "out of memory");
  }
  return NULL;
}

// quietFlushes(handle) -> flushes answered here so far.
static napi_value js_quiet_flushes(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "quietFlushes(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  double n = 0;
  vv_quiet *q = s->quiet;
  if (q) {
    pthread_mutex_lock(&q->mu);
    n = q->answered;
    pthread_mutex_unlock(&q->mu);
  }
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

napi_value vv_init_quiet(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"quietFlush", NULL, js_quiet_flush, NULL, NULL, NULL, napi_default, NULL},
      {"unquiet", NULL, js_unquiet, NULL, NULL, NULL, napi_default, NULL},
      {"locksUsed", NULL, js_locks_used, NULL, NULL, NULL, napi_default, NULL},
      {"quietFlushes", NULL, js_quiet_flushes, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
