// Reads of known holes answered on libfuse's thread (holes.c).
#ifndef VMVAULT_FUSE3_HOLES_H
#define VMVAULT_FUSE3_HOLES_H

#include "session.h"

typedef struct vv_holes vv_holes;

// Answers a read with zeros when [off, off + size) lies in a zero run registered for (ino, fh);
// 1 when answered (the request is done), 0 when JavaScript must answer it.
int vv_holes_answer(vv_sess *s, fuse_req_t req, uint64_t ino, uint64_t fh, int64_t off, size_t size);
void vv_holes_free(vv_sess *s);
napi_value vv_init_holes(napi_env env, napi_value exports);

#endif
