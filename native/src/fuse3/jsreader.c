// The JS thread as the reader of /dev/fuse (LlMountOptions.jsReader): the session's fd is made
// non-blocking and polled by the JS thread's own event loop; when it is readable, what is there
// (up to READ_BURST requests) is read and processed by libfuse on this thread, and the queue
// (requests.c) is handed to JavaScript in the same turn, inside a callback scope so promise
// continuations run before the loop goes on. No libfuse worker thread is started: a request
// wakes the JS thread alone, and its answer the caller, where the worker loop costs a third
// wake-up (the worker, which then wakes the JS thread). An rsync through the mount spent about
// half its system time and a third of its CPU on those (tools/PERFORMANCE.md, rsync7).
//
// What the addon answers in C (absent names, directory attributes, holes, read-ahead windows,
// quiet flushes) is then answered here too, between batches. Replies are written to the
// session's fd, the one they were read from (libfuse's process_buf without a channel). The JS
// thread never waits: reading pauses (the poll stops) while fewer than 2 request slots are free,
// and resumes at the answer that frees one (vv_take -> vv_jsreader_slot_freed).
#define _GNU_SOURCE
#include "jsreader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct vv_jsreader {
  uv_poll_t poll;
  vv_sess *s;
  napi_env env;
  napi_ref cb;
  napi_ref resource;
  napi_async_context actx;
  struct fuse_buf buf;
  int polling;
  int paused;  // stopped until an answer frees slots (vv_jsreader_slot_freed)
} vv_jsreader;

static __thread vv_sess *reading;

int vv_jsreader_here(vv_sess *s) { return reading == s; }

// At most this many requests per wake-up before JavaScript gets what was read.
#define READ_BURST 64

static void on_readable(uv_poll_t *h, int status, int events) {
  vv_jsreader *jr = h->data;
  vv_sess *s = jr->s;
  if (status < 0) return;
  reading = s;
  for (int i = 0; i < READ_BURST && !fuse_session_exited(s->se); i++) {
    // Never wait for a slot on the JS thread: only JavaScript's answers free them. Reading
    // pauses (the poll is level-triggered: it would spin) until one does.
    pthread_mutex_lock(&s->mu);
    uint32_t nfree = s->nfree;
    pthread_mutex_unlock(&s->mu);
    if (nfree < 2) {
      uv_poll_stop(&jr->poll);
      jr->paused = 1;
      break;
    }
    int res = fuse_session_receive_buf(s->se, &jr->buf);
    if (res == -EAGAIN || res == -EINTR) break;
    if (res <= 0) break;
    s->js_reads++;
    fuse_session_process_buf(s->se, &jr->buf);
  }
  reading = NULL;
  int exited = fuse_session_exited(s->se);
  napi_env env = jr->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, res;
  napi_get_reference_value(env, jr->cb, &cb);
  napi_get_reference_value(env, jr->resource, &res);
  napi_callback_scope cs;
  napi_open_callback_scope(env, res, jr->actx, &cs);
  vv_call_js(env, cb, s, NULL);
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, scope);
  if (exited) vv_jsreader_stop(s);
}

int vv_jsreader_start(napi_env env, vv_sess *s, napi_value on_batch) {
  vv_jsreader *jr = calloc(1, sizeof *jr);
  if (!jr) return ENOMEM;
  jr->s = s;
  jr->env = env;
  int fd = fuse_session_fd(s->se);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  // The poll first: a failure then leaves nothing behind (no references, no async context).
  int r = uv_poll_init(loop, &jr->poll, fd);
  if (r != 0) {
    free(jr);
    return -r;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  napi_create_reference(env, on_batch, 1, &jr->cb);
  napi_value res, name;
  napi_create_object(env, &res);
  napi_create_reference(env, res, 1, &jr->resource);
  napi_create_string_utf8(env, "vmvault-fuse3-reader", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, res, name, &jr->actx);
  jr->poll.data = jr;
  uv_poll_start(&jr->poll, UV_READABLE, on_readable);
  jr->polling = 1;
  s->jsreader = jr;
  return 0;
}

void vv_jsreader_slot_freed(vv_sess *s) {
  vv_jsreader *jr = s->jsreader;
  if (!jr || !jr->paused || !jr->polling || reading == s) return;
  jr->paused = 0;
  uv_poll_start(&jr->poll, UV_READABLE, on_readable);
}

static void on_closed(uv_handle_t *h) {
  vv_jsreader *jr = h->data;
  free(jr->buf.mem);
  free(jr);
}

void vv_jsreader_stop(vv_sess *s) {
  vv_jsreader *jr = s->jsreader;
  if (!jr || !jr->polling) return;
  jr->polling = 0;
  uv_poll_stop(&jr->poll);
  napi_async_destroy(jr->env, jr->actx);
  napi_delete_reference(jr->env, jr->cb);
  napi_delete_reference(jr->env, jr->resource);
  s->jsreader = NULL;
  uv_close((uv_handle_t *)&jr->poll, on_closed);
}
