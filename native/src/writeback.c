// startWriteback(fd, offset, length, cb(err)): sync_file_range(SYNC_FILE_RANGE_WRITE) of a range
// of a file just written, on the libuv pool. It starts the disk writes of those dirty pages and
// returns without waiting for them, so a writer that ends with fsync (a restore: "done" means
// durable) no longer has every byte it wrote still waiting for the disk at that fsync: the disk
// writes ran beside the copy. It promises nothing about durability (no metadata, no disk cache
// flush): the caller's fsync still does that. On the pool, not the JavaScript thread, because
// the call may block while the device's request queue is full.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "napi_util.h"

typedef struct {
  napi_async_work work;
  napi_ref callback;
  int fd;
  int64_t offset;
  int64_t length;
  int err;  // errno of sync_file_range, 0 when it succeeded
} wb_job;

static void wb_execute(napi_env env, void *data) {
  (void)env;
  wb_job *j = data;
  j->err = sync_file_range(j->fd, (off64_t)j->offset, (off64_t)j->length, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : errno;
}

static void wb_complete(napi_env env, napi_status status, void *data) {
  wb_job *j = data;
  napi_value cb, undef, err;
  napi_get_reference_value(env, j->callback, &cb);
  napi_get_undefined(env, &undef);
  if (status != napi_ok || j->err != 0) {
    napi_value msg, code;
    napi_create_string_utf8(env, status != napi_ok ? "startWriteback was cancelled" : strerror(j->err), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_create_int32(env, status != napi_ok ? 0 : j->err, &code);
    napi_set_named_property(env, err, "errno", code);
  } else {
    napi_get_null(env, &err);
  }
  napi_delete_reference(env, j->callback);
  napi_delete_async_work(env, j->work);
  free(j);
  napi_call_function(env, undef, cb, 1, &err, NULL);
}

static napi_value start_writeback(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!vv_args(env, info, 4, argv, "startWriteback takes fd, offset, length and a callback")) return NULL;
  int32_t fd;
  int64_t offset, length;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) return vv_fail_type(env, "fd must be a number");
  if (napi_get_value_int64(env, argv[1], &offset) != napi_ok) return vv_fail_type(env, "offset must be a number");
  if (napi_get_value_int64(env, argv[2], &length) != napi_ok) return vv_fail_type(env, "length must be a number");
  if (fd < 0 || offset < 0 || length < 0) return vv_fail_range(env, "fd, offset and length must not be negative");
  napi_valuetype t;
  if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function) return vv_fail_type(env, "the last argument must be a callback");
  wb_job *j = calloc(1, sizeof *j);
  if (!j) return vv_fail_range(env, "out of memory");
  j->fd = fd;
  j->offset = offset;
  j->length = length;
  napi_value name;
  napi_create_string_utf8(env, "vmvault:startWriteback", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[3], 1, &j->callback) != napi_ok) {
    free(j);
    return vv_fail_range(env, "startWriteback: could not hold the callback");
  }
  if (napi_create_async_work(env, NULL, name, wb_execute, wb_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_reference(env, j->callback);
    free(j);
    return vv_fail_range(env, "startWriteback: could not queue the work");
  }
  return NULL;
}

napi_value vv_register_writeback(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "startWriteback", NAPI_AUTO_LENGTH, start_writeback, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "startWriteback", fn) != napi_ok) return NULL;
  return exports;
}
