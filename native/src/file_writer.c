// A file writer thread for a restore (src/files/file-writer.ts): writes whole chunks of a
// target file in the order they are handed in, on a thread of its own, with O_DIRECT where it
// can, leaving all-zero 64 KiB blocks as holes.
//
// Why a thread of its own: the restore is bound by its writes (the disk), and a write queued on
// the libuv pool waited there behind the reads' decode jobs (8 per 4 MiB read, 4 reads in
// flight), then for the JavaScript thread to issue the next one. Here the next chunk is already
// queued when a write returns, so the disk is never left idle while data is ready.
// Why O_DIRECT: a buffered write copies every byte into the page cache (the largest single CPU
// cost of a restore), then the flusher writes them and the final fsync waits for the rest. A
// direct write hands the caller's memory to the device. It needs the memory, offset and length
// aligned to the logical block: addressAlignment() lets JavaScript align its buffers; what is not
// aligned (a file's last partial block) goes through the ordinary descriptor, followed by
// sync_file_range(SYNC_FILE_RANGE_WRITE) so the final fsync finds little dirty. A file system
// that refuses a direct write with EINVAL gets ordinary writes from then on.
// Durability is the caller's fsync, as before (a direct write may sit in the device's cache and
// its block allocation is journaled only at fsync).
//
//   addressAlignment(buf, align) -> offset into buf at which its memory is aligned
//   fileWriterOpen(directFd, plainFd, onDone) -> handle   (directFd -1: ordinary writes only)
//   fileWriterWrite(handle, buf, position, id)             onDone(id, errno, directBytes, plainBytes)
//   fileWriterClose(handle, onClosed)                      after every queued write was done
// The caller keeps `buf` unchanged until its onDone, and the descriptors open until onClosed.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "napi_util.h"

#define FW_ALIGN 4096
#define FW_SPARSE (64 * 1024)

typedef struct fw_job {
  struct fw_job *next;
  uint8_t *data;
  size_t len;
  int64_t pos;
  double id;
  napi_ref buf;  // keeps the caller's memory alive until done
  int err;
  uint64_t direct, plain;
} fw_job;

typedef struct {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  fw_job *head, *tail;
  int closing;
  int direct_fd, plain_fd;
  int sticky;  // the first write error: later writes fail with it, unwritten
  napi_threadsafe_function tsfn;
  napi_ref on_done;
  napi_ref on_closed;
  int has_thread;
} fw_writer;

static int all_zero(const uint8_t *p, size_t n) {
  // 64-bit words (the blocks are 64 KiB, the buffer's start 4 KiB aligned or not: memcpy keeps
  // it legal for any alignment and compiles to plain loads).
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t a, b, c, d;
    memcpy(&a, p + i, 8);
    memcpy(&b, p + i + 8, 8);
    memcpy(&c, p + i + 16, 8);
    memcpy(&d, p + i + 24, 8);
    if (a | b | c | d) return 0;
  }
  for (; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static int write_all(int fd, const uint8_t *p, size_t n, int64_t pos) {
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, (off_t)pos);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    p += w;
    n -= (size_t)w;
    pos += w;
  }
  return 0;
}

// One run of non-zero blocks: its whole blocks direct when memory and position are aligned,
// the rest (a file's last partial block) the ordinary way.
static int write_run(fw_writer *w, fw_job *j, const uint8_t *p, size_t n, int64_t pos) {
  size_t whole = n - n % FW_ALIGN;
  if (w->direct_fd >= 0 && whole > 0 && ((uintptr_t)p % FW_ALIGN) == 0 && (pos % FW_ALIGN) == 0) {
    int e = write_all(w->direct_fd, p, whole, pos);
    if (e == 0) {
      j->direct += whole;
      p += whole;
      n -= whole;
      pos += (int64_t)whole;
      if (n == 0) return 0;
    } else if (e != EINVAL) {
      return e;
    } else {
      // Refused (a larger logical block, or no O_DIRECT after all): ordinary writes from now
      // on, this run included (a part the direct write may have written is written again).
      w->direct_fd = -1;
    }
  }
  int e = write_all(w->plain_fd, p, n, pos);
  if (e) return e;
  j->plain += n;
  // A hint only (the caller's fsync is what counts): start the disk writes of what is dirty.
  (void)sync_file_range(w->plain_fd, (off64_t)pos, (off64_t)n, SYNC_FILE_RANGE_WRITE);
  return 0;
}

