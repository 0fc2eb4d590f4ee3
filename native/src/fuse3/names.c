// The names of directories JavaScript vouches for, so a lookup of a name that does not exist in
// one is answered "no such name" on libfuse's worker thread: no queue, no hop to the JavaScript
// thread and back. rsync asks 4 times per file for names that do not exist yet (its generator's
// stat, its receiver's open of a basis file, the O_EXCL create of its temporary name and the
// rename's target, the last two always asked whatever the kernel caches): a quarter of the
// requests it made reached JavaScript (tools/PERFORMANCE.md, "rsync5").
//
// JavaScript hands over a directory's whole listing (setNames) only when it holds it current
// (the namespace's cached listing), and adds each name made in it (addName) synchronously
// before the change that made it is acknowledged (src/fuse/ll-names.ts, Meta.watchTxns). The
// set may hold more names than the directory (a removed name not yet removed here): such a
// lookup goes to JavaScript, which is only slower. A lookup answered here while a name is being
// made was concurrent with that change, so either answer is right.
//
// The kernel may keep the answer (the timeout setNames was given): a name made by anything but
// the kernel's own request (a restore, a fastcopy) in a held directory has its entry invalidated
// by JavaScript (ll-filesystem.ts, madeElsewhere), as its own negative answers are. Names the
// mount shows without a stored entry
// (".snapshots" in a share's top, the catalog's "*.files") and "." and ".." always go to
// JavaScript.
//
// The table of directories is direct-mapped by node id: a newer directory may take an older
// one's slot (that one's lookups then go to JavaScript again; addName tells JavaScript so).
// Each directory's names are an open-addressed set.
#define _GNU_SOURCE
#include "names.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "../napi_util.h"

#define DIR_BITS 12
#define NDIRS (1u << DIR_BITS)
#define NAME_MAX_BYTES 255

typedef struct {
  uint64_t hash;  // 0: empty slot; 1: a removed name (tombstone); else the name's hash
  char *name;
} vv_name_slot;

typedef struct {
  uint64_t ino;  // 0: empty (node id 0 is never a node)
  uint32_t used, tombs, cap;  // cap: a power of two, or 0 (no slots yet)
  vv_name_slot *slots;
} vv_name_dir;

struct vv_names {
  pthread_mutex_t mu;
  vv_name_dir dirs[NDIRS];
  double answered;  // lookups answered here (stats)
  double timeout;   // seconds the kernel may keep an answer (the last setNames')
};

static uint32_t dir_slot(uint64_t ino) { return (uint32_t)((ino * 0x9E3779B97F4A7C15ull) >> (64 - DIR_BITS)); }

// FNV-1a, kept clear of the two reserved values.
static uint64_t name_hash(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  return h < 2 ? h + 2 : h;
}

static vv_names *names_of(vv_sess *s) {
  // Made on the JS thread (setNames) before any directory is held; read by libfuse's threads after.
  return __atomic_load_n(&s->names, __ATOMIC_ACQUIRE);
}

static void dir_empty(vv_name_dir *d) {
  for (uint32_t i = 0; i < d->cap; i++)
    if (d->slots[i].hash > 1) free(d->slots[i].name);
  free(d->slots);
  memset(d, 0, sizeof *d);
}

// The slot holding `name`, or NULL.
static vv_name_slot *dir_find(const vv_name_dir *d, const char *name, size_t len, uint64_t h) {
  if (d->cap == 0) return NULL;
  uint32_t mask = d->cap - 1;
  for (uint32_t i = (uint32_t)h & mask, k = 0; k < d->cap; i = (i + 1) & mask, k++) {
    vv_name_slot *e = &d->slots[i];
    if (e->hash == 0) return NULL;
    if (e->hash == h && strncmp(e->name, name, len) == 0 && e->name[len] == 0) return e;
  }
  return NULL;
}

// Puts an owned name into a set with room (no duplicate check).
static void dir_put(vv_name_dir *d, char *name, uint64_t h) {
  uint32_t mask = d->cap - 1;
  uint32_t i = (uint32_t)h & mask;
  while (d->slots[i].hash > 1) i = (i + 1) & mask;
  if (d->slots[i].hash == 1) d->tombs--;
  d->slots[i].hash = h;
  d->slots[i].name = name;
  d->used++;
}

// Room for one more name (growing and dropping tombstones); 0 when out of memory.
static int dir_room(vv_name_dir *d) {
  if (d->cap != 0 && (d->used + d->tombs + 1) * 4 <= d->cap * 3) return 1;
  uint32_t cap = d->cap ? d->cap : 8;
  while ((d->used + 1) * 2 > cap) cap *= 2;
  vv_name_slot *slots = calloc(cap, sizeof *slots);
  if (!slots) return 0;
  vv_name_dir old = *d;
  d->slots = slots;
  d->cap = cap;
  d->used = d->tombs = 0;
  for (uint32_t i = 0; i < old.cap; i++)
    if (old.slots[i].hash > 1) dir_put(d, old.slots[i].name, old.slots[i].hash);
  free(old.slots);
  return 1;
}

