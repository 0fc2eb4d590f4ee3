// Flushes of read-only handles answered on libfuse's thread (quiet.c).
#ifndef VMVAULT_FUSE3_QUIET_H
#define VMVAULT_FUSE3_QUIET_H

#include "session.h"

typedef struct vv_quiet vv_quiet;

// Answers a flush of handle fh when JavaScript marked it quiet (quietFlush) and no POSIX lock was
// ever taken on the mount; 1 when answered (the request is done), 0 when JavaScript must answer.
int vv_quiet_flush(vv_sess *s, fuse_req_t req, uint64_t fh);
// A release of fh is on its way to JavaScript: fh is no longer marked (JavaScript may reuse it).
void vv_quiet_release(vv_sess *s, uint64_t fh);
void vv_quiet_free(vv_sess *s);
napi_value vv_init_quiet(napi_env env, napi_value exports);

#endif
