// See read_seam.h. The table is read by libuv pool threads and replaced from the JavaScript
// thread; with no fault set (always, outside tests) a pread costs one relaxed atomic load more.
#define _GNU_SOURCE
#include "read_seam.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "napi_util.h"

#define MAX_FAULTS 64

static int active;  // atomic: number of entries in the table
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fault_fd[MAX_FAULTS];
static int fault_kind[MAX_FAULTS];

static int fault_of(int fd) {
  if (__atomic_load_n(&active, __ATOMIC_RELAXED) == 0) return VV_FAULT_NONE;
  int kind = VV_FAULT_NONE;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < active; i++) {
    if (fault_fd[i] == fd) kind = fault_kind[i];
  }
  pthread_mutex_unlock(&lock);
  return kind;
}

ssize_t vv_pread(int fd, void *buf, size_t n, off_t off) {
  switch (fault_of(fd)) {
    case VV_FAULT_EIO:
      errno = EIO;
      return -1;
    case VV_FAULT_EOF:
      return 0;
    case VV_FAULT_SHORT:
      if (n > 1) n /= 2;
      break;
    default:
      break;
  }
  return pread(fd, buf, n, off);
}

static napi_value set_read_faults(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "setReadFaults takes 2 arguments")) return NULL;
  size_t nf, nk;
  const int32_t *fds = vv_typed(env, argv[0], napi_int32_array, "fds must be an Int32Array", &nf);
  if (!fds) return NULL;
  const int32_t *kinds = vv_typed(env, argv[1], napi_int32_array, "kinds must be an Int32Array", &nk);
  if (!kinds) return NULL;
  if (nf != nk || nf > MAX_FAULTS) return vv_fail_range(env, "fds and kinds must have the same length, at most 64");
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < nf; i++) {
    fault_fd[i] = fds[i];
    fault_kind[i] = kinds[i];
  }
  __atomic_store_n(&active, (int)nf, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&lock);
  return NULL;
}

napi_value vv_register_read_seam(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "setReadFaults", NAPI_AUTO_LENGTH, set_read_faults, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "setReadFaults", fn) != napi_ok) return NULL;
  return exports;
}
