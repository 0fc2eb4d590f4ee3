#!/usr/bin/env bash
# LZ4: the hand-written codec the addon had (native/bench/lz4_handwritten.c) against Debian's
# liblz4 (which the addon now links, native/src/lz4.c), on the same data in one run, one call
# per 8 KiB segment as the store compresses (its average segment), and per 64 KiB.
#
#   tools/bench-lz4.sh [rounds]      (npm run bench:lz4; default 9 rounds, best of them)
#
# Data (64 MB each): the files of /usr/bin concatenated (binaries: the nearest thing to a VM
# image's contents on a machine without one), zeros, and random bytes. Built with the addon's
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
head -c 64000000 /dev/zero >"$tmp/zeros"
head -c 64000000 /dev/urandom >"$tmp/random"
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg), best of $rounds rounds"
printf '%-8s %-8s %-7s %10s %10s %7s\n' data segment codec 'comp MB/s' 'dec MB/s' ratio
for data in usr-bin zeros random; do
  for seg in 8192 65536; do
    "$out/lz4_bench" "$tmp/$data" "$seg" "$rounds" | while read -r codec c d r; do
      printf '%-8s %-8s %-7s %10s %10s %7s\n' "$data" "$((seg / 1024)) KiB" "$codec" "$c" "$d" "$r"
    done
  done
done
