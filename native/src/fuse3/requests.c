// libfuse's low-level callbacks (on its worker threads) turn each request into a vv_req, give it
// a slot (waiting when maxInFlight are outstanding: the bounded queue) and queue it; the first
// request queued after a drain schedules one thread-safe-function call, and vv_call_js hands
// every queued request to JavaScript as one array (a batch). Nothing here waits for JavaScript
// except for a free slot, so the loop never blocks on its own mount.
#define _GNU_SOURCE
#include "session.h"
#include "attrs.h"
#include "datawin.h"
#include "holes.h"
#include "jsreader.h"
#include "names.h"
#include "quiet.h"
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static vv_req *req_new(fuse_req_t req, int op) {
  vv_req *r = calloc(1, sizeof *r);
  if (!r) {
    if (op != OP_FORGET) fuse_reply_err(req, ENOMEM);
    else fuse_reply_none(req);
    return NULL;
  }
  r->req = req;
  r->sess = fuse_req_userdata(req);
  r->op = op;
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  if (ctx) {
    r->uid = ctx->uid;
    r->gid = ctx->gid;
    r->pid = (uint32_t)ctx->pid;
    r->umask = ctx->umask;
  }
  return r;
}

static void set_fi(vv_req *r, struct fuse_file_info *fi) {
  if (!fi) return;
  r->has_fi = 1;
  r->fh = fi->fh;
  r->flags = fi->flags;
  r->lock_owner = fi->lock_owner;
}

static char *dup_name(const char *s) { return s ? strdup(s) : NULL; }

// Write payloads of more than 64 KiB come from a process-wide pool of 1 MiB blocks (at most
// POOL_MAX kept): a fresh malloc of 1 MiB is an mmap, 256 page faults and an munmap per write.
// The JS GC returns a block through free_payload (any session; the pool outlives them all).
#define POOL_BLOCK (1u << 20)
#define POOL_MAX 64
#define POOL_MIN (64u << 10)
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static void *pool[POOL_MAX];
static int pool_n;

static void *payload_alloc(size_t len) {
  if (len < POOL_MIN || len > POOL_BLOCK) return malloc(len ? len : 1);
  void *p = NULL;
  pthread_mutex_lock(&pool_mu);
  if (pool_n > 0) p = pool[--pool_n];
  pthread_mutex_unlock(&pool_mu);
  return p ? p : malloc(POOL_BLOCK);
}

static void payload_free(void *p, size_t len) {
  if (!p) return;
  // A ring block still here was never handed to JavaScript (an error, an unmount): back to the ring.
  int slot = vv_ring_slot(p);
  if (slot >= 0) {
    vv_ring_give(slot);
    return;
  }
  if (len >= POOL_MIN && len <= POOL_BLOCK) {
    pthread_mutex_lock(&pool_mu);
    if (pool_n < POOL_MAX) {
      pool[pool_n++] = p;
      p = NULL;
    }
    pthread_mutex_unlock(&pool_mu);
  }
  free(p);
}

void vv_req_free(vv_req *r) {
  if (!r) return;
  free(r->name);
  free(r->name2);
  payload_free(r->data, r->data_len);
  free(r->items);
  free(r);
}

// Queues r (under s->mu); returns whether the caller must schedule a drain.
static int enqueue_locked(vv_sess *s, vv_req *r) {
  r->queued = 1;
  if (s->tail) s->tail->next = r;
  else s->head = r;
  s->tail = r;
  if (!s->scheduled && !s->closing) {
    s->scheduled = 1;
    return 1;
  }
  return 0;
}

