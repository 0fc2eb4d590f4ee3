// Names of directories answered on libfuse's thread (names.c).
#ifndef VMVAULT_FUSE3_NAMES_H
#define VMVAULT_FUSE3_NAMES_H

#include "session.h"

typedef struct vv_names vv_names;

// Answers a lookup of `name` in `parent` as "no such name" when JavaScript has handed over
// every name of `parent` (setNames) and `name` is not one of them; 1 when answered (the request
// is done), 0 when JavaScript must answer it.
int vv_names_answer(vv_sess *s, fuse_req_t req, uint64_t parent, const char *name);
void vv_names_free(vv_sess *s);
napi_value vv_init_names(napi_env env, napi_value exports);

#endif
