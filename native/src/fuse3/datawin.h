// Data reads answered on libfuse's thread from decoded read-ahead windows (datawin.c).
#ifndef VMVAULT_FUSE3_DATAWIN_H
#define VMVAULT_FUSE3_DATAWIN_H

#include "session.h"

typedef struct vv_datawin vv_datawin;

// Answers a read from a window registered for (ino, fh) when [off, off + size) lies in one and
// a later window of the same open is registered too; 1 when answered, 0 when JavaScript must.
int vv_datawin_answer(vv_sess *s, fuse_req_t req, uint64_t ino, uint64_t fh, int64_t off, size_t size);
void vv_datawin_free(vv_sess *s);
napi_value vv_init_datawin(napi_env env, napi_value exports);

#endif