// libfuse calls this on the thread that read the kernel's FUSE_INTERRUPT (or at once, from
// fuse_req_interrupt_func, if the interrupt came first), holding the request's own lock. `data`
// is the session, never the vv_req: once JavaScript has answered, the vv_req is freed while
// libfuse may still be about to call us. The request is found by its fuse_req_t among the slots
// under the session lock, where no answer can free it. A request already handed to JavaScript
// gets a notice (OP_INTERRUPT, no slot, no answer); one not yet handed carries the flag itself.
static void on_interrupt(fuse_req_t req, void *data) {
  vv_sess *s = data;
  int call = 0;
  pthread_mutex_lock(&s->mu);
  for (uint32_t i = 0; i < s->nslots; i++) {
    vv_req *r = s->slots[i];
    if (!r || r->req != req) continue;
    if (r->interrupted) break;
    r->interrupted = 1;
    if (r->handed && !s->closing) {
      vv_req *n = calloc(1, sizeof *n);
      if (n) {
        n->sess = s;
        n->op = OP_INTERRUPT;
        n->target = r->id;
        n->uid = r->uid;
        n->gid = r->gid;
        n->pid = r->pid;
        call = enqueue_locked(s, n);
      }
    }
    break;
  }
  pthread_mutex_unlock(&s->mu);
  if (call) napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
}

// The kernel's read-ahead for the mount (its bdi, /sys/class/bdi/0:N/read_ahead_kb) is 128 KiB
// unless told: page-cache reads then reach us as 128 KiB requests whatever max_read and
// max_pages allow, one JS round trip each. It cannot be raised through INIT (the kernel offers
// its current read-ahead as max_readahead, libfuse takes no more, and the kernel then keeps the
// smaller of the two), so it is written to sysfs once INIT is done: at the first request, as
// the kernel sends none before it has processed the INIT reply. A sysfs write never touches
// the mount. Failure (no sysfs, not root) keeps the kernel's default: only slower.
static void set_read_ahead(vv_sess *s) {
  if (!s->read_ahead_kb || s->connection < 0) return;
  if (__atomic_exchange_n(&s->read_ahead_set, 1, __ATOMIC_ACQ_REL)) return;
  char path[64], val[16];
  snprintf(path, sizeof path, "/sys/class/bdi/0:%d/read_ahead_kb", s->connection);
  int n = snprintf(val, sizeof val, "%u", s->read_ahead_kb);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t w = write(fd, val, (size_t)n);
  (void)w;
  close(fd);
}

// Gives r a slot (unless it needs no answer), queues it and schedules a drain.
static void submit(vv_req *r) {
  vv_sess *s = r->sess;  // not from r->req: a forget was answered (and its req freed) already
  int call = 0;
  if (!__atomic_load_n(&s->read_ahead_set, __ATOMIC_RELAXED)) set_read_ahead(s);
  pthread_mutex_lock(&s->mu);
  if (r->op != OP_FORGET) {
    while (s->nfree == 0 && !s->closing) pthread_cond_wait(&s->slot_cv, &s->mu);
    if (s->closing) {
      pthread_mutex_unlock(&s->mu);
      fuse_reply_err(r->req, ENOTCONN);
      vv_req_free(r);
      return;
    }
    uint32_t slot = s->free_stack[--s->nfree];
    s->slots[slot] = r;
    r->id = ((uint64_t)s->gens[slot] << VV_SLOT_BITS) | slot;
    // Registered while nothing can answer (and free) the request: it is in a slot but not yet
    // queued for JavaScript. on_interrupt takes s->mu, so it must not be held here.
    pthread_mutex_unlock(&s->mu);
    fuse_req_interrupt_func(r->req, on_interrupt, s);
    pthread_mutex_lock(&s->mu);
  }
  call = enqueue_locked(s, r);
  pthread_mutex_unlock(&s->mu);
  // The call only queues work for the JS thread (the queue has no size limit). Read on the JS
  // thread itself (jsreader.c): it hands the queue over once it stops reading.
  if (call && !vv_jsreader_here(s)) napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking);
}

