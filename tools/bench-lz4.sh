#!/usr/bin/env bash
# LZ4: the hand-written codec the addon had (native/bench/lz4_handwritten.c) against Debian's
# liblz4 (which the addon now links, native/src/lz4.c), on the same data in one run, one call
# per 8 KiB segment as the store compresses (its average segment), and per 64 KiB.
#
#   tools/bench-lz4.sh [rounds]      (npm run bench:lz4; default 9 rounds, best of them)
#   VMVAULT_BENCH_IMAGE=path.raw     a VM image to take a slice from (default: the first
#                                    /work/vmimages/*.raw, if any)
#
# Data (64 MB each): a VM image's first 64 MB of non-zero 64 KiB blocks (the store never
# compresses all-zero segments), the files of /usr/bin concatenated, zeros, and random bytes. Built with the addon's
# compiler and flags (cc -O3). Needs liblz4-dev. Prints one table row per data set, codec and
# segment size: compress MB/s, decompress MB/s (uncompressed bytes per CPU second of the one thread) and ratio
# (payload bytes / input bytes; the store keeps raw what saves less than 1/16).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-9}"
out=native/build-bench
mkdir -p "$out"
cc -O3 -std=c11 -Wall -Wextra -o "$out/lz4_bench" native/bench/lz4_bench.c native/bench/lz4_handwritten.c -llz4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
find /usr/bin -maxdepth 1 -type f -size +0 | sort | xargs cat 2>/dev/null | head -c 64000000 >"$tmp/usr-bin" || true
image="${VMVAULT_BENCH_IMAGE:-$(ls /work/vmimages/*.raw 2>/dev/null | head -1 || true)}"
sets="usr-bin zeros random"
if [ -n "$image" ] && [ -r "$image" ]; then
  node -e '
    const fs = require("node:fs");
    const fd = fs.openSync(process.argv[1], "r");
    const out = fs.openSync(process.argv[2], "w");
    const b = Buffer.alloc(65536);
    let kept = 0;
    for (let pos = 0; kept < 64000000; pos += b.length) {
      const n = fs.readSync(fd, b, 0, b.length, pos);
      if (n <= 0) break;
      if (b.subarray(0, n).some((x) => x !== 0)) kept += fs.writeSync(out, b, 0, Math.min(n, 64000000 - kept));
    }' "$image" "$tmp/vm-image"
  sets="vm-image $sets"
  echo "vm-image: $(basename "$image"), first 64 MB of non-zero 64 KiB blocks"
fi
head -c 64000000 /dev/zero >"$tmp/zeros"
head -c 64000000 /dev/urandom >"$tmp/random"
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), best of $rounds rounds"
printf '%-8s %-8s %-7s %10s %10s %7s\n' data segment codec 'comp MB/s' 'dec MB/s' ratio
for data in $sets; do
  for seg in 8192 65536; do
    "$out/lz4_bench" "$tmp/$data" "$seg" "$rounds" | while read -r codec c d r; do
      printf '%-8s %-8s %-7s %10s %10s %7s\n' "$data" "$((seg / 1024)) KiB" "$codec" "$c" "$d" "$r"
    done
  done
done
