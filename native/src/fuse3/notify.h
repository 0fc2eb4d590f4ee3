// Dentry invalidation on a thread of its own (notify.c): the kernel's answer to a notification
// can wait on a directory lock that a request waiting for JavaScript holds.
#ifndef VMVAULT_FUSE3_NOTIFY_H
#define VMVAULT_FUSE3_NOTIFY_H

#include "session.h"

// Stops and joins the notification thread, if one was started (after detach_mount: a write
// blocked on a directory lock returns once the connection is aborted). Never on the JS thread.
void vv_notify_stop(vv_sess *s);
napi_value vv_init_notify(napi_env env, napi_value exports);

#endif