vv_req *vv_take(vv_sess *s, int64_t id) {
  if (id <= 0) return NULL;
  uint32_t slot = (uint32_t)(id & (VV_MAX_SLOTS - 1));
  uint32_t gen = (uint32_t)((uint64_t)id >> VV_SLOT_BITS);
  vv_req *r = NULL;
  pthread_mutex_lock(&s->mu);
  if (slot < s->nslots && s->slots[slot] && s->gens[slot] == gen && !s->destroyed) {
    r = s->slots[slot];
    s->slots[slot] = NULL;
    s->gens[slot]++;
    s->free_stack[s->nfree++] = slot;
    pthread_cond_signal(&s->slot_cv);
  }
  pthread_mutex_unlock(&s->mu);
  if (r && s->jsreader) vv_jsreader_slot_freed(s);
  return r;
}

// ---- the low-level operations -------------------------------------------------------------

#define NEW(op)                   \
  vv_req *r = req_new(req, op);   \
  if (!r) return

static void ll_init(void *ud, struct fuse_conn_info *conn) {
  vv_sess *s = ud;
  unsigned want_on = FUSE_CAP_EXPORT_SUPPORT | FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS |
                     FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS | FUSE_CAP_ASYNC_DIO;
  if (s->writeback) want_on |= FUSE_CAP_WRITEBACK_CACHE;
  if (s->readdirplus) want_on |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  if (s->atomic_o_trunc) want_on |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want |= want_on & conn->capable;
  // Splice would move write payloads through a pipe and still need a copy into JS memory.
  conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  if (!s->writeback) conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
  if (!s->readdirplus) conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
  if (!s->atomic_o_trunc) conn->want &= ~(unsigned)FUSE_CAP_ATOMIC_O_TRUNC;
  // libfuse asks the kernel for max_pages = max_write / page size (FUSE_MAX_PAGES).
  conn->max_write = s->max_write;
  conn->max_readahead = s->max_write;
  // More asynchronous requests in flight means fuller batches.
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  conn->time_gran = 1;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  // A name JavaScript vouches is absent (names.c): answered here, no hop to its thread.
  if (vv_names_answer(fuse_req_userdata(req), req, parent, name)) return;
  NEW(OP_LOOKUP);
  r->ino = parent;
  r->name = dup_name(name);
  submit(r);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  NEW(OP_FORGET);
  r->items = malloc(sizeof *r->items);
  if (r->items) {
    r->items[0].ino = ino;
    r->items[0].nlookup = nlookup;
    r->nitems = 1;
  }
  fuse_reply_none(req);
  submit(r);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  NEW(OP_FORGET);
  r->items = malloc(count * sizeof *r->items + 1);
  if (r->items) {
    memcpy(r->items, forgets, count * sizeof *r->items);
    r->nitems = count;
  }
  fuse_reply_none(req);
  submit(r);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  // Attributes JavaScript vouches for (attrs.c): answered here, no hop to its thread.
  if (vv_attrs_answer(fuse_req_userdata(req), req, ino)) return;
  NEW(OP_GETATTR);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  NEW(OP_SETATTR);
  r->ino = ino;
  r->attr = *attr;
  r->to_set = to_set;
  set_fi(r, fi);
  submit(r);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  NEW(OP_READLINK);
  r->ino = ino;
  submit(r);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  NEW(OP_MKNOD);
  r->ino = parent;
  r->name = dup_name(name);
  r->mode = mode;
  r->rdev = (uint32_t)rdev;
  submit(r);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  NEW(OP_MKDIR);
  r->ino = parent;
  r->name = dup_name(name);
  r->mode = mode;
  submit(r);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW(OP_UNLINK);
  r->ino = parent;
  r->name = dup_name(name);
  submit(r);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW(OP_RMDIR);
  r->ino = parent;
  r->name = dup_name(name);
  submit(r);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  NEW(OP_SYMLINK);
  r->ino = parent;
  r->name = dup_name(name);
  r->name2 = dup_name(link);
  submit(r);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
                      unsigned int flags) {
  NEW(OP_RENAME);
  r->ino = parent;
  r->name = dup_name(name);
  r->ino2 = newparent;
  r->name2 = dup_name(newname);
  r->flags = (int32_t)flags;
  submit(r);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  NEW(OP_LINK);
  r->ino = ino;
  r->ino2 = newparent;
  r->name2 = dup_name(newname);
  submit(r);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_OPEN);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  // Inside a known hole: zeros at once, on this thread (holes.c).
  if (vv_holes_answer(fuse_req_userdata(req), req, ino, fi->fh, off, size)) return;
  // Inside a decoded read-ahead window JavaScript registered: from it, on this thread (datawin.c).
  if (vv_datawin_answer(fuse_req_userdata(req), req, ino, fi->fh, off, size)) return;
  NEW(OP_READ);
  r->ino = ino;
  r->size = size;
  r->off = off;
  set_fi(r, fi);
  submit(r);
}

