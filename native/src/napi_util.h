// Argument checks shared by the N-API entry points: a wrong call from JavaScript throws a
// TypeError or RangeError instead of touching memory it was not given.
#ifndef VMVAULT_NAPI_UTIL_H
#define VMVAULT_NAPI_UTIL_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

static inline void *vv_fail_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static inline void *vv_fail_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

// The data of a typed array of the wanted type (a Buffer is a Uint8Array), or NULL with a
// TypeError pending. A zero-length array may have no storage: a non-NULL dummy is returned,
// never dereferenced.
static inline void *vv_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *what, size_t *len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return vv_fail_type(env, what);
  napi_typedarray_type type;
  void *data = NULL;
  if (napi_get_typedarray_info(env, v, &type, len, &data, NULL, NULL) != napi_ok || type != want) {
    return vv_fail_type(env, what);
  }
  static uint64_t empty;
  return data ? data : &empty;
}

// Fills argv with the first `want` arguments; NULL with a TypeError naming the usage pending
// if fewer were passed, so no entry point reads an argv slot N-API left unset.
static inline napi_value vv_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
                                 const char *usage) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < want) return vv_fail_type(env, usage);
  napi_value ok;
  napi_get_boolean(env, true, &ok);
  return ok;
}

#endif
