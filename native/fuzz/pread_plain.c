// vv_pread without the addon's fault seam (native/src/read_seam.c needs Node's headers): the
// fuzz harnesses read through plain pread(2).
#include <unistd.h>

#include "../src/read_seam.h"

ssize_t vv_pread(int fd, void *buf, size_t n, off_t off) { return pread(fd, buf, n, off); }