// The one copy of a write's payload: out of libfuse's receive buffer (reused as soon as this
// returns) into memory that becomes a Buffer JavaScript owns.
static void ll_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
                         struct fuse_file_info *fi) {
  NEW(OP_WRITE);
  size_t len = fuse_buf_size(bufv);
  // A session that opted in (cfg writeRing) gets large payloads in the write ring (ring.c).
  r->data = r->sess->write_ring ? vv_ring_take(len) : NULL;
  if (!r->data) r->data = payload_alloc(len);
  r->data_len = len;
  if (!r->data) {
    fuse_reply_err(req, ENOMEM);
    vv_req_free(r);
    return;
  }
  struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
  dst.buf[0].mem = r->data;
  ssize_t n = len ? fuse_buf_copy(&dst, bufv, 0) : 0;
  if (n < 0) {
    fuse_reply_err(req, (int)-n);
    vv_req_free(r);
    return;
  }
  r->data_len = (size_t)n;
  r->ino = ino;
  r->off = off;
  set_fi(r, fi);
  submit(r);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  // A read-only handle while no POSIX lock was taken: nothing to do (quiet.c), no hop to JS.
  if (vv_quiet_flush(fuse_req_userdata(req), req, fi->fh)) return;
  NEW(OP_FLUSH);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  vv_quiet_release(fuse_req_userdata(req), fi->fh);
  NEW(OP_RELEASE);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  NEW(OP_FSYNC);
  r->ino = ino;
  r->datasync = datasync;
  set_fi(r, fi);
  submit(r);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_OPENDIR);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  NEW(OP_READDIR);
  r->ino = ino;
  r->size = size;
  r->off = off;
  set_fi(r, fi);
  submit(r);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  NEW(OP_READDIR);
  r->ino = ino;
  r->size = size;
  r->off = off;
  r->plus = 1;
  set_fi(r, fi);
  submit(r);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_RELEASEDIR);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  NEW(OP_FSYNCDIR);
  r->ino = ino;
  r->datasync = datasync;
  set_fi(r, fi);
  submit(r);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  NEW(OP_STATFS);
  r->ino = ino;
  submit(r);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  NEW(OP_ACCESS);
  r->ino = ino;
  r->mask = (uint32_t)mask;
  submit(r);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  NEW(OP_CREATE);
  r->ino = parent;
  r->name = dup_name(name);
  r->mode = mode;
  set_fi(r, fi);
  submit(r);
}

static void ll_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock) {
  NEW(OP_GETLK);
  r->ino = ino;
  set_fi(r, fi);
  r->lock = *lock;
  submit(r);
}

static void ll_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock, int sleep) {
  NEW(OP_SETLK);
  r->ino = ino;
  set_fi(r, fi);
  r->lock = *lock;
  r->sleep = sleep;
  submit(r);
}

static void ll_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  NEW(OP_FLOCK);
  r->ino = ino;
  set_fi(r, fi);
  r->mask = (uint32_t)op;
  submit(r);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         struct fuse_file_info *fi) {
  NEW(OP_FALLOCATE);
  r->ino = ino;
  set_fi(r, fi);
  r->mode = (uint32_t)mode;
  r->off = offset;
  r->size = (uint64_t)length;
  submit(r);
}