static void run_job(fw_writer *w, fw_job *j) {
  if (w->sticky) {
    j->err = w->sticky;
    return;
  }
  size_t run = SIZE_MAX;
  for (size_t i = 0; i < j->len; i += FW_SPARSE) {
    size_t n = j->len - i < FW_SPARSE ? j->len - i : FW_SPARSE;
    int zero = all_zero(j->data + i, n);
    if (!zero && run == SIZE_MAX) run = i;
    if (zero && run != SIZE_MAX) {
      if ((j->err = write_run(w, j, j->data + run, i - run, j->pos + (int64_t)run))) break;
      run = SIZE_MAX;
    }
  }
  if (!j->err && run != SIZE_MAX) j->err = write_run(w, j, j->data + run, j->len - run, j->pos + (int64_t)run);
  if (j->err) w->sticky = j->err;
}

static void *fw_main(void *arg) {
  fw_writer *w = arg;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    while (!w->head && !w->closing) pthread_cond_wait(&w->cv, &w->mu);
    fw_job *j = w->head;
    if (j) {
      w->head = j->next;
      if (!w->head) w->tail = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    if (!j) break;  // closing, and nothing left
    run_job(w, j);
    napi_call_threadsafe_function(w->tsfn, j, napi_tsfn_blocking);
  }
  napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
  return NULL;
}

// On the JavaScript thread: a job done.
static void fw_call_js(napi_env env, napi_value cb, void *context, void *data) {
  fw_writer *w = context;
  fw_job *j = data;
  if (env) {
    napi_value fn, undef, argv[4];
    napi_get_reference_value(env, w->on_done, &fn);
    napi_get_undefined(env, &undef);
    napi_create_double(env, j->id, &argv[0]);
    napi_create_int32(env, j->err, &argv[1]);
    napi_create_double(env, (double)j->direct, &argv[2]);
    napi_create_double(env, (double)j->plain, &argv[3]);
    napi_delete_reference(env, j->buf);
    napi_call_function(env, undef, fn, 4, argv, NULL);
  }
  (void)cb;
  free(j);
}

// On the JavaScript thread, once the thread released the function (every job done).
static void fw_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  fw_writer *w = data;
  if (w->has_thread) pthread_join(w->thread, NULL);
  napi_value fn = NULL, undef;
  if (w->on_closed) napi_get_reference_value(env, w->on_closed, &fn);
  napi_delete_reference(env, w->on_done);
  if (w->on_closed) napi_delete_reference(env, w->on_closed);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
  if (fn) {
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, fn, 0, NULL, NULL);
  }
}

static napi_value fw_open(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!vv_args(env, info, 3, argv, "fileWriterOpen takes a direct fd (or -1), a plain fd and a callback")) return NULL;
  int32_t dfd, pfd;
  if (napi_get_value_int32(env, argv[0], &dfd) != napi_ok || napi_get_value_int32(env, argv[1], &pfd) != napi_ok) return vv_fail_type(env, "the descriptors must be numbers");
  if (pfd < 0) return vv_fail_range(env, "the plain descriptor must be open");
  napi_valuetype t;
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function) return vv_fail_type(env, "the last argument must be a callback");
  fw_writer *w = calloc(1, sizeof *w);
  if (!w) return vv_fail_range(env, "out of memory");
  w->direct_fd = dfd < 0 ? -1 : dfd;
  w->plain_fd = pfd;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  napi_value name;
  napi_create_string_utf8(env, "vmvault:fileWriter", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[2], 1, &w->on_done) != napi_ok) goto fail;
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, w, fw_finalize, w, fw_call_js, &w->tsfn) != napi_ok) {
    napi_delete_reference(env, w->on_done);
    goto fail;
  }
  if (pthread_create(&w->thread, NULL, fw_main, w) != 0) {
    // No thread to release the function: release it here; its finalizer frees the writer.
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
    return vv_fail_range(env, "fileWriterOpen: could not start the writer thread");
  }
  w->has_thread = 1;
  napi_value ext;
  if (napi_create_external(env, w, NULL, NULL, &ext) != napi_ok) return NULL;
  return ext;
