/*
 * nfs-put URL FILE [CHUNK]: copies a local file to an NFS URL with libnfs, CHUNK bytes per write.
 * Why not nfs-cp: libnfs 4.0's NFSv4 encoder cannot encode a WRITE of more than about 4 KiB
 * ("ZDR error: Failed to encode COMPOUND4args"), and nfs-cp writes 1 MiB at a time, so nfs-cp
 * cannot write a file of 4 KiB or more over NFSv4 (over NFSv3 it can). This is the same library
 * as nfs-cp, a real client, with a write size its NFSv4 code can encode. Built by the export
 * tests with gcc against Debian's libnfs-dev.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <nfsc/libnfs.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: nfs-put URL FILE [CHUNK]\n");
		return 2;
	}
	size_t chunk = argc > 3 ? (size_t)atol(argv[3]) : 2048;
	struct nfs_context *nfs = nfs_init_context();
	struct nfs_url *url = nfs_parse_url_full(nfs, argv[1]);
	if (url == NULL) {
		fprintf(stderr, "bad url: %s\n", nfs_get_error(nfs));
		return 1;
	}
	if (nfs_mount(nfs, url->server, url->path) != 0) {
		fprintf(stderr, "mount %s:%s failed: %s\n", url->server, url->path, nfs_get_error(nfs));
		return 1;
	}
	int fd = open(argv[2], O_RDONLY);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	struct nfsfh *fh;
	if (nfs_open2(nfs, url->file, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fh) != 0) {
		fprintf(stderr, "open %s failed: %s\n", url->file, nfs_get_error(nfs));
		return 1;
	}
	char *buf = malloc(chunk);
	uint64_t off = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, chunk, (off_t)off);
		if (n < 0) {
			perror("read");
			return 1;
		}
		if (n == 0)
			break;
		ssize_t done = 0;
		while (done < n) {
			int w = nfs_pwrite(nfs, fh, off + done, n - done, buf + done);
			if (w <= 0) {
				fprintf(stderr, "write at %llu failed: %s\n", (unsigned long long)(off + done), nfs_get_error(nfs));
				return 1;
			}
			done += w;
		}
		off += (uint64_t)n;
	}
	if (nfs_fsync(nfs, fh) != 0 || nfs_close(nfs, fh) != 0) {
		fprintf(stderr, "fsync/close failed: %s\n", nfs_get_error(nfs));
		return 1;
	}
	printf("wrote %llu bytes\n", (unsigned long long)off);
	nfs_destroy_url(url);
	nfs_destroy_context(nfs);
	return 0;
}
