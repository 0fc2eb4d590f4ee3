// N-API entry point: exports cut(gear, params, state, buf, out), the same function as cutTs
// in src/store/segmenter/segmenter.ts, and the codec functions of codec_napi.c. Every argument is
// checked here, so a wrong call from JavaScript throws a TypeError or RangeError instead of
// reading or writing out of bounds in cut.c.

#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cut.h"
#include "napi_util.h"

// An entry of the cut list keeps the end offset in 31 bits beside the zero flag, so one call
// takes less than 2 GiB.
#define MAX_BUF 0x7fffffffu
#define MAX_CHUNK (1u << 30)

typedef struct {
  const uint32_t *gear;
  vv_params p;
  uint32_t *state;
  const uint8_t *buf;
  size_t buf_len;
  uint32_t *out;
} cut_args;

// Checks the five arguments of cut() and cutAsync(); 0 with an exception pending if wrong.
static int check_cut(napi_env env, napi_value *argv, cut_args *a) {
  size_t gear_len, params_len, state_len, out_len;
  a->gear = vv_typed(env, argv[0], napi_uint32_array, "gear must be a Uint32Array", &gear_len);
  if (!a->gear) return 0;
  const int32_t *pa = vv_typed(env, argv[1], napi_int32_array, "params must be an Int32Array", &params_len);
  if (!pa) return 0;
  a->state = vv_typed(env, argv[2], napi_uint32_array, "state must be a Uint32Array", &state_len);
  if (!a->state) return 0;
  a->buf = vv_typed(env, argv[3], napi_uint8_array, "buf must be a Uint8Array", &a->buf_len);
  if (!a->buf) return 0;
  a->out = vv_typed(env, argv[4], napi_uint32_array, "out must be a Uint32Array", &out_len);
  if (!a->out) return 0;

  if (gear_len != 256) return !!vv_fail_range(env, "gear must have 256 entries");
  if (params_len != 6) return !!vv_fail_range(env, "params must have 6 entries (packParams)");
  if (state_len != 3) return !!vv_fail_range(env, "state must have 3 entries");

  a->p = (vv_params){(uint32_t)pa[0], (uint32_t)pa[1], (uint32_t)pa[2], (uint32_t)pa[3], (uint32_t)pa[4], pa[5]};
  if (pa[0] < 1 || pa[1] <= pa[0] || pa[2] <= pa[1] || (uint32_t)pa[2] > MAX_CHUNK) {
    return !!vv_fail_range(env, "params need 0 < min < avg < max <= 2^30");
  }
  if (pa[5] != 0 && pa[5] != 1) return !!vv_fail_range(env, "params[5] (zeroFast) must be 0 or 1");
  if (a->state[0] >= a->p.max_size) return !!vv_fail_range(env, "state[0] (bytes in the open chunk) must be below max");
  if (a->state[2] > 1) return !!vv_fail_range(env, "state[2] (all zero so far) must be 0 or 1");
  if (a->buf_len > MAX_BUF) return !!vv_fail_range(env, "buf must be shorter than 2^31 bytes");

  // One entry per chunk of at least min + 1 bytes, plus the chunk left open by the last call.
  size_t need = (a->buf_len + a->p.min_size) / ((size_t)a->p.min_size + 1) + 2;
  if (out_len < need) {
    char msg[128];
    snprintf(msg, sizeof msg, "out has %zu entries; %zu bytes need ceil(len / (min + 1)) + 2 = %zu", out_len,
             a->buf_len, need);
    return !!vv_fail_range(env, msg);
  }
  return 1;
}

static napi_value cut(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!vv_args(env, info, 5, argv, "cut(gear, params, state, buf, out) takes 5 arguments")) return NULL;
  cut_args a;
  if (!check_cut(env, argv, &a)) return NULL;
  size_t count = a.buf_len ? vv_cut(a.gear, &a.p, a.state, a.buf, a.buf_len, a.out) : 0;
  napi_value result;
  if (napi_create_uint32(env, (uint32_t)count, &result) != napi_ok) return NULL;
  return result;
}

// cutAsync(gear, params, state, buf, out, cb(err, count)): cut() on the libuv pool, so a
// stream is cut while the main thread works on what was cut before. Nothing may touch state,
// buf or out until cb runs.
typedef struct {
  napi_async_work work;
  napi_ref refs[5];
  napi_ref cb;
  cut_args a;
  size_t count;
} cut_job;

static void cut_execute(napi_env env, void *data) {
  (void)env;
  cut_job *j = data;
  j->count = j->a.buf_len ? vv_cut(j->a.gear, &j->a.p, j->a.state, j->a.buf, j->a.buf_len, j->a.out) : 0;
}

