// N-API entry of vmvault_fuse3.node: mount(), unmount() and the reply functions JavaScript calls
// with a request's id (src/fuse/ll/native.ts is the only caller). Replies call fuse_reply_*,
// which writes the answer to /dev/fuse and never waits on the mount.
#define _GNU_SOURCE
#include "session.h"
#include "attrs.h"
#include "datawin.h"
#include "holes.h"
#include "jsreader.h"
#include "names.h"
#include "quiet.h"
#include "ring.h"
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "../napi_util.h"

// ---- session lifetime --------------------------------------------------------------------------

void vv_sess_unref(napi_env env, vv_sess *s) {
  if (--s->refs > 0) return;
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->slot_cv);
  free(s->slots);
  free(s->gens);
  free(s->free_stack);
  free(s->mountpoint);
  vv_holes_free(s);
  vv_datawin_free(s);
  vv_attrs_free(s);
  vv_names_free(s);
  vv_quiet_free(s);
  free(s);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) { vv_sess_unref(env, hint); }
static void external_finalize(napi_env env, void *data, void *hint) { vv_sess_unref(env, data); }

// The session handle an exported function got as its first argument (replies.c uses it too);
// NULL with a TypeError pending when it is not one.
vv_sess *vv_sess_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    vv_fail_type(env, "session must be the handle mount() returned");
    return NULL;
  }
  return p;
}

// The FUSE connection number (/sys/fs/fuse/connections/N) is the minor device number of the
// mount, read from /proc/self/mountinfo: a stat() of the mount point would be a request to
// ourselves from the JS thread, which must answer it (deadlock).
static int connection_of(const char *mnt) {
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (!f) return -1;
  char line[8192];
  int found = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned maj, min;
    char point[4096], decoded[4096];
    if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, point) != 3) continue;
    // Octal escapes (\040 for a space) in the mount point.
    size_t j = 0;
    for (size_t i = 0; point[i] && j < sizeof decoded - 1; i++) {
      if (point[i] == '\\' && point[i + 1] && point[i + 2] && point[i + 3]) {
        decoded[j++] = (char)((point[i + 1] - '0') * 64 + (point[i + 2] - '0') * 8 + (point[i + 3] - '0'));
        i += 3;
      } else {
        decoded[j++] = point[i];
      }
    }
    decoded[j] = 0;
    const char *dash = strstr(line, " - ");
    if (strcmp(decoded, mnt) == 0 && dash && strncmp(dash + 3, "fuse", 4) == 0 && maj == 0) found = (int)min;
  }
  fclose(f);
  return found;
}

static void *loop_main(void *arg) {
  vv_sess *s = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, (unsigned)s->clone_fd);
  fuse_loop_cfg_set_max_threads(cfg, (unsigned)s->max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, (unsigned)s->max_threads);
  s->loop_result = fuse_session_loop_mt(s->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  return NULL;
}

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value m, code, e;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  char cbuf[32];
  snprintf(cbuf, sizeof cbuf, "errno %d", err);
  napi_create_string_utf8(env, err == ENOENT ? "ENOENT" : err == ENOTDIR ? "ENOTDIR" : err == EACCES ? "EACCES" : err == EPERM ? "EPERM" : err == EBUSY ? "EBUSY" : "EFUSE", NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, m, &e);
  napi_value en;
  napi_create_int32(env, err, &en);
  napi_set_named_property(env, e, "errno", en);
  napi_throw(env, e);
  return NULL;
}