// Adds a name to a held directory; 0 when out of memory (the caller drops the directory).
static int dir_add(vv_name_dir *d, const char *name, size_t len) {
  uint64_t h = name_hash(name, len);
  if (dir_find(d, name, len, h)) return 1;
  if (!dir_room(d)) return 0;
  char *copy = strndup(name, len);
  if (!copy) return 0;
  dir_put(d, copy, h);
  return 1;
}

static int always_asked(const char *name, size_t len) {
  if (len == 0 || len > NAME_MAX_BYTES) return 1;
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, ".snapshots") == 0) return 1;
  return len >= 6 && memcmp(name + len - 6, ".files", 6) == 0;
}

int vv_names_answer(vv_sess *s, fuse_req_t req, uint64_t parent, const char *name) {
  vv_names *t = names_of(s);
  if (!t || parent == 0) return 0;
  size_t len = strlen(name);
  if (always_asked(name, len)) return 0;
  uint64_t h = name_hash(name, len);
  int absent = 0;
  double timeout = 0;
  pthread_mutex_lock(&t->mu);
  vv_name_dir *d = &t->dirs[dir_slot(parent)];
  if (d->ino == parent && !dir_find(d, name, len, h)) {
    absent = 1;
    timeout = t->timeout;
    t->answered++;
  }
  pthread_mutex_unlock(&t->mu);
  if (!absent) return 0;
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);  // node id 0: no such name, kept by the kernel for entry_timeout
  e.entry_timeout = timeout;
  fuse_reply_entry(req, &e);
  return 1;
}

void vv_names_free(vv_sess *s) {
  vv_names *t = s->names;
  if (!t) return;
  for (uint32_t i = 0; i < NDIRS; i++) dir_empty(&t->dirs[i]);
  pthread_mutex_destroy(&t->mu);
  free(t);
  s->names = NULL;
}

static int ino_arg(napi_env env, napi_value v, uint64_t *out) {
  bool lossless;
  return napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok && lossless && *out != 0;
}

// A name argument as UTF-8 into buf (NAME_MAX_BYTES + 1 bytes); its length, or -1 with an
// error pending (not a string) or -2 (too long: never a name of a stored directory).
static ssize_t name_arg(napi_env env, napi_value v, char *buf) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    vv_fail_type(env, "name must be a string");
    return -1;
  }
  if (len > NAME_MAX_BYTES) return -2;
  napi_get_value_string_utf8(env, v, buf, NAME_MAX_BYTES + 1, &len);
  return (ssize_t)len;
}

static napi_value boolean(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

// setNames(handle, dir: bigint, names: string[], timeout: number) -> bool: every name of dir;
// lookups of any other name in it are answered "no such name" here from now on, until
// dropNames, and the kernel may keep that answer for `timeout` seconds. False: not taken (out of
// memory, or a name that cannot be held).
static napi_value js_set_names(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!vv_args(env, info, 4, argv, "setNames(handle, dir, names, timeout)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino;
  if (!ino_arg(env, argv[1], &ino)) return vv_fail_type(env, "dir must be a non-zero bigint");
  bool is;
  uint32_t n;
  if (napi_is_array(env, argv[2], &is) != napi_ok || !is || napi_get_array_length(env, argv[2], &n) != napi_ok) {
    return vv_fail_type(env, "names must be an array of strings");
  }
  double timeout;
  if (napi_get_value_double(env, argv[3], &timeout) != napi_ok || !(timeout >= 0 && timeout <= 3600)) {
    return vv_fail_range(env, "timeout must be 0..3600 seconds");
  }
  vv_names *t = s->names;
  if (!t) {
    t = calloc(1, sizeof *t);
    if (!t) return boolean(env, false);
    pthread_mutex_init(&t->mu, NULL);
    __atomic_store_n(&s->names, t, __ATOMIC_RELEASE);
  }
  // Built aside, then swapped in: lookups meanwhile see the slot's old state.
  vv_name_dir d;
  memset(&d, 0, sizeof d);
  d.ino = ino;
  char buf[NAME_MAX_BYTES + 1];
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok) {
      dir_empty(&d);
      return NULL;
    }
    ssize_t len = name_arg(env, v, buf);
    if (len < 0 || !dir_add(&d, buf, (size_t)len)) {
      dir_empty(&d);
      return len == -1 ? NULL : boolean(env, false);
    }
  }
  pthread_mutex_lock(&t->mu);
  t->timeout = timeout;
  vv_name_dir old = t->dirs[dir_slot(ino)];
  t->dirs[dir_slot(ino)] = d;
  pthread_mutex_unlock(&t->mu);
  dir_empty(&old);
  return boolean(env, true);
}