static void ll_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  NEW(OP_LSEEK);
  r->ino = ino;
  set_fi(r, fi);
  r->off = off;
  r->whence = whence;
  submit(r);
}

static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
                               fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t len,
                               int flags) {
  NEW(OP_COPY_FILE_RANGE);
  r->ino = ino_in;
  r->off = off_in;
  set_fi(r, fi_in);
  r->ino2 = ino_out;
  r->off2 = off_out;
  r->fh2 = fi_out ? fi_out->fh : 0;
  r->size = len;
  r->flags = flags;
  submit(r);
}

// Extended attributes: not supported by the store (README); answered here, never queued.
static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  fuse_reply_err(req, ENOTSUP);
}
static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  fuse_reply_err(req, ENOTSUP);
}
static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) { fuse_reply_err(req, ENOTSUP); }
static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) { fuse_reply_err(req, ENOTSUP); }

const struct fuse_lowlevel_ops vv_ll_ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readlink = ll_readlink,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .open = ll_open,
    .read = ll_read,
    .write_buf = ll_write_buf,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .releasedir = ll_releasedir,
    .fsyncdir = ll_fsyncdir,
    .statfs = ll_statfs,
    .access = ll_access,
    .create = ll_create,
    .getlk = ll_getlk,
    .setlk = ll_setlk,
    .flock = ll_flock,
    .fallocate = ll_fallocate,
    .lseek = ll_lseek,
    .copy_file_range = ll_copy_file_range,
    .setxattr = ll_setxattr,
    .getxattr = ll_getxattr,
    .listxattr = ll_listxattr,
    .removexattr = ll_removexattr,
};

// ---- the batch handed to JavaScript ----------------------------------------------------------

static const char *const OP_NAMES[OP_COUNT] = {
    "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
    "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync",
    "opendir", "readdir", "releasedir", "fsyncdir", "statfs", "access", "create", "getlk",
    "setlk", "flock", "fallocate", "lseek", "copy_file_range", "interrupt"};

static void put_num(napi_env env, napi_value o, const char *k, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, o, k, x);
}
static void put_big(napi_env env, napi_value o, const char *k, uint64_t v) {
  napi_value x;
  napi_create_bigint_uint64(env, v, &x);
  napi_set_named_property(env, o, k, x);
}
static void put_str(napi_env env, napi_value o, const char *k, const char *v) {
  napi_value x;
  napi_create_string_utf8(env, v ? v : "", NAPI_AUTO_LENGTH, &x);
  napi_set_named_property(env, o, k, x);
}
static void put_bool(napi_env env, napi_value o, const char *k, int v) {
  napi_value x;
  napi_get_boolean(env, v != 0, &x);
  napi_set_named_property(env, o, k, x);
}
static double ts_ms(struct timespec t) { return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6; }

static void free_payload(napi_env env, void *data, void *hint) { payload_free(data, (size_t)(uintptr_t)hint); }

#define OFFSET_MAX_JS 9007199254740991.0

static void put_lock(napi_env env, napi_value o, const struct flock *l) {
  napi_value lk;
  napi_create_object(env, &lk);
  put_num(env, lk, "type", l->l_type);
  put_num(env, lk, "start", (double)l->l_start);
  put_num(env, lk, "end", l->l_len == 0 ? OFFSET_MAX_JS : (double)(l->l_start + l->l_len - 1));
  put_num(env, lk, "pid", l->l_pid);
  napi_set_named_property(env, o, "lock", lk);
}

