// Where a request's time goes between libfuse and JavaScript (reqtime.c): per kind, from
// libfuse's receipt to the reply, split at the queue's hand-off to the JS thread.
#ifndef VMVAULT_FUSE3_REQTIME_H
#define VMVAULT_FUSE3_REQTIME_H

#include "session.h"

// Monotonic nanoseconds (vDSO clock_gettime: tens of ns).
uint64_t vv_now_ns(void);
// r is answered now (called by vv_take on the JS thread, the only thread that answers).
void vv_reqtime_done(vv_sess *s, const vv_req *r);
void vv_reqtime_free(vv_sess *s);
napi_value vv_init_reqtime(napi_env env, napi_value exports);

#endif