fail:
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
  return vv_fail_range(env, "fileWriterOpen: could not set up the writer");
}

static fw_writer *writer_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok || !p) {
    vv_fail_type(env, "not a file writer");
    return NULL;
  }
  return p;
}

static napi_value fw_write(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!vv_args(env, info, 4, argv, "fileWriterWrite takes a writer, a Buffer, a position and an id")) return NULL;
  fw_writer *w = writer_of(env, argv[0]);
  if (!w) return NULL;
  size_t len;
  uint8_t *data = vv_typed(env, argv[1], napi_uint8_array, "the data must be a Buffer", &len);
  if (!data) return NULL;
  int64_t pos;
  double id;
  if (napi_get_value_int64(env, argv[2], &pos) != napi_ok || pos < 0) return vv_fail_type(env, "the position must be a number >= 0");
  if (napi_get_value_double(env, argv[3], &id) != napi_ok) return vv_fail_type(env, "the id must be a number");
  fw_job *j = calloc(1, sizeof *j);
  if (!j) return vv_fail_range(env, "out of memory");
  j->data = data;
  j->len = len;
  j->pos = pos;
  j->id = id;
  if (napi_create_reference(env, argv[1], 1, &j->buf) != napi_ok) {
    free(j);
    return vv_fail_range(env, "fileWriterWrite: could not hold the buffer");
  }
  pthread_mutex_lock(&w->mu);
  int closing = w->closing;
  if (!closing) {
    if (w->tail) w->tail->next = j;
    else w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  if (closing) {
    napi_delete_reference(env, j->buf);
    free(j);
    return vv_fail_range(env, "fileWriterWrite: the writer is closed");
  }
  return NULL;
}

static napi_value fw_close(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "fileWriterClose takes a writer and a callback")) return NULL;
  fw_writer *w = writer_of(env, argv[0]);
  if (!w) return NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) return vv_fail_type(env, "the last argument must be a callback");
  pthread_mutex_lock(&w->mu);
  int again = w->closing;
  pthread_mutex_unlock(&w->mu);
  if (again) return vv_fail_range(env, "fileWriterClose: already closed");
  if (napi_create_reference(env, argv[1], 1, &w->on_closed) != napi_ok) return vv_fail_range(env, "fileWriterClose: could not hold the callback");
  pthread_mutex_lock(&w->mu);
  w->closing = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static napi_value address_alignment(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!vv_args(env, info, 2, argv, "addressAlignment takes a Buffer and an alignment")) return NULL;
  size_t len;
  uint8_t *data = vv_typed(env, argv[0], napi_uint8_array, "the first argument must be a Buffer", &len);
  if (!data) return NULL;
  uint32_t align;
  if (napi_get_value_uint32(env, argv[1], &align) != napi_ok) return vv_fail_type(env, "the alignment must be a number");
  if (align == 0 || (align & (align - 1)) != 0 || align > (1u << 20)) return vv_fail_range(env, "the alignment must be a power of two up to 1 MiB");
  uint32_t off = (uint32_t)((align - ((uintptr_t)data & (align - 1))) & (align - 1));
  napi_value r;
  napi_create_uint32(env, off, &r);
  return r;
}

napi_value vv_register_file_writer(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } fns[] = {{"addressAlignment", address_alignment}, {"fileWriterOpen", fw_open}, {"fileWriterWrite", fw_write}, {"fileWriterClose", fw_close}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &fn) != napi_ok) return NULL;
    if (napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok) return NULL;
  }
  return exports;
}
