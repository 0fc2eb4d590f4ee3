// The reply functions JavaScript calls: reply*(handle, id, ...) -> true when the id was
// outstanding (and is now answered), false when it was not (answered before, or unmounted).
// Attributes and entries come packed in a Float64Array plus a BigUint64Array (inode,
// generation), laid out as session.h's A_* / E_* / D_* indices say; src/fuse/ll/pack.ts packs.
#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../napi_util.h"

static napi_value ret_bool(napi_env env, int v) {
  napi_value b;
  napi_get_boolean(env, v != 0, &b);
  return b;
}

// Parses (handle, id, ...) and takes the request; *taken NULL when not outstanding.
static int begin(napi_env env, napi_callback_info info, size_t want, napi_value *argv, vv_req **taken) {
  if (!vv_args(env, info, want, argv, "reply(handle, id, ...)")) return 0;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return 0;
  int64_t id;
  if (napi_get_value_int64(env, argv[1], &id) != napi_ok) {
    vv_fail_type(env, "id must be a number");
    return 0;
  }
  *taken = vv_take(s, id);
  return 1;
}

static double num_arg(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static uint64_t u64_of(double d) { return d > 0 && isfinite(d) ? (uint64_t)d : 0; }

static struct timespec ts_of(double ms) {
  struct timespec t = {0, 0};
  if (!isfinite(ms)) return t;
  double sec = floor(ms / 1000.0);
  double ns = round((ms - sec * 1000.0) * 1e6);
  if (ns >= 1e9) {
    sec += 1;
    ns -= 1e9;
  }
  t.tv_sec = (time_t)sec;
  t.tv_nsec = (long)ns;
  return t;
}

void vv_unpack_attr(const double *a, uint64_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = (mode_t)a[A_MODE];
  st->st_nlink = (nlink_t)a[A_NLINK];
  st->st_uid = (uid_t)a[A_UID];
  st->st_gid = (gid_t)a[A_GID];
  st->st_rdev = (dev_t)a[A_RDEV];
  st->st_size = (off_t)u64_of(a[A_SIZE]);
  st->st_blocks = (blkcnt_t)u64_of(a[A_BLOCKS]);
  st->st_blksize = (blksize_t)a[A_BLKSIZE];
  st->st_atim = ts_of(a[A_ATIME]);
  st->st_mtim = ts_of(a[A_MTIME]);
  st->st_ctim = ts_of(a[A_CTIME]);
}

static void unpack_entry(const double *f, const uint64_t *u, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  e->ino = u[0];
  e->generation = u[1];
  vv_unpack_attr(f, u[0], &e->attr);
  e->attr_timeout = f[E_ATTR_TIMEOUT];
  e->entry_timeout = f[E_ENTRY_TIMEOUT];
}

// The packed arrays of argv[i] (Float64Array) and argv[i+1] (BigUint64Array), checked for size.
static int packed(napi_env env, napi_value *argv, size_t i, size_t nf, size_t nu, double **f, uint64_t **u) {
  size_t lf, lu;
  *f = vv_typed(env, argv[i], napi_float64_array, "packed attributes must be a Float64Array", &lf);
  if (!*f) return 0;
  if (nu) {
    *u = vv_typed(env, argv[i + 1], napi_biguint64_array, "packed inode numbers must be a BigUint64Array", &lu);
    if (!*u) return 0;
    if (lu < nu) return !!vv_fail_range(env, "packed inode array too short");
  }
  if (lf < nf) return !!vv_fail_range(env, "packed attribute array too short");
  return 1;
}

static void open_flags(struct fuse_file_info *fi, double fh, int bits) {
  memset(fi, 0, sizeof *fi);
  fi->fh = u64_of(fh);
  fi->direct_io = (bits & 1) != 0;
  fi->keep_cache = (bits & 2) != 0;
  fi->nonseekable = (bits & 4) != 0;
  fi->cache_readdir = (bits & 8) != 0;
}

#define DONE(r, call)  \
  do {                 \
    call;              \
    vv_req_free(r);    \
  } while (0)

// replyErr(h, id, errno)
static napi_value reply_err(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  vv_req *r = NULL;
  if (!begin(env, info, 3, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  int err = (int)num_arg(env, argv[2]);
  DONE(r, fuse_reply_err(r->req, err < 0 ? -err : err));
  return ret_bool(env, 1);
}

// replyNone(h, id)
static napi_value reply_none(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  vv_req *r = NULL;
  if (!begin(env, info, 2, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  DONE(r, fuse_reply_none(r->req));
  return ret_bool(env, 1);
}

// replyEntry(h, id, f64[E_COUNT], u64[2])
static napi_value reply_entry(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double *f;
  uint64_t *u;
  vv_req *r = NULL;
  if (!vv_args(env, info, 4, argv, "replyEntry(handle, id, f64, u64)")) return NULL;
  if (!packed(env, argv, 2, E_COUNT, 2, &f, &u)) return NULL;
  if (!begin(env, info, 4, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  struct fuse_entry_param e;
  unpack_entry(f, u, &e);
  DONE(r, fuse_reply_entry(r->req, &e));
  return ret_bool(env, 1);
}

// replyCreate(h, id, f64[E_COUNT + 2] (fh, open bits after the entry), u64[2])
static napi_value reply_create(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double *f;
  uint64_t *u;
  vv_req *r = NULL;
  if (!vv_args(env, info, 4, argv, "replyCreate(handle, id, f64, u64)")) return NULL;
  if (!packed(env, argv, 2, E_COUNT + 2, 2, &f, &u)) return NULL;
  if (!begin(env, info, 4, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  struct fuse_entry_param e;
  unpack_entry(f, u, &e);
  struct fuse_file_info fi;
  open_flags(&fi, f[E_COUNT], (int)f[E_COUNT + 1]);
  fi.flags = r->flags;
  DONE(r, fuse_reply_create(r->req, &e, &fi));
  return ret_bool(env, 1);
}

// replyAttr(h, id, f64[A_COUNT + 1] (timeout last), u64[1])
static napi_value reply_attr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double *f;
  uint64_t *u;
  vv_req *r = NULL;
  if (!vv_args(env, info, 4, argv, "replyAttr(handle, id, f64, u64)")) return NULL;
  if (!packed(env, argv, 2, A_COUNT + 1, 1, &f, &u)) return NULL;
  if (!begin(env, info, 4, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  struct stat st;
  vv_unpack_attr(f, u[0] ? u[0] : r->ino, &st);
  DONE(r, fuse_reply_attr(r->req, &st, f[A_COUNT]));
  return ret_bool(env, 1);
}

// replyOpen(h, id, fh, bits)
static napi_value reply_open(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  vv_req *r = NULL;
  if (!begin(env, info, 4, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  struct fuse_file_info fi;
  open_flags(&fi, num_arg(env, argv[2]), (int)num_arg(env, argv[3]));
  fi.flags = r->flags;
  DONE(r, fuse_reply_open(r->req, &fi));
  return ret_bool(env, 1);
}

// replyData(h, id, buf): read data, straight from JS memory into the kernel.
static napi_value reply_data(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t len;
  vv_req *r = NULL;
  if (!vv_args(env, info, 3, argv, "replyData(handle, id, buf)")) return NULL;
  const void *p = vv_typed(env, argv[2], napi_uint8_array, "buf must be a Uint8Array", &len);
  if (!p) return NULL;
  if (!begin(env, info, 3, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  if (r->op == OP_READ && len > r->size) len = r->size;
  DONE(r, fuse_reply_buf(r->req, p, len));
  return ret_bool(env, 1);
}

// replyWrite(h, id, n)
static napi_value reply_write(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  vv_req *r = NULL;
  if (!begin(env, info, 3, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  DONE(r, fuse_reply_write(r->req, (size_t)u64_of(num_arg(env, argv[2]))));
  return ret_bool(env, 1);
}

// replyReadlink(h, id, target)
static napi_value reply_readlink(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  vv_req *r = NULL;
  if (!vv_args(env, info, 3, argv, "replyReadlink(handle, id, target)")) return NULL;
  size_t len;
  if (napi_get_value_string_utf8(env, argv[2], NULL, 0, &len) != napi_ok) return vv_fail_type(env, "target must be a string");
  char *t = malloc(len + 1);
  if (!t) return NULL;
  napi_get_value_string_utf8(env, argv[2], t, len + 1, &len);
  if (!begin(env, info, 3, argv, &r)) {
    free(t);
    return NULL;
  }
  if (!r) {
    free(t);
    return ret_bool(env, 0);
  }
  DONE(r, fuse_reply_readlink(r->req, t));
  free(t);
  return ret_bool(env, 1);
}

// replyDir(h, id, names: string[], f64[n * D_COUNT], u64[n * 2]) -> entries taken (-1: not outstanding)
static napi_value reply_dir(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  vv_req *r = NULL;
  if (!vv_args(env, info, 5, argv, "replyDir(handle, id, names, f64, u64)")) return NULL;
  uint32_t n = 0;
  bool isarr = false;
  napi_is_array(env, argv[2], &isarr);
  if (!isarr) return vv_fail_type(env, "names must be an array");
  napi_get_array_length(env, argv[2], &n);
  double *f;
  uint64_t *u;
  if (!packed(env, argv, 3, (size_t)n * D_COUNT, (size_t)n * 2, &f, &u)) return NULL;
  if (!begin(env, info, 5, argv, &r)) return NULL;
  napi_value out;
  if (!r) {
    napi_create_int32(env, -1, &out);
    return out;
  }
  size_t cap = r->size;
  char *buf = malloc(cap ? cap : 1);
  if (!buf) {
    DONE(r, fuse_reply_err(r->req, ENOMEM));
    napi_create_int32(env, 0, &out);
    return out;
  }
  size_t pos = 0;
  uint32_t taken = 0;
  char name[1024];
  for (uint32_t i = 0; i < n; i++) {
    napi_value nv;
    size_t nlen;
    napi_get_element(env, argv[2], i, &nv);
    if (napi_get_value_string_utf8(env, nv, name, sizeof name, &nlen) != napi_ok) break;
    const double *d = f + (size_t)i * D_COUNT;
    off_t next = (off_t)u64_of(d[D_OFF]);
    size_t need;
    if (r->plus) {
      struct fuse_entry_param e;
      if (d[D_HAS] != 0) {
        unpack_entry(d + D_ENTRY, u + (size_t)i * 2, &e);
      } else {
        // No attributes given: ino 0 tells the kernel to take the name only (no lookup counted).
        memset(&e, 0, sizeof e);
        e.attr.st_ino = u[(size_t)i * 2];
        e.attr.st_mode = (mode_t)d[D_MODE];
      }
      need = fuse_add_direntry_plus(r->req, buf + pos, cap - pos, name, &e, next);
    } else {
      struct stat st;
      memset(&st, 0, sizeof st);
      st.st_ino = u[(size_t)i * 2];
      st.st_mode = (mode_t)d[D_MODE];
      need = fuse_add_direntry(r->req, buf + pos, cap - pos, name, &st, next);
    }
    if (need > cap - pos) break;
    pos += need;
    taken++;
  }
  DONE(r, fuse_reply_buf(r->req, buf, pos));
  free(buf);
  napi_create_uint32(env, taken, &out);
  return out;
}

// replyStatfs(h, id, f64[bsize, frsize, blocks, bfree, bavail, files, ffree, favail, namemax])
static napi_value reply_statfs(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double *f;
  uint64_t *u = NULL;
  vv_req *r = NULL;
  if (!vv_args(env, info, 3, argv, "replyStatfs(handle, id, f64)")) return NULL;
  if (!packed(env, argv, 2, 9, 0, &f, &u)) return NULL;
  if (!begin(env, info, 3, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = (unsigned long)f[0];
  st.f_frsize = (unsigned long)f[1];
  st.f_blocks = (fsblkcnt_t)u64_of(f[2]);
  st.f_bfree = (fsblkcnt_t)u64_of(f[3]);
  st.f_bavail = (fsblkcnt_t)u64_of(f[4]);
  st.f_files = (fsfilcnt_t)u64_of(f[5]);
  st.f_ffree = (fsfilcnt_t)u64_of(f[6]);
  st.f_favail = (fsfilcnt_t)u64_of(f[7]);
  st.f_namemax = (unsigned long)f[8];
  DONE(r, fuse_reply_statfs(r->req, &st));
  return ret_bool(env, 1);
}

// replyLock(h, id, f64[type, start, end, pid])
static napi_value reply_lock(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double *f;
  uint64_t *u = NULL;
  vv_req *r = NULL;
  if (!vv_args(env, info, 3, argv, "replyLock(handle, id, f64)")) return NULL;
  if (!packed(env, argv, 2, 4, 0, &f, &u)) return NULL;
  if (!begin(env, info, 3, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  struct flock l;
  memset(&l, 0, sizeof l);
  l.l_type = (short)f[0];
  l.l_whence = SEEK_SET;
  l.l_start = (off_t)u64_of(f[1]);
  l.l_len = f[2] >= 9007199254740991.0 ? 0 : (off_t)(u64_of(f[2]) - (uint64_t)l.l_start + 1);
  l.l_pid = (pid_t)f[3];
  DONE(r, fuse_reply_lock(r->req, &l));
  return ret_bool(env, 1);
}

// replyLseek(h, id, off)
static napi_value reply_lseek(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  vv_req *r = NULL;
  if (!begin(env, info, 3, argv, &r)) return NULL;
  if (!r) return ret_bool(env, 0);
  DONE(r, fuse_reply_lseek(r->req, (off_t)u64_of(num_arg(env, argv[2]))));
  return ret_bool(env, 1);
}

napi_value vv_init_replies(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"replyErr", NULL, reply_err, NULL, NULL, NULL, napi_default, NULL},
      {"replyNone", NULL, reply_none, NULL, NULL, NULL, napi_default, NULL},
      {"replyEntry", NULL, reply_entry, NULL, NULL, NULL, napi_default, NULL},
      {"replyCreate", NULL, reply_create, NULL, NULL, NULL, napi_default, NULL},
      {"replyAttr", NULL, reply_attr, NULL, NULL, NULL, napi_default, NULL},
      {"replyOpen", NULL, reply_open, NULL, NULL, NULL, napi_default, NULL},
      {"replyData", NULL, reply_data, NULL, NULL, NULL, napi_default, NULL},
      {"replyWrite", NULL, reply_write, NULL, NULL, NULL, napi_default, NULL},
      {"replyReadlink", NULL, reply_readlink, NULL, NULL, NULL, napi_default, NULL},
      {"replyDir", NULL, reply_dir, NULL, NULL, NULL, napi_default, NULL},
      {"replyStatfs", NULL, reply_statfs, NULL, NULL, NULL, napi_default, NULL},
      {"replyLock", NULL, reply_lock, NULL, NULL, NULL, napi_default, NULL},
      {"replyLseek", NULL, reply_lseek, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
