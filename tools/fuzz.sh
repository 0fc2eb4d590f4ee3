#!/usr/bin/env bash
# Builds the libFuzzer harnesses of native/fuzz/ (clang, AddressSanitizer and
# UndefinedBehaviorSanitizer, linked against Debian's liblz4 for the differential checks) and
# runs each for a time budget from its committed corpus (native/fuzz/corpus/<target>/).
#
#   tools/fuzz.sh [--seconds N] [--merge] [--build-only] [target...]
#
#   --seconds N   time per target (default 10); `npm test` runs 3 s each (test/native-fuzz)
#   --merge       fold the new inputs that add coverage into the committed corpus (minimised)
#   --build-only  build and stop
#   target        lz4_decompress lz4_roundtrip cut blake3 batch (default: all)
#
# Needs clang (Debian `clang`) and liblz4-dev. Binaries go to native/build-fuzz/; new inputs
# found in a run go to native/build-fuzz/new/<target>/ (the committed corpus is only read,
# unless --merge); a crash leaves its input as native/build-fuzz/crash-<target>-* and makes the
# script exit 1. Prints one line per target: "fuzz <target>: <runs> runs in <s> s, <n> crashes".
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10
merge=0
build_only=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --merge) merge=1; shift ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(lz4_decompress lz4_roundtrip cut blake3 batch)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

CC="${CC:-clang}"
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (apt-get install clang)" >&2; exit 3; }
[ -e /usr/include/lz4.h ] || { echo "fuzz.sh: lz4.h not found (apt-get install liblz4-dev)" >&2; exit 3; }

src=native/src
fz=native/fuzz
out=native/build-fuzz
mkdir -p "$out"
flags=(-g -O1 -std=gnu11 -Wall -Wextra -fno-omit-frame-pointer
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)

sources_of() {
  case "$1" in
    lz4_decompress|lz4_roundtrip) echo "$src/lz4.c" ;;
    cut) echo "$src/cut.c" ;;
    blake3) echo "$src/blake3.c" ;;
    batch) echo "$src/batch.c $src/blake3.c $src/lz4.c $fz/pread_plain.c" ;;
    *) echo "fuzz.sh: unknown target $1 (${all[*]})" >&2; exit 2 ;;
  esac
}

for t in "${targets[@]}"; do
  # shellcheck disable=SC2046
  "$CC" "${flags[@]}" -DVV_NO_NAPI -o "$out/$t" "$fz/fuzz_$t.c" $(sources_of "$t") -llz4
done
[ "$build_only" = 0 ] || exit 0

status=0
for t in "${targets[@]}"; do
  corpus="$fz/corpus/$t"
  new="$out/new/$t"
  mkdir -p "$corpus" "$new"
  log="$out/$t.log"
  set +e
  # New inputs go to the first directory; the committed corpus is read as seeds.
  ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:allocator_may_return_null=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$out/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -max_len=70000 -print_final_stats=1 \
    -artifact_prefix="$out/crash-$t-" "$new" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  crashes=0
  if [ $rc -ne 0 ]; then
    crashes=1
    status=1
    echo "---- fuzz $t failed (exit $rc); the end of $log:" >&2
    tail -40 "$log" >&2
  fi
  echo "fuzz $t: ${runs:-?} runs in ${secs:-$seconds} s, $crashes crashes"
  if [ "$merge" = 1 ] && [ $rc -eq 0 ]; then
    "$out/$t" -merge=1 -max_len=70000 "$corpus" "$new" >"$out/$t.merge.log" 2>&1
    echo "fuzz $t: corpus $(ls "$corpus" | wc -l) files, $(du -sk "$corpus" | cut -f1) KiB"
  fi
done
exit $status
