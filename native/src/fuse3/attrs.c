// Attributes of nodes that JavaScript vouches for, so a getattr of one is answered on libfuse's
// worker thread: no queue, no hop to the JavaScript thread and back. The kernel drops a
// directory's cached attributes after every create, unlink, rename in it and asks again at the
// next path walk (default_permissions checks the mode): one getattr per file in every small-file
// workload, half of an unlink's requests.
//
// JavaScript puts a node's attributes here (setAttr) only when they are current, and drops them
// (clearAttr, clearAttrs) synchronously before any change to the node is acknowledged (the
// namespace tells it when it learns a change, src/fuse/ll-attrs.ts). A getattr answered here
// meanwhile was concurrent with that change, so either answer is right. A node not in the
// table goes to JavaScript as before. The table is direct-mapped: a newer node may take an
// older one's slot (that one then goes to JavaScript again).
#define _GNU_SOURCE
#include "attrs.h"

#include <stdlib.h>
#include <string.h>

#include "../napi_util.h"

#define SLOT_BITS 12
#define NSLOTS (1u << SLOT_BITS)

typedef struct {
  uint64_t ino;  // 0: empty (node id 0 is never a node)
  struct stat st;
  double timeout;
} vv_attr_slot;

struct vv_attrs {
  pthread_mutex_t mu;
  vv_attr_slot slots[NSLOTS];
  double answered;  // getattrs answered here (stats)
};

static uint32_t slot_of(uint64_t ino) { return (uint32_t)((ino * 0x9E3779B97F4A7C15ull) >> (64 - SLOT_BITS)); }

static vv_attrs *attrs_of(vv_sess *s) {
  // Made on the JS thread (setAttr) before any entry exists; read by libfuse's threads after.
  return __atomic_load_n(&s->attrs, __ATOMIC_ACQUIRE);
}

int vv_attrs_answer(vv_sess *s, fuse_req_t req, uint64_t ino) {
  vv_attrs *a = attrs_of(s);
  if (!a || ino == 0) return 0;
  struct stat st;
  double timeout = 0;
  int hit = 0;
  pthread_mutex_lock(&a->mu);
  vv_attr_slot *e = &a->slots[slot_of(ino)];
  if (e->ino == ino) {
    st = e->st;
    timeout = e->timeout;
    hit = 1;
    a->answered++;
  }
  pthread_mutex_unlock(&a->mu);
  if (!hit) return 0;
  fuse_reply_attr(req, &st, timeout);
  return 1;
}

void vv_attrs_free(vv_sess *s) {
  vv_attrs *a = s->attrs;
  if (!a) return;
  pthread_mutex_destroy(&a->mu);
  free(a);
  s->attrs = NULL;
}

static int ino_arg(napi_env env, napi_value v, uint64_t *out) {
  bool lossless;
  return napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok && lossless && *out != 0;
}

// setAttr(handle, ino: bigint, f: Float64Array of A_COUNT attributes + the timeout) -> bool
static napi_value js_set_attr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "setAttr(handle, ino, f64)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino;
  if (!ino_arg(env, argv[1], &ino)) return vv_fail_type(env, "ino must be a non-zero bigint");
  size_t len;
  double *f = vv_typed(env, argv[2], napi_float64_array, "packed attributes must be a Float64Array", &len);
  if (!f) return NULL;
  if (len < A_COUNT + 1) return vv_fail_range(env, "packed attribute array too short");
  vv_attrs *a = s->attrs;
  napi_value ok;
  if (!a) {
    a = calloc(1, sizeof *a);
    if (!a) {
      napi_get_boolean(env, false, &ok);
      return ok;
    }
    pthread_mutex_init(&a->mu, NULL);
    __atomic_store_n(&s->attrs, a, __ATOMIC_RELEASE);
  }
  struct stat st;
  vv_unpack_attr(f, ino, &st);
  pthread_mutex_lock(&a->mu);
  vv_attr_slot *e = &a->slots[slot_of(ino)];
  e->ino = ino;
  e->st = st;
  e->timeout = f[A_COUNT];
  pthread_mutex_unlock(&a->mu);
  napi_get_boolean(env, true, &ok);
  return ok;
}

// clearAttr(handle, ino: bigint): getattrs of ino go to JavaScript from now on.
static napi_value js_clear_attr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "clearAttr(handle, ino)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino;
  if (!ino_arg(env, argv[1], &ino)) return vv_fail_type(env, "ino must be a non-zero bigint");
  vv_attrs *a = s->attrs;
  if (a) {
    pthread_mutex_lock(&a->mu);
    vv_attr_slot *e = &a->slots[slot_of(ino)];
    if (e->ino == ino) e->ino = 0;
    pthread_mutex_unlock(&a->mu);
  }
  return NULL;
}

// clearAttrs(handle): every getattr goes to JavaScript from now on.
static napi_value js_clear_attrs(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "clearAttrs(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  vv_attrs *a = s->attrs;
  if (a) {
    pthread_mutex_lock(&a->mu);
    for (uint32_t i = 0; i < NSLOTS; i++) a->slots[i].ino = 0;
    pthread_mutex_unlock(&a->mu);
  }
  return NULL;
}

// attrHits(handle) -> getattrs answered here so far.
static napi_value js_attr_hits(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "attrHits(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  double n = 0;
  vv_attrs *a = s->attrs;
  if (a) {
    pthread_mutex_lock(&a->mu);
    n = a->answered;
    pthread_mutex_unlock(&a->mu);
  }
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

napi_value vv_init_attrs(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setAttr", NULL, js_set_attr, NULL, NULL, NULL, napi_default, NULL},
      {"clearAttr", NULL, js_clear_attr, NULL, NULL, NULL, napi_default, NULL},
      {"clearAttrs", NULL, js_clear_attrs, NULL, NULL, NULL, napi_default, NULL},
      {"attrHits", NULL, js_attr_hits, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
