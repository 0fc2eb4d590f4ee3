// Zero runs of open files, so reads inside them are answered on libfuse's worker thread: no
// queue, no hop to the JavaScript thread, the copy into the kernel from one shared zero buffer
// and spread over libfuse's threads. A recovered VM's disk is mostly holes.
//
// JavaScript registers the runs of one open (ino, fh) (setHoles) once it has them from the
// file's segment tree, and drops them (clearHoles) before anything changes the file's bytes
// (a write, a truncation, a revert) is answered, and at release, before the fh can be reused.
// A read answered here meanwhile was concurrent with that change, so either content is right.
// A read not wholly inside one run goes to JavaScript as before.
#define _GNU_SOURCE
#include "holes.h"

#include <stdlib.h>
#include <string.h>

#include "../napi_util.h"

#define MAX_FILES 64

static napi_value vv_bool(napi_env env, int v) {
  napi_value b;
  napi_get_boolean(env, v != 0, &b);
  return b;
}

typedef struct {
  uint64_t ino, fh;
  uint64_t *runs;  // (start, end) pairs, sorted, not overlapping
  size_t nruns;
} vv_hole_file;

struct vv_holes {
  pthread_mutex_t mu;
  vv_hole_file files[MAX_FILES];
  size_t nfiles;
  char *zeros;  // max_write bytes of zeros, never written
  size_t zeros_len;
  double answered;  // reads answered here (stats)
};

static vv_holes *holes_of(vv_sess *s) {
  // Made on the JS thread (setHoles) before any run exists; read by libfuse's threads after.
  return __atomic_load_n(&s->holes, __ATOMIC_ACQUIRE);
}

int vv_holes_answer(vv_sess *s, fuse_req_t req, uint64_t ino, uint64_t fh, int64_t off, size_t size) {
  vv_holes *h = holes_of(s);
  if (!h || size == 0 || off < 0 || size > h->zeros_len) return 0;
  uint64_t a = (uint64_t)off, b = a + size;
  int hit = 0;
  pthread_mutex_lock(&h->mu);
  for (size_t i = 0; i < h->nfiles; i++) {
    vv_hole_file *f = &h->files[i];
    if (f->ino != ino || f->fh != fh) continue;
    // The last run starting at or before a.
    size_t lo = 0, hi = f->nruns;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (f->runs[2 * mid] <= a) lo = mid + 1;
      else hi = mid;
    }
    hit = lo > 0 && f->runs[2 * (lo - 1) + 1] >= b;
    break;
  }
  if (hit) h->answered++;
  pthread_mutex_unlock(&h->mu);
  if (!hit) return 0;
  fuse_reply_buf(req, h->zeros, size);
  return 1;
}

static void drop(vv_holes *h, uint64_t ino, uint64_t fh) {
  for (size_t i = 0; i < h->nfiles; i++) {
    if (h->files[i].ino != ino || h->files[i].fh != fh) continue;
    free(h->files[i].runs);
    h->files[i] = h->files[--h->nfiles];
    return;
  }
}

void vv_holes_free(vv_sess *s) {
  vv_holes *h = s->holes;
  if (!h) return;
  for (size_t i = 0; i < h->nfiles; i++) free(h->files[i].runs);
  pthread_mutex_destroy(&h->mu);
  free(h->zeros);
  free(h);
  s->holes = NULL;
}

static int u64_arg(napi_env env, napi_value v, uint64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 9007199254740991.0) return 0;
  *out = (uint64_t)d;
  return 1;
}

// setHoles(handle, ino, fh, runs: Float64Array of (start, end) pairs, sorted) -> bool (false:
// the table is full; reads then all go to JavaScript).
static napi_value js_set_holes(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!vv_args(env, info, 4, argv, "setHoles(handle, ino, fh, runs)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino, fh;
  if (!u64_arg(env, argv[1], &ino) || !u64_arg(env, argv[2], &fh)) return vv_fail_type(env, "ino and fh must be numbers");
  napi_typedarray_type type;
  size_t len;
  void *data;
  if (napi_get_typedarray_info(env, argv[3], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_float64_array || len % 2)
    return vv_fail_type(env, "runs must be a Float64Array of (start, end) pairs");
  const double *d = data;
  for (size_t i = 0; i < len; i++) {
    if (!(d[i] >= 0) || d[i] > 9007199254740991.0 || (i > 0 && d[i] < d[i - 1]))
      return vv_fail_type(env, "runs must be sorted, non-negative (start, end) pairs");
  }
  vv_holes *h = s->holes;
  if (!h) {
    h = calloc(1, sizeof *h);
    if (!h) return vv_bool(env, 0);
    h->zeros_len = s->max_write;
    h->zeros = malloc(h->zeros_len);
    if (!h->zeros) {
      free(h);
      return vv_bool(env, 0);
    }
    // Written, not calloc'ed: fresh anonymous memory that is only read maps the kernel's shared
    // zero page, which get_user_pages' fast path refuses, so every reply from it took the slow
    // path under the mmap lock, page by page (12% of the mount's CPU in a recovery read).
    // explicit_bzero, as the compiler may fold malloc + memset back into calloc.
    explicit_bzero(h->zeros, h->zeros_len);
    pthread_mutex_init(&h->mu, NULL);
    __atomic_store_n(&s->holes, h, __ATOMIC_RELEASE);
  }
  uint64_t *runs = len ? malloc(len * sizeof *runs) : NULL;
  if (len && !runs) return vv_bool(env, 0);
  for (size_t i = 0; i < len; i++) runs[i] = (uint64_t)d[i];
  pthread_mutex_lock(&h->mu);
  drop(h, ino, fh);
  int ok = h->nfiles < MAX_FILES;
  if (ok) h->files[h->nfiles++] = (vv_hole_file){ino, fh, runs, len / 2};
  pthread_mutex_unlock(&h->mu);
  if (!ok) free(runs);
  return vv_bool(env, ok);
}

// clearHoles(handle, ino, fh): every read of that open goes to JavaScript from now on.
static napi_value js_clear_holes(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "clearHoles(handle, ino, fh)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino, fh;
  if (!u64_arg(env, argv[1], &ino) || !u64_arg(env, argv[2], &fh)) return vv_fail_type(env, "ino and fh must be numbers");
  vv_holes *h = s->holes;
  if (h) {
    pthread_mutex_lock(&h->mu);
    drop(h, ino, fh);
    pthread_mutex_unlock(&h->mu);
  }
  return NULL;
}

// holeReads(handle) -> reads answered here so far.
static napi_value js_hole_reads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "holeReads(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  double n = 0;
  vv_holes *h = s->holes;
  if (h) {
    pthread_mutex_lock(&h->mu);
    n = h->answered;
    pthread_mutex_unlock(&h->mu);
  }
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

napi_value vv_init_holes(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setHoles", NULL, js_set_holes, NULL, NULL, NULL, napi_default, NULL},
      {"clearHoles", NULL, js_clear_holes, NULL, NULL, NULL, napi_default, NULL},
      {"holeReads", NULL, js_hole_reads, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