// addName(handle, dir: bigint, name: string) -> bool: dir has this name now. False: dir is not
// held (never given, dropped, or its slot taken by another), or could not take the name, in
// which case dir is dropped (its lookups go to JavaScript).
static napi_value js_add_name(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "addName(handle, dir, name)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino;
  if (!ino_arg(env, argv[1], &ino)) return vv_fail_type(env, "dir must be a non-zero bigint");
  char buf[NAME_MAX_BYTES + 1];
  ssize_t len = name_arg(env, argv[2], buf);
  if (len == -1) return NULL;
  vv_names *t = s->names;
  if (!t) return boolean(env, false);
  bool held = false;
  vv_name_dir gone;
  memset(&gone, 0, sizeof gone);
  pthread_mutex_lock(&t->mu);
  vv_name_dir *d = &t->dirs[dir_slot(ino)];
  if (d->ino == ino) {
    held = len >= 0 && dir_add(d, buf, (size_t)len);
    if (!held) {
      gone = *d;
      memset(d, 0, sizeof *d);
    }
  }
  pthread_mutex_unlock(&t->mu);
  dir_empty(&gone);
  return boolean(env, held);
}

// removeName(handle, dir: bigint, name: string): dir no longer has this name (its lookups may
// be answered here again).
static napi_value js_remove_name(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "removeName(handle, dir, name)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino;
  if (!ino_arg(env, argv[1], &ino)) return vv_fail_type(env, "dir must be a non-zero bigint");
  char buf[NAME_MAX_BYTES + 1];
  ssize_t len = name_arg(env, argv[2], buf);
  if (len == -1) return NULL;
  vv_names *t = s->names;
  if (!t || len < 0) return NULL;
  char *freed = NULL;
  pthread_mutex_lock(&t->mu);
  vv_name_dir *d = &t->dirs[dir_slot(ino)];
  if (d->ino == ino) {
    vv_name_slot *e = dir_find(d, buf, (size_t)len, name_hash(buf, (size_t)len));
    if (e) {
      freed = e->name;
      e->name = NULL;
      e->hash = 1;
      d->used--;
      d->tombs++;
    }
  }
  pthread_mutex_unlock(&t->mu);
  free(freed);
  return NULL;
}

// dropNames(handle, dir: bigint): lookups in dir go to JavaScript from now on.
static napi_value js_drop_names(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "dropNames(handle, dir)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  uint64_t ino;
  if (!ino_arg(env, argv[1], &ino)) return vv_fail_type(env, "dir must be a non-zero bigint");
  vv_names *t = s->names;
  if (!t) return NULL;
  vv_name_dir gone;
  memset(&gone, 0, sizeof gone);
  pthread_mutex_lock(&t->mu);
  vv_name_dir *d = &t->dirs[dir_slot(ino)];
  if (d->ino == ino) {
    gone = *d;
    memset(d, 0, sizeof *d);
  }
  pthread_mutex_unlock(&t->mu);
  dir_empty(&gone);
  return NULL;
}

// clearNames(handle): every lookup goes to JavaScript from now on.
static napi_value js_clear_names(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "clearNames(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  vv_names *t = s->names;
  if (!t) return NULL;
  // Emptied under the lock, freed after it: no lookup waits on the frees.
  vv_name_dir *gone = malloc(sizeof t->dirs);
  pthread_mutex_lock(&t->mu);
  if (gone) memcpy(gone, t->dirs, sizeof t->dirs);
  else
    for (uint32_t i = 0; i < NDIRS; i++) dir_empty(&t->dirs[i]);
  memset(t->dirs, 0, sizeof t->dirs);
  pthread_mutex_unlock(&t->mu);
  if (gone) {
    for (uint32_t i = 0; i < NDIRS; i++) dir_empty(&gone[i]);
    free(gone);
  }
  return NULL;
}

// nameHits(handle) -> lookups answered here so far.
static napi_value js_name_hits(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!vv_args(env, info, 1, argv, "nameHits(handle)")) return NULL;
  vv_sess *s = vv_sess_of(env, argv[0]);
  if (!s) return NULL;
  double n = 0;
  vv_names *t = s->names;
  if (t) {
    pthread_mutex_lock(&t->mu);
    n = t->answered;
    pthread_mutex_unlock(&t->mu);
  }
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

napi_value vv_init_names(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setNames", NULL, js_set_names, NULL, NULL, NULL, napi_default, NULL},
      {"addName", NULL, js_add_name, NULL, NULL, NULL, napi_default, NULL},
      {"removeName", NULL, js_remove_name, NULL, NULL, NULL, napi_default, NULL},
      {"dropNames", NULL, js_drop_names, NULL, NULL, NULL, napi_default, NULL},
      {"clearNames", NULL, js_clear_names, NULL, NULL, NULL, napi_default, NULL},
      {"nameHits", NULL, js_name_hits, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
