#!/usr/bin/env bash
# Builds the addon with AddressSanitizer and UndefinedBehaviorSanitizer into
# native/build-asan/vmvault_native.node (clang, the sources and flags of native/binding.gyp at
# -O1 with frame pointers). test/native-asan.test.ts loads it in a child node started with the
# sanitizer runtime preloaded (Node itself is not instrumented):
#
#   LD_PRELOAD=$(clang -print-file-name=libclang_rt.asan-x86_64.so) ASAN_OPTIONS=detect_leaks=0 \
#     VMVAULT_NATIVE_ADDON=native/build-asan/vmvault_native.node node dist/test/native-codec.test.js
#
# Needs clang, liblz4-dev and Node's headers (found as tools/build-native.js finds them).
set -euo pipefail
cd "$(dirname "$0")/.."
CC="${CC:-clang}"
nodedir=""
for d in "${npm_config_nodedir:-}" "$(npm config get nodedir 2>/dev/null || true)" "$(dirname "$(dirname "$(command -v node)")")"; do
  if [ -n "$d" ] && [ -e "$d/include/node/node_api.h" ]; then nodedir="$d"; break; fi
done
[ -n "$nodedir" ] || { echo "build-native-asan: no Node headers (include/node/node_api.h) found" >&2; exit 3; }
# The sources are binding.gyp's own list, so this build cannot drift from the real one.
sources=$(node -e 'const g = JSON.parse(require("fs").readFileSync("native/binding.gyp", "utf8")); console.log(g.targets[0].sources.map((s) => "native/" + s).join(" "))')
mkdir -p native/build-asan
"$CC" -shared -fPIC -g -O1 -std=c11 -Wall -Wextra -Wno-unused-parameter -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined -shared-libasan \
  -DNAPI_VERSION=8 -I"$nodedir/include/node" \
  $sources \
  -llz4 -o native/build-asan/vmvault_native.node
# The runtime the child must preload.
"$CC" -print-file-name=libclang_rt.asan-x86_64.so
