// Decoded data of open files, so sequential reads of it are answered on libfuse's worker
// threads: no queue, no hop to the JavaScript thread, the copies into the kernel spread over
// libfuse's threads instead of done one after another on the JavaScript thread.
//
// The bytes are the store's read-ahead windows (src/store/tree/read-ahead.ts): buffers that
// JavaScript owns, verified against their fingerprints, never written while registered here.
// JavaScript registers a window for an open (ino, fh) once it is ready (setDataWindow), and
// takes it back (dropDataWindow) before the buffer can be reused or let go; it drops every
// window of an open (clearDataWindows) before anything that changes the file's bytes is
// answered, and at release, before the fh can be reused. A take-back waits until no libfuse
// thread is copying out of the buffer (a reply in progress: one writev into /dev/fuse, which
// never waits on JavaScript), so the buffer is JavaScript's alone when the call returns.
//
// A read is answered here only when a later window of the same open is registered too, or when
// a read in the same window went to JavaScript already: the first read in the last window goes
// to JavaScript, whose read-ahead then follows the reader and reads further windows (it sees
// only the reads that reach it); the kernel's other reads in flight in that window (its
// read-ahead sends 4 MiB at once) are answered here instead of queueing behind it; a read
// across two adjacent windows counts as one in the second. A read in none goes to JavaScript.
#define _GNU_SOURCE
#include "datawin.h"

#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "../napi_util.h"

// Entries at most (windows x opens reading them): the read-ahead holds 16 windows at most.
#define MAX_WINS 128
// Bytes registered at most (an entry per open counts its whole window): registrations beyond
// this are refused and those reads go to JavaScript.
#define DEFAULT_CAP (128u << 20)

typedef struct {
  uint64_t ino, fh, start, end;
  const char *ptr;  // bytes [start, end) of the file; JavaScript's memory
  int refs;         // replies copying out of it now
  int passed;       // a read in it went to JavaScript while it was the last window
} vv_win;

struct vv_datawin {
  pthread_mutex_t mu;
  pthread_cond_t idle;  // a reply finished copying (refs went down)
  vv_win *wins[MAX_WINS];
  size_t n;
  uint64_t bytes, cap, peak;
  double answered;  // reads answered here (stats)
};

static vv_datawin *dw_of(vv_sess *s) { return __atomic_load_n(&s->datawin, __ATOMIC_ACQUIRE); }

// Whether a read whose last byte lies in w may be answered here: a later window of the open is
// registered, or a read in w went to JavaScript already (marked now if not: this one goes).
static int may_answer(vv_datawin *d, vv_win *w) {
  for (size_t j = 0; j < d->n; j++) {
    vv_win *x = d->wins[j];
    if (x->ino == w->ino && x->fh == w->fh && x->start >= w->end) return 1;
  }
  // In the last window: the first read goes to JavaScript, whose read-ahead follows the reader.
  if (w->passed) return 1;
  w->passed = 1;
  return 0;
}

static vv_win *window_at(vv_datawin *d, uint64_t ino, uint64_t fh, uint64_t a) {
  for (size_t i = 0; i < d->n; i++) {
    vv_win *w = d->wins[i];
    if (w->ino == ino && w->fh == fh && w->start <= a && w->end > a) return w;
  }
  return NULL;
}

int vv_datawin_answer(vv_sess *s, fuse_req_t req, uint64_t ino, uint64_t fh, int64_t off, size_t size) {
  vv_datawin *d = dw_of(s);
  if (!d || size == 0 || off < 0) return 0;
  uint64_t a = (uint64_t)off, b = a + size;
  vv_win *hit = NULL, *next = NULL;
  pthread_mutex_lock(&d->mu);
  hit = window_at(d, ino, fh, a);
  // A read across the end of its window into the next one (registered, adjacent): both parts
  // from here. The store's windows follow the reader from where its read-ahead began; a `.files/`
  // file's next extent continues the image's windows 4 KiB-aligned, not on the kernel's 1 MiB
  // requests, and every fourth request then spanned two windows and went to JavaScript.
  if (hit && hit->end < b) {
    next = window_at(d, ino, fh, hit->end);
    if (!next || next->end < b) hit = next = NULL;
  }
  if (hit && !may_answer(d, next ? next : hit)) hit = next = NULL;
  if (hit) {
    hit->refs++;
    if (next) next->refs++;
    d->answered++;
  }
  pthread_mutex_unlock(&d->mu);
  if (!hit) return 0;
  if (next) {
    size_t n1 = (size_t)(hit->end - a);
    struct iovec iov[2] = {{(void *)(hit->ptr + (a - hit->start)), n1}, {(void *)next->ptr, size - n1}};
    fuse_reply_iov(req, iov, 2);
  } else {
    fuse_reply_buf(req, hit->ptr + (a - hit->start), size);
  }
  pthread_mutex_lock(&d->mu);
  hit->refs--;
  if (next) next->refs--;
  if (hit->refs == 0 || (next && next->refs == 0)) pthread_cond_broadcast(&d->idle);
  pthread_mutex_unlock(&d->mu);
  return 1;
}

// Removes entry i (under mu) and waits until no reply copies out of it; frees it.
static void remove_at(vv_datawin *d, size_t i) {
  vv_win *w = d->wins[i];
  d->wins[i] = d->wins[--d->n];
  d->bytes -= w->end - w->start;
  while (w->refs > 0) pthread_cond_wait(&d->idle, &d->mu);
  free(w);
}

