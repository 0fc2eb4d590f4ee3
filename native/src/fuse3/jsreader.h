// The JS thread as the reader of /dev/fuse (jsreader.c): requests read and answered without
// libfuse's worker threads, so a request wakes one thread of ours, not two.
#ifndef VMVAULT_FUSE3_JSREADER_H
#define VMVAULT_FUSE3_JSREADER_H
#include "session.h"

// Starts polling the session's fd on the JS thread's loop; 0 or an errno.
int vv_jsreader_start(napi_env env, vv_sess *s, napi_value on_batch);
// Stops polling (JS thread; before the fd is closed). Idempotent.
void vv_jsreader_stop(vv_sess *s);
// An answer freed a slot (JS thread): reading resumes if it paused for want of one.
void vv_jsreader_slot_freed(vv_sess *s);
// Whether the calling thread is the session's reader (submit then leaves delivery to it).
int vv_jsreader_here(vv_sess *s);
#endif