static napi_value to_js(napi_env env, vv_req *r) {
  napi_value o;
  napi_create_object(env, &o);
  put_num(env, o, "id", (double)r->id);
  put_str(env, o, "op", OP_NAMES[r->op]);
  put_num(env, o, "uid", r->uid);
  put_num(env, o, "gid", r->gid);
  put_num(env, o, "pid", r->pid);
  if (r->op == OP_INTERRUPT) {
    put_num(env, o, "target", (double)r->target);
    return o;
  }
  if (r->interrupted) put_bool(env, o, "interrupted", 1);
  switch (r->op) {
    case OP_LOOKUP: case OP_UNLINK: case OP_RMDIR:
      put_big(env, o, "parent", r->ino);
      put_str(env, o, "name", r->name);
      break;
    case OP_MKNOD: case OP_MKDIR: case OP_CREATE: case OP_SYMLINK:
      put_big(env, o, "parent", r->ino);
      put_str(env, o, "name", r->name);
      if (r->op == OP_SYMLINK) {
        put_str(env, o, "target", r->name2);
      } else {
        put_num(env, o, "mode", r->mode);
        put_num(env, o, "umask", r->umask);
      }
      if (r->op == OP_MKNOD) put_num(env, o, "rdev", r->rdev);
      if (r->op == OP_CREATE) put_num(env, o, "flags", r->flags);
      break;
    case OP_RENAME:
      put_big(env, o, "parent", r->ino);
      put_str(env, o, "name", r->name);
      put_big(env, o, "newparent", r->ino2);
      put_str(env, o, "newname", r->name2);
      put_num(env, o, "flags", r->flags);
      break;
    case OP_LINK:
      put_big(env, o, "ino", r->ino);
      put_big(env, o, "newparent", r->ino2);
      put_str(env, o, "newname", r->name2);
      break;
    case OP_FORGET: {
      napi_value arr;
      napi_create_array_with_length(env, r->nitems, &arr);
      for (size_t i = 0; i < r->nitems; i++) {
        napi_value it;
        napi_create_object(env, &it);
        put_big(env, it, "ino", r->items[i].ino);
        put_num(env, it, "nlookup", (double)r->items[i].nlookup);
        napi_set_element(env, arr, (uint32_t)i, it);
      }
      napi_set_named_property(env, o, "items", arr);
      break;
    }
    default:
      put_big(env, o, "ino", r->ino);
      if (r->has_fi) put_num(env, o, "fh", (double)r->fh);
      break;
  }
  switch (r->op) {
    case OP_SETATTR: {
      napi_value set;
      napi_create_object(env, &set);
      int t = r->to_set;
      if (t & FUSE_SET_ATTR_MODE) put_num(env, set, "mode", r->attr.st_mode);
      if (t & FUSE_SET_ATTR_UID) put_num(env, set, "uid", r->attr.st_uid);
      if (t & FUSE_SET_ATTR_GID) put_num(env, set, "gid", r->attr.st_gid);
      if (t & FUSE_SET_ATTR_SIZE) put_num(env, set, "size", (double)r->attr.st_size);
      if (t & FUSE_SET_ATTR_ATIME_NOW) put_str(env, set, "atimeMs", "now");
      else if (t & FUSE_SET_ATTR_ATIME) put_num(env, set, "atimeMs", ts_ms(r->attr.st_atim));
      if (t & FUSE_SET_ATTR_MTIME_NOW) put_str(env, set, "mtimeMs", "now");
      else if (t & FUSE_SET_ATTR_MTIME) put_num(env, set, "mtimeMs", ts_ms(r->attr.st_mtim));
      if (t & FUSE_SET_ATTR_CTIME) put_num(env, set, "ctimeMs", ts_ms(r->attr.st_ctim));
      napi_set_named_property(env, o, "set", set);
      break;
    }
    case OP_OPEN: case OP_OPENDIR: case OP_RELEASE: case OP_RELEASEDIR:
      put_num(env, o, "flags", r->flags);
      break;
    case OP_READ:
      put_num(env, o, "offset", (double)r->off);
      put_num(env, o, "size", (double)r->size);
      break;
    case OP_READDIR:
      put_num(env, o, "offset", (double)r->off);
      put_num(env, o, "size", (double)r->size);
      put_bool(env, o, "plus", r->plus);
      break;
    case OP_WRITE: {
      napi_value buf;
      int slot = vv_ring_slot(r->data);
      if (slot >= 0) {
        // A block of the write ring: JavaScript makes the view (session.ts) and gives the block
        // back with releaseWrite(ringSlot).
        put_num(env, o, "ringSlot", slot);
        put_num(env, o, "size", (double)r->data_len);
        r->data = NULL;
      } else {
        if (r->data_len &&
            napi_create_external_buffer(env, r->data_len, r->data, free_payload, (void *)(uintptr_t)r->data_len, &buf) == napi_ok) {
          r->data = NULL;  // JavaScript owns it now; its GC frees it
        } else {
          void *copy;
          napi_create_buffer_copy(env, r->data_len, r->data, &copy, &buf);
        }
        napi_set_named_property(env, o, "data", buf);
      }
      put_num(env, o, "offset", (double)r->off);
      put_num(env, o, "flags", r->flags);
      break;
    }
    case OP_FLUSH:
      put_big(env, o, "lockOwner", r->lock_owner);
      break;
    case OP_FSYNC: case OP_FSYNCDIR:
      put_bool(env, o, "datasync", r->datasync);
      break;
    case OP_ACCESS:
      put_num(env, o, "mask", r->mask);
      break;
    case OP_GETLK: case OP_SETLK:
      put_big(env, o, "lockOwner", r->lock_owner);
      put_lock(env, o, &r->lock);
      if (r->op == OP_SETLK) put_bool(env, o, "sleep", r->sleep);
      break;
    case OP_FLOCK:
      put_big(env, o, "lockOwner", r->lock_owner);
      put_num(env, o, "operation", r->mask);
      break;
    case OP_FALLOCATE:
      put_num(env, o, "mode", r->mode);
      put_num(env, o, "offset", (double)r->off);
      put_num(env, o, "length", (double)r->size);
      break;
    case OP_LSEEK:
      put_num(env, o, "offset", (double)r->off);
      put_num(env, o, "whence", r->whence);
      break;
    case OP_COPY_FILE_RANGE:
      put_num(env, o, "offset", (double)r->off);
      put_big(env, o, "inoOut", r->ino2);
      put_num(env, o, "fhOut", (double)r->fh2);
      put_num(env, o, "offsetOut", (double)r->off2);
      put_num(env, o, "length", (double)r->size);
      put_num(env, o, "flags", r->flags);
      break;
    default:
      break;
  }
  // What JavaScript was given is no longer needed here; the record stays until answered.
  free(r->name);
  free(r->name2);
  r->name = r->name2 = NULL;
  return o;
}

