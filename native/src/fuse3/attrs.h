// Attributes answered on libfuse's thread (attrs.c).
#ifndef VMVAULT_FUSE3_ATTRS_H
#define VMVAULT_FUSE3_ATTRS_H

#include "session.h"

typedef struct vv_attrs vv_attrs;

// Answers a getattr of ino from the table JavaScript fills (setAttr); 1 when answered (the
// request is done), 0 when JavaScript must answer it.
int vv_attrs_answer(vv_sess *s, fuse_req_t req, uint64_t ino);
void vv_attrs_free(vv_sess *s);
napi_value vv_init_attrs(napi_env env, napi_value exports);

#endif
