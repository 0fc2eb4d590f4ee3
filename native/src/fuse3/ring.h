// The write ring (ring.c): write payloads copied into one long-lived region JavaScript sees as
// views, given back explicitly instead of by the garbage collector.
#ifndef VMVAULT_FUSE3_RING_H
#define VMVAULT_FUSE3_RING_H

#include <node_api.h>
#include <stddef.h>

#define VV_RING_BLOCK (1u << 20)
#define VV_RING_BLOCKS 128u
#define VV_RING_MIN (64u << 10)

// A free block for a payload of len bytes, or NULL (too small or large, or none free: the
// caller falls back to its own allocation). Any thread.
void *vv_ring_take(size_t len);
// The block p points into, or -1 when p is not in the ring.
int vv_ring_slot(const void *p);
// Gives block `slot` back; 0 when it was not taken (a second release is ignored). Any thread.
int vv_ring_give(int slot);
napi_value vv_init_ring(napi_env env, napi_value exports);

#endif
