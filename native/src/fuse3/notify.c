// Dentry invalidation for names the kernel did not make (issue 10): the mount lets the kernel
// keep negative entries ("no such name", src/fuse/ll-filesystem.ts), and when the control plane
// (a restore, a fastcopy, ...) makes such a name, JavaScript calls invalidateEntry().
//
// The kernel's FUSE_NOTIFY_INVAL_ENTRY takes the directory's inode lock. A request in that
// directory (a create, a rename) holds it while it waits for JavaScript to answer, so the
// notification must never be written from the JS thread (deadlock on our own mount) nor from
// the libuv pool (four blocked notifications would starve the LevelDB writes that request
// waits for). It runs on a thread of its own, which writes to its own dup() of the session's
// /dev/fuse descriptor: stopping it never races with libfuse closing (and the process reusing)
// the session's descriptor at unmount. Wire format: <linux/fuse.h>, fuse_out_header with
// error = FUSE_NOTIFY_INVAL_ENTRY and unique 0, then fuse_notify_inval_entry_out, the name
// and a NUL (the kernel's fuse_notify_inval_entry reads exactly that).
#define _GNU_SOURCE
#include "notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../napi_util.h"

// The kernel's wire structures, as <linux/fuse.h> lays them out (not included: it clashes with
// libfuse's headers). Stable ABI since protocol 7.12.
struct vv_out_header {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
struct vv_inval_entry_out {
  uint64_t parent;
  uint32_t namelen;
  uint32_t flags;
};
#define VV_NOTIFY_INVAL_ENTRY 3
// Queued names at most: past that, invalidateEntry() says false and the caller must not
// have handed out the negative entry (it only does so while this accepts).
#define VV_NOTIFY_MAX_QUEUED 65536

typedef struct vv_note {
  struct vv_note *next;
  uint64_t parent;
  uint32_t len;
  char name[];
} vv_note;

struct vv_notifier {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int fd;
  int stop;
  vv_note *head, *tail;
  uint32_t queued;
  double sent, failed;  // counters (stats)
};

static void *notify_main(void *arg) {
  vv_notifier *n = arg;
  pthread_mutex_lock(&n->mu);
  for (;;) {
    while (!n->head && !n->stop) pthread_cond_wait(&n->cv, &n->mu);
    if (n->stop) break;
    vv_note *x = n->head;
    n->head = x->next;
    if (!n->head) n->tail = NULL;
    n->queued--;
    pthread_mutex_unlock(&n->mu);
    struct vv_out_header h = {(uint32_t)(sizeof h + sizeof(struct vv_inval_entry_out) + x->len + 1), VV_NOTIFY_INVAL_ENTRY, 0};
    struct vv_inval_entry_out o = {x->parent, x->len, 0};
    struct iovec iov[3] = {{&h, sizeof h}, {&o, sizeof o}, {x->name, (size_t)x->len + 1}};
    // ENOENT: the kernel holds no such dentry (expired, or never cached): nothing to drop.
    ssize_t w;
    do w = writev(n->fd, iov, 3);
    while (w < 0 && errno == EINTR);
    int ok = w >= 0 || errno == ENOENT;
    free(x);
    pthread_mutex_lock(&n->mu);
    if (ok) n->sent++;
    else n->failed++;
  }
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

// Started at the first invalidateEntry() (most mounts never need one). NULL on failure.
static vv_notifier *notifier_of(vv_sess *s) {
  if (s->notifier) return s->notifier;
  vv_notifier *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->fd = dup(fuse_session_fd(s->se));
  if (n->fd < 0) {
    free(n);
    return NULL;
  }
  pthread_mutex_init(&n->mu, NULL);
  pthread_cond_init(&n->cv, NULL);
  if (pthread_create(&n->thread, NULL, notify_main, n) != 0) {
    close(n->fd);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
    return NULL;
  }
  s->notifier = n;
  return n;
}

void vv_notify_stop(vv_sess *s) {
  vv_notifier *n = s->notifier;
  if (!n) return;
  s->notifier = NULL;
  pthread_mutex_lock(&n->mu);
  n->stop = 1;
  pthread_cond_signal(&n->cv);
  pthread_mutex_unlock(&n->mu);
  // A write blocked on a directory lock returns once the connection is aborted (detach_mount).
  pthread_join(n->thread, NULL);
  for (vv_note *x = n->head, *next; x; x = next) {
    next = x->next;
    free(x);
  }
  close(n->fd);
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->cv);
  free(n);
}

// invalidateEntry(handle, parent: bigint, name: string) -> boolean: queued (true), or not
// (unmounting, the queue full, no thread): then the caller must not rely on it.
static napi_value js_invalidate_entry(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "invalidateEntry(handle, parent, name)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t parent;
  bool lossless;
  if (napi_get_value_bigint_uint64(env, argv[1], &parent, &lossless) != napi_ok || !lossless) return vv_fail_type(env, "parent must be a bigint node id");
  char name[1024];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[2], name, sizeof name, &len) != napi_ok) return vv_fail_type(env, "name must be a string");
  if (len == 0 || len >= sizeof name - 1) return vv_fail_range(env, "name must be 1..1022 bytes");
  int ok = 0;
  pthread_mutex_lock(&s->mu);
  int live = !s->closing && !s->destroyed && s->se;
  pthread_mutex_unlock(&s->mu);
  vv_notifier *n = live ? notifier_of(s) : NULL;
  vv_note *x = n ? malloc(sizeof *x + len + 1) : NULL;
  if (x) {
    x->next = NULL;
    x->parent = parent;
    x->len = (uint32_t)len;
    memcpy(x->name, name, len + 1);
    pthread_mutex_lock(&n->mu);
    if (n->queued < VV_NOTIFY_MAX_QUEUED && !n->stop) {
      if (n->tail) n->tail->next = x;
      else n->head = x;
      n->tail = x;
      n->queued++;
      ok = 1;
      pthread_cond_signal(&n->cv);
    }
    pthread_mutex_unlock(&n->mu);
    if (!ok) free(x);
  }
  napi_value b;
  napi_get_boolean(env, ok, &b);
  return b;
}

// notifyStats(handle) -> { queued, sent, failed }
static napi_value js_notify_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "notifyStats(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  double queued = 0, sent = 0, failed = 0;
  vv_notifier *n = s->notifier;
  if (n) {
    pthread_mutex_lock(&n->mu);
    queued = n->queued;
    sent = n->sent;
    failed = n->failed;
    pthread_mutex_unlock(&n->mu);
  }
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, queued, &v);
  napi_set_named_property(env, o, "queued", v);
  napi_create_double(env, sent, &v);
  napi_set_named_property(env, o, "sent", v);
  napi_create_double(env, failed, &v);
  napi_set_named_property(env, o, "failed", v);
  return o;
}

napi_value vv_init_notify(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"invalidateEntry", NULL, js_invalidate_entry, NULL, NULL, NULL, napi_default, NULL},
      {"notifyStats", NULL, js_notify_stats, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
