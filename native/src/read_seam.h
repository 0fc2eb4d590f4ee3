// The read fault seam of the addon: every pread of container bytes goes through vv_pread, so
// tests can make it fail with EIO, return short, or hit an early end of file, on chosen
// descriptors, without a failing disk (src/store/container/file-io.ts is the seam's other
// half: the store's fault plan decides, the engine hands the decision down per descriptor).
#ifndef VMVAULT_READ_SEAM_H
#define VMVAULT_READ_SEAM_H

#include <sys/types.h>

// Fault kinds, as src/store/container/file-io.ts numbers them.
enum { VV_FAULT_NONE = 0, VV_FAULT_EIO = 1, VV_FAULT_SHORT = 2, VV_FAULT_EOF = 3 };

// pread(2), unless a fault is set for fd: EIO fails with errno EIO; SHORT reads at most half
// of what was asked (a legal partial read: callers must loop); EOF returns 0.
ssize_t vv_pread(int fd, void *buf, size_t n, off_t off);

// The fuzz harnesses (native/fuzz/) build the C code without Node: they define VV_NO_NAPI and
// link a plain vv_pread (native/fuzz/pread_plain.c).
#ifndef VV_NO_NAPI
#include <node_api.h>
// Registers setReadFaults(fds: Int32Array, kinds: Int32Array): replaces the fault table
// (empty arrays clear it). Tests only.
napi_value vv_register_read_seam(napi_env env, napi_value exports);
#endif

#endif