void vv_datawin_free(vv_sess *s) {
  vv_datawin *d = s->datawin;
  if (!d) return;
  for (size_t i = 0; i < d->n; i++) free(d->wins[i]);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->idle);
  free(d);
  s->datawin = NULL;
}

static int u64_arg(napi_env env, napi_value v, uint64_t *out) {
  double x;
  if (napi_get_value_double(env, v, &x) != napi_ok || !(x >= 0) || x > 9007199254740991.0) return 0;
  *out = (uint64_t)x;
  return 1;
}

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static vv_datawin *ensure(vv_sess *s) {
  vv_datawin *d = s->datawin;
  if (d) return d;
  d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->cap = DEFAULT_CAP;
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->idle, NULL);
  __atomic_store_n(&s->datawin, d, __ATOMIC_RELEASE);
  return d;
}

// setDataWindow(handle, ino, fh, start, buf) -> bool: bytes [start, start + buf.length) of the
// open read as buf from now on, until dropped. False: not taken (table or cap full).
static napi_value js_set(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!vv_args(env, info, 5, argv, "setDataWindow(handle, ino, fh, start, buf)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino, fh, start;
  if (!u64_arg(env, argv[1], &ino) || !u64_arg(env, argv[2], &fh) || !u64_arg(env, argv[3], &start)) return vv_fail_type(env, "ino, fh and start must be numbers");
  void *data;
  size_t len;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[4], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) return vv_fail_type(env, "buf must be a Buffer");
  napi_value no;
  napi_get_boolean(env, 0, &no);
  if (len == 0) return no;
  vv_datawin *d = ensure(s);
  if (!d) return no;
  vv_win *w = malloc(sizeof *w);
  if (!w) return no;
  *w = (vv_win){ino, fh, start, start + len, data, 0, 0};
  pthread_mutex_lock(&d->mu);
  int ok = d->n < MAX_WINS && d->bytes + len <= d->cap;
  if (ok) {
    d->wins[d->n++] = w;
    d->bytes += len;
    if (d->bytes > d->peak) d->peak = d->bytes;
  }
  pthread_mutex_unlock(&d->mu);
  if (!ok) free(w);
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

// dropDataWindow(handle, buf): every entry whose bytes lie in buf's memory is gone when this
// returns, and no reply copies out of it any more.
static napi_value js_drop(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "dropDataWindow(handle, buf)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  void *data;
  size_t len;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) return vv_fail_type(env, "buf must be a Buffer");
  vv_datawin *d = s->datawin;
  if (!d) return NULL;
  const char *lo = data, *hi = lo + len;
  pthread_mutex_lock(&d->mu);
  for (size_t i = 0; i < d->n;) {
    vv_win *w = d->wins[i];
    if (w->ptr < hi && w->ptr + (w->end - w->start) > lo) remove_at(d, i);
    else i++;
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

// clearDataWindows(handle, ino, fh): every read of that open goes to JavaScript from now on.
static napi_value js_clear(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "clearDataWindows(handle, ino, fh)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino, fh;
  if (!u64_arg(env, argv[1], &ino) || !u64_arg(env, argv[2], &fh)) return vv_fail_type(env, "ino and fh must be numbers");
  vv_datawin *d = s->datawin;
  if (!d) return NULL;
  pthread_mutex_lock(&d->mu);
  for (size_t i = 0; i < d->n;) {
    if (d->wins[i]->ino == ino && d->wins[i]->fh == fh) remove_at(d, i);
    else i++;
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

// dataWindowStats(handle) -> { answered, bytes, peak, cap, windows }; setDataWindowCap(handle, bytes).
static napi_value js_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "dataWindowStats(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  double answered = 0, bytes = 0, peak = 0, cap = DEFAULT_CAP, n = 0;
  vv_datawin *d = s->datawin;
  if (d) {
    pthread_mutex_lock(&d->mu);
    answered = d->answered;
    bytes = (double)d->bytes;
    peak = (double)d->peak;
    cap = (double)d->cap;
    n = (double)d->n;
    pthread_mutex_unlock(&d->mu);
  }
  napi_value o;
  napi_create_object(env, &o);
  napi_set_named_property(env, o, "answered", num(env, answered));
  napi_set_named_property(env, o, "bytes", num(env, bytes));
  napi_set_named_property(env, o, "peak", num(env, peak));
  napi_set_named_property(env, o, "cap", num(env, cap));
  napi_set_named_property(env, o, "windows", num(env, n));
  return o;
}

static napi_value js_cap(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "setDataWindowCap(handle, bytes)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t cap;
  if (!u64_arg(env, argv[1], &cap)) return vv_fail_type(env, "bytes must be a number");
  vv_datawin *d = ensure(s);
  if (!d) return NULL;
  pthread_mutex_lock(&d->mu);
  d->cap = cap;
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

napi_value vv_init_datawin(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setDataWindow", NULL, js_set, NULL, NULL, NULL, napi_default, NULL},
      {"dropDataWindow", NULL, js_drop, NULL, NULL, NULL, napi_default, NULL},
      {"clearDataWindows", NULL, js_clear, NULL, NULL, NULL, napi_default, NULL},
      {"dataWindowStats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"setDataWindowCap", NULL, js_cap, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
