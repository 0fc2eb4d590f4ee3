// The libfuse3 low-level session shared by the request side (requests.c: libfuse's callbacks on
// its worker threads, the queue, the batch handed to JavaScript) and the reply side (replies.c:
// the functions JavaScript calls with a request's id). Wire layouts of the packed reply arrays
// are in src/fuse/ll/pack.ts and must match the VV_* indices below.
#ifndef VMVAULT_FUSE3_SESSION_H
#define VMVAULT_FUSE3_SESSION_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 12)
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

enum vv_op {
  OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK, OP_RMDIR,
  OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH, OP_RELEASE, OP_FSYNC,
  OP_OPENDIR, OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS, OP_ACCESS, OP_CREATE, OP_GETLK,
  OP_SETLK, OP_FLOCK, OP_FALLOCATE, OP_LSEEK, OP_COPY_FILE_RANGE,
  OP_INTERRUPT,  // not a libfuse op: the kernel interrupted request `target` (no answer expected)
  OP_COUNT
};

// One kernel request on its way to JavaScript and, until answered, in a slot of the session.
typedef struct vv_req {
  struct vv_req *next;
  fuse_req_t req;
  struct vv_sess *sess;
  uint64_t id;      // 0: no answer expected (forget)
  int op;
  int queued;       // in the session's queue (not yet handed to JS)
  int handed;       // given to JavaScript (under sess->mu): an interrupt is sent as a notice
  int interrupted;  // the kernel interrupted it (under sess->mu); told to JS with the request or by a notice
  uint64_t target;  // OP_INTERRUPT: the id of the interrupted request
  uint32_t uid, gid, pid;
  uint64_t ino, ino2;   // ino2: newparent / link target dir / copy destination
  uint64_t fh, fh2;
  int has_fi;
  int64_t off, off2;
  uint64_t size;        // read/readdir size, fallocate/copy length
  uint32_t mode, umask, rdev, mask;
  int32_t flags, whence, datasync, plus, sleep;
  uint64_t lock_owner;
  struct stat attr;     // setattr
  int to_set;
  struct flock lock;
  char *name, *name2;   // malloc'd
  void *data;           // write payload: malloc'd (handed to JS as an external Buffer) or a ring block (ring.c)
  size_t data_len;
  struct fuse_forget_data *items;  // forget
  size_t nitems;
} vv_req;

typedef struct vv_notifier vv_notifier;  // notify.c

typedef struct vv_sess {
  struct fuse_session *se;
  pthread_t loop;
  int loop_started;
  int loop_result;
  napi_threadsafe_function tsfn;
  pthread_mutex_t mu;
  pthread_cond_t slot_cv;
  vv_req *head, *tail;  // queued for JavaScript
  int scheduled;        // a tsfn call is pending
  int closing;          // unmount began: no new slot is given, waiters give up
  int destroyed;        // fuse_session_destroy done
  vv_req **slots;       // requests handed out, by slot
  uint32_t *gens;       // generation per slot, so a stale id never answers a new request
  uint32_t *free_stack;
  uint32_t nslots, nfree;
  int refs;             // JS external + tsfn; freed at 0 (both on the JS thread)
  // options
  int max_threads, clone_fd, writeback, readdirplus, atomic_o_trunc;
  uint32_t max_write;
  uint32_t read_ahead_kb;  // the mount's bdi read_ahead_kb, set once INIT is done (0: the kernel's)
  int read_ahead_set;      // done (or tried), by the first request's thread
  int write_ring;          // large write payloads go to the write ring (ring.c)
  int js_reader;           // the JS thread reads /dev/fuse itself, no worker threads (jsreader.c)
  char *mountpoint;     // realpath, before mounting
  int connection;       // /sys/fs/fuse/connections/N, -1 unknown
  // counters
  double batches, requests, max_batch;
  double js_reads;      // requests the JS thread read itself (jsreader.c)
  struct vv_holes *holes;  // zero runs of open files, answered without JS (holes.c)
  struct vv_datawin *datawin;  // decoded read-ahead windows of open files, data reads answered without JS (datawin.c)
  struct vv_attrs *attrs;  // attributes JS vouches for, getattr answered without JS (attrs.c)
  struct vv_quiet *quiet;  // read-only handles whose flush is answered without JS (quiet.c)
  struct vv_names *names;  // names of directories JS vouches for, absent names answered without JS (names.c)
  struct vv_jsreader *jsreader;  // the JS thread reads /dev/fuse itself (jsreader.c), or NULL
  vv_notifier *notifier;  // dentry invalidations (notify.c), started at the first one
  napi_async_work unmount_work;
  napi_deferred unmount_deferred;
} vv_sess;

#define VV_SLOT_BITS 16
#define VV_MAX_SLOTS (1u << VV_SLOT_BITS)

// Packed layouts (doubles) of what replies carry; src/fuse/ll/pack.ts writes them.
enum { A_MODE, A_NLINK, A_UID, A_GID, A_RDEV, A_SIZE, A_BLOCKS, A_BLKSIZE, A_ATIME, A_MTIME, A_CTIME, A_COUNT };
enum { E_ATTR_TIMEOUT = A_COUNT, E_ENTRY_TIMEOUT, E_COUNT };   // entry = attr + 2 timeouts
// u64 side of an entry: [ino, generation]
// dirent stride: mode, next offset, has-entry flag (readdirplus), entry
enum { D_MODE = 0, D_OFF = 1, D_HAS = 2, D_ENTRY = 3, D_COUNT = D_ENTRY + E_COUNT };

extern const struct fuse_lowlevel_ops vv_ll_ops;

void vv_sess_unref(napi_env env, vv_sess *s);
vv_sess *vv_sess_of(napi_env env, napi_value v);   // the mount() handle argument, or NULL + TypeError
vv_req *vv_take(vv_sess *s, int64_t id);   // the outstanding request of id, removed from its slot
void vv_req_free(vv_req *r);
void vv_call_js(napi_env env, napi_value js_cb, void *context, void *data);
napi_value vv_init_replies(napi_env env, napi_value exports);
// Packed attributes (A_*) into a struct stat (replies.c).
void vv_unpack_attr(const double *a, uint64_t ino, struct stat *st);

#endif