static void cut_complete(napi_env env, napi_status status, void *data) {
  cut_job *j = data;
  napi_value cb, undef, argv[2];
  napi_get_reference_value(env, j->cb, &cb);
  napi_get_undefined(env, &undef);
  if (status != napi_ok) {
    napi_value msg;
    napi_create_string_utf8(env, "the cut was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &argv[0]);
    argv[1] = undef;
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_uint32(env, (uint32_t)j->count, &argv[1]);
  }
  for (int i = 0; i < 5; i++) napi_delete_reference(env, j->refs[i]);
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  free(j);
  napi_call_function(env, undef, cb, 2, argv, NULL);
}

static napi_value cut_async(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!vv_args(env, info, 6, argv, "cutAsync(gear, params, state, buf, out, cb) takes 6 arguments")) return NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[5], &t) != napi_ok || t != napi_function) return vv_fail_type(env, "cb must be a function");
  cut_job *j = calloc(1, sizeof *j);
  if (!j) return vv_fail_range(env, "out of memory");
  if (!check_cut(env, argv, &j->a)) {
    free(j);
    return NULL;
  }
  for (int i = 0; i < 5; i++) napi_create_reference(env, argv[i], 1, &j->refs[i]);
  napi_create_reference(env, argv[5], 1, &j->cb);
  napi_value name;
  napi_create_string_utf8(env, "vmvault.cut", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, cut_execute, cut_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    return vv_fail_range(env, "could not queue the cut");
  }
  return NULL;
}

// mallocStats(): { arena, inUse, mmapped } in bytes (glibc; zeros elsewhere): how much of the
// process's native memory malloc holds, for the memory figures of the benches.
static napi_value malloc_stats_js(napi_env env, napi_callback_info info) {
  (void)info;
  double arena = 0, in_use = 0, mmapped = 0;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  arena = (double)mi.arena;
  in_use = (double)mi.uordblks + (double)mi.hblkhd;
  mmapped = (double)mi.hblkhd;
#endif
  napi_value o, v;
  if (napi_create_object(env, &o) != napi_ok) return NULL;
  napi_create_double(env, arena, &v);
  napi_set_named_property(env, o, "arena", v);
  napi_create_double(env, in_use, &v);
  napi_set_named_property(env, o, "inUse", v);
  napi_create_double(env, mmapped, &v);
  napi_set_named_property(env, o, "mmapped", v);
  return o;
}

// mallocTrim(): gives free pages inside malloc's heaps back to the system (glibc
// malloc_trim). Freed medium blocks otherwise stay resident between live ones.
static napi_value malloc_trim_js(napi_env env, napi_callback_info info) {
  (void)info;
  int freed = 0;
#if defined(__GLIBC__)
  freed = malloc_trim(0);
#endif
  napi_value r;
  napi_get_boolean(env, freed != 0, &r);
  return r;
}

// mallocTune(mmapThreshold): fixes glibc's mmap threshold (and with it the trim threshold),
// which glibc otherwise adapts to the largest block freed so far (see tuneMalloc in
// src/store/native.ts for the measurements).
static napi_value malloc_tune_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t threshold = 128 * 1024;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc > 0 && napi_get_value_uint32(env, argv[0], &threshold) != napi_ok) return vv_fail_type(env, "mmapThreshold must be a number");
  int ok = 0;
#if defined(__GLIBC__)
  ok = mallopt(M_MMAP_THRESHOLD, (int)threshold);
#endif
  napi_value r;
  napi_get_boolean(env, ok != 0, &r);
  return r;
}

napi_value vv_register_codec(napi_env env, napi_value exports);
napi_value vv_register_read_seam(napi_env env, napi_value exports);
napi_value vv_register_writeback(napi_env env, napi_value exports);
napi_value vv_register_file_writer(napi_env env, napi_value exports);

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "cut", NAPI_AUTO_LENGTH, cut, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "cut", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "cutAsync", NAPI_AUTO_LENGTH, cut_async, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "cutAsync", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "mallocStats", NAPI_AUTO_LENGTH, malloc_stats_js, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mallocStats", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "mallocTrim", NAPI_AUTO_LENGTH, malloc_trim_js, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mallocTrim", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "mallocTune", NAPI_AUTO_LENGTH, malloc_tune_js, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mallocTune", fn) != napi_ok) return NULL;
  if (!vv_register_read_seam(env, exports)) return NULL;
  if (!vv_register_writeback(env, exports)) return NULL;
  if (!vv_register_file_writer(env, exports)) return NULL;
  return vv_register_codec(env, exports);
}