// mount(mountpoint, args: string[], cfg: Int32Array [maxThreads, cloneFd, writeback, readdirplus,
//       atomicOTrunc, maxWrite, maxInFlight, readAheadKb?, writeRing?, jsReader?], onBatch) -> handle
static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!vv_args(env, info, 4, argv, "mount(mountpoint, args, cfg, onBatch)")) return NULL;
  char mnt_in[PATH_MAX];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], mnt_in, sizeof mnt_in, &len) != napi_ok) return vv_fail_type(env, "mountpoint must be a string");
  size_t ncfg;
  int32_t *cfg = vv_typed(env, argv[2], napi_int32_array, "cfg must be an Int32Array", &ncfg);
  if (!cfg) return NULL;
  if (ncfg < 7) return vv_fail_range(env, "cfg must have 7 entries");
  napi_valuetype ft;
  napi_typeof(env, argv[3], &ft);
  if (ft != napi_function) return vv_fail_type(env, "onBatch must be a function");
  if (cfg[6] < 1 || (uint32_t)cfg[6] > VV_MAX_SLOTS) return vv_fail_range(env, "maxInFlight must be 1..65536");
  if (cfg[0] < 1 || cfg[0] > 256) return vv_fail_range(env, "maxThreads must be 1..256");

  char real[PATH_MAX];
  if (!realpath(mnt_in, real)) return throw_errno(env, errno, "mount point");

  struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
  fuse_opt_add_arg(&fargs, "vmvault");
  uint32_t nargs = 0;
  napi_get_array_length(env, argv[1], &nargs);
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value a;
    char buf[1024];
    napi_get_element(env, argv[1], i, &a);
    if (napi_get_value_string_utf8(env, a, buf, sizeof buf, &len) != napi_ok) {
      fuse_opt_free_args(&fargs);
      return vv_fail_type(env, "args must be strings");
    }
    fuse_opt_add_arg(&fargs, buf);
  }

  vv_sess *s = calloc(1, sizeof *s);
  if (!s) {
    fuse_opt_free_args(&fargs);
    return throw_errno(env, ENOMEM, "mount");
  }
  s->max_threads = cfg[0];
  s->clone_fd = cfg[1];
  s->writeback = cfg[2];
  s->readdirplus = cfg[3];
  s->atomic_o_trunc = cfg[4];
  s->max_write = (uint32_t)cfg[5];
  s->nslots = (uint32_t)cfg[6];
  s->read_ahead_kb = ncfg > 7 && cfg[7] > 0 ? (uint32_t)cfg[7] : 0;
  s->write_ring = ncfg > 8 && cfg[8] != 0;
  s->js_reader = ncfg > 9 && cfg[9] != 0;
  s->connection = -1;
  s->refs = 1;  // the JS external; the tsfn takes the second once created
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->slot_cv, NULL);
  s->slots = calloc(s->nslots, sizeof *s->slots);
  s->gens = calloc(s->nslots, sizeof *s->gens);
  s->free_stack = calloc(s->nslots, sizeof *s->free_stack);
  s->mountpoint = strdup(real);
  if (!s->slots || !s->gens || !s->free_stack || !s->mountpoint) {
    fuse_opt_free_args(&fargs);
    vv_sess_unref(env, s);
    return throw_errno(env, ENOMEM, "mount");
  }
  for (uint32_t i = 0; i < s->nslots; i++) {
    s->gens[i] = 1;
    s->free_stack[i] = s->nslots - 1 - i;
  }
  s->nfree = s->nslots;

  s->se = fuse_session_new(&fargs, &vv_ll_ops, sizeof vv_ll_ops, s);
  fuse_opt_free_args(&fargs);
  if (!s->se) {
    vv_sess_unref(env, s);
    return throw_errno(env, EINVAL, "fuse_session_new (bad mount options?)");
  }
  errno = 0;
  if (fuse_session_mount(s->se, real) != 0) {
    int err = errno ? errno : EIO;
    fuse_session_destroy(s->se);
    vv_sess_unref(env, s);
    return throw_errno(env, err, "fuse_session_mount");
  }
  s->connection = connection_of(real);

  napi_value name;
  napi_create_string_utf8(env, "vmvault-fuse3", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[3], NULL, name, 0, 1, s, tsfn_finalize, s, vv_call_js, &s->tsfn) != napi_ok) {
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    vv_sess_unref(env, s);
    return throw_errno(env, EIO, "napi_create_threadsafe_function");
  }
  s->refs++;
  // Requests are read by the JS thread itself (jsreader.c) or by libfuse's loop on its threads.
  // (pthread_create returns its error; it does not set errno.)
  int err = s->js_reader ? vv_jsreader_start(env, s, argv[3]) : pthread_create(&s->loop, NULL, loop_main, s);
  if (err != 0) {
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    s->destroyed = 1;
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    vv_sess_unref(env, s);
    return throw_errno(env, err, s->js_reader ? "uv_poll_init" : "pthread_create");
  }
  if (!s->js_reader) s->loop_started = 1;
  napi_value ext;
  napi_create_external(env, s, external_finalize, NULL, &ext);
  return ext;
}

