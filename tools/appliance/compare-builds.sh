#!/usr/bin/env bash
# Reproducibility of the appliance build: compares two builds' outputs (dist/appliance of one
# commit built twice, the second copied aside first).
#   tools/appliance/compare-builds.sh DIR_A DIR_B
# The file tree (NAME.contents: SHA-256 of every file and link in the image) must be identical;
# the manifest lines say which OVA members differ. Known: the system VMDK differs, because the
# ext4 image keeps each inode's change time (ctime) and the file system's write times from the
# build, which mkfs.ext4 -d cannot be told; its ovf:size in the descriptor may differ with it.
set -euo pipefail
a="${1:?usage: compare-builds.sh DIR_A DIR_B}"
b="${2:?usage: compare-builds.sh DIR_A DIR_B}"
rc=0
for f in "$a"/*.contents; do
  n="$(basename "$f")"
  if cmp -s "$f" "$b/$n"; then echo "same: $n ($(wc -l <"$f") files in the image)"
  else echo "DIFFERENT: $n"; diff "$f" "$b/$n" | head -20; rc=1; fi
done
ova_a="$(ls "$a"/*.ova)"; ova_b="$(ls "$b"/*.ova)"
tar -xOf "$ova_a" --wildcards '*.mf' >/tmp/mf.a.$$; tar -xOf "$ova_b" --wildcards '*.mf' >/tmp/mf.b.$$
while read -r line; do
  if grep -qxF "$line" /tmp/mf.b.$$; then echo "same: $line"; else echo "differs: ${line%%=*}"; fi
done </tmp/mf.a.$$
rm -f /tmp/mf.a.$$ /tmp/mf.b.$$
exit $rc