void vv_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  vv_sess *s = context;
  // Tearing down (no env): the queue stays for unmount to answer and free.
  if (!env) return;
  pthread_mutex_lock(&s->mu);
  vv_req *list = s->destroyed ? NULL : s->head;
  if (list) s->head = s->tail = NULL;
  // From here an interrupt of any of these reaches JavaScript as a notice.
  for (vv_req *r = list; r; r = r->next) r->handed = 1;
  s->scheduled = 0;
  pthread_mutex_unlock(&s->mu);
  if (!list) return;
  uint32_t n = 0;
  for (vv_req *r = list; r; r = r->next) n++;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value arr;
  napi_create_array_with_length(env, n, &arr);
  uint32_t i = 0;
  for (vv_req *r = list, *next; r; r = next) {
    next = r->next;
    r->next = NULL;
    r->queued = 0;
    napi_set_element(env, arr, i++, to_js(env, r));
    // A forget or an interrupt notice needs no answer and has no slot: done with it.
    if (r->op == OP_FORGET || r->op == OP_INTERRUPT) vv_req_free(r);
  }
  s->batches++;
  s->requests += n;
  if (n > s->max_batch) s->max_batch = n;
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_call_function(env, undef, js_cb, 1, &arr, NULL);
  napi_close_handle_scope(env, scope);
}