// The loop is told to exit, the mount is detached (lazily, so it never waits), and the
// connection aborted, so files still open elsewhere cannot keep the worker threads reading.
// Never waits: safe on the JS thread (detach(), at process exit) as on the pool (unmount).
static void detach_mount(vv_sess *s) {
  pthread_mutex_lock(&s->mu);
  s->closing = 1;
  pthread_cond_broadcast(&s->slot_cv);
  pthread_mutex_unlock(&s->mu);
  fuse_session_exit(s->se);
  fuse_session_unmount(s->se);
  umount2(s->mountpoint, MNT_DETACH);  // when libfuse left it (connection already dead); EINVAL otherwise
  if (s->connection >= 0) {
    char path[64];
    snprintf(path, sizeof path, "/sys/fs/fuse/connections/%d/abort", s->connection);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t w = write(fd, "1", 1);
      (void)w;
      close(fd);
    }
  }
}

// Unmount, off the JS thread: detach, then join the worker threads.
static void unmount_execute(napi_env env, void *data) {
  vv_sess *s = data;
  detach_mount(s);
  vv_notify_stop(s);
  if (s->loop_started) pthread_join(s->loop, NULL);
  s->loop_started = 0;
}

static void unmount_complete(napi_env env, napi_status status, void *data) {
  vv_sess *s = data;
  // Everything still outstanding gets ENOTCONN (the write to the dead fd fails harmlessly).
  // A record is in a slot until answered and in the queue until handed to JS: free each once.
  pthread_mutex_lock(&s->mu);
  vv_req *list = s->head;
  s->head = s->tail = NULL;
  for (uint32_t i = 0; i < s->nslots; i++) {
    vv_req *r = s->slots[i];
    if (!r) continue;
    s->slots[i] = NULL;
    s->gens[i]++;
    fuse_reply_err(r->req, ENOTCONN);
    if (!r->queued) vv_req_free(r);
  }
  s->destroyed = 1;
  pthread_mutex_unlock(&s->mu);
  for (vv_req *r = list, *next; r; r = next) {
    next = r->next;
    vv_req_free(r);
  }
  fuse_session_destroy(s->se);
  s->se = NULL;
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
  napi_delete_async_work(env, s->unmount_work);
  s->unmount_work = NULL;
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_resolve_deferred(env, s->unmount_deferred, undef);
  s->unmount_deferred = NULL;
}

// unmount(handle) -> Promise<void>; a second call resolves at once.
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "unmount(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  napi_value promise;
  napi_deferred d;
  napi_create_promise(env, &d, &promise);
  if (s->destroyed || s->unmount_work) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, d, undef);
    return promise;
  }
  s->unmount_deferred = d;
  vv_jsreader_stop(s);
  napi_value name;
  napi_create_string_utf8(env, "vmvault-fuse3-unmount", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, unmount_execute, unmount_complete, s, &s->unmount_work);
  napi_queue_async_work(env, s->unmount_work);
  return promise;
}

// detach(handle): the mount goes away now, without waiting for anything (process exit: a
// process that ends without unmount() must not leave a dead mount behind). unmount() still
// joins and frees afterwards.
static napi_value js_detach(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "detach(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  vv_jsreader_stop(s);
  if (!s->destroyed) detach_mount(s);
  return NULL;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "stats(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, s->batches, &v);
  napi_set_named_property(env, o, "batches", v);
  napi_create_double(env, s->requests, &v);
  napi_set_named_property(env, o, "requests", v);
  napi_create_double(env, s->max_batch, &v);
  napi_set_named_property(env, o, "maxBatch", v);
  napi_create_int32(env, s->connection, &v);
  napi_set_named_property(env, o, "connection", v);
  napi_create_double(env, s->js_reads, &v);
  napi_set_named_property(env, o, "jsReads", v);
  return o;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
      {"detach", NULL, js_detach, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  vv_init_notify(env, exports);
  vv_init_holes(env, exports);
  vv_init_datawin(env, exports);
  vv_init_attrs(env, exports);
  vv_init_names(env, exports);
  vv_init_quiet(env, exports);
  vv_init_ring(env, exports);
  return vv_init_replies(env, exports);
}
