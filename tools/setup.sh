#!/usr/bin/env bash
# Prepares a fresh Debian machine for vmvault, as root (or with sudo): the system packages it
# needs, then the npm packages, the native addon and the TypeScript build (npm install runs them).
#   tools/setup.sh          what the appliance needs
#   tools/setup.sh --test   also what the tests drive through the mount
set -euo pipefail
cd "$(dirname "$0")/.."

packages="libfuse2 fuse liblz4-dev"
if [ "${1:-}" = "--test" ]; then
  packages="$packages qemu-utils fio rsync e2fsprogs tar python3"
  packages="$packages clang"  # fuzzing and the sanitizer build of the addon (native/fuzz/)
fi
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ -n "$missing" ]; then
  echo "vmvault setup: installing$missing" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
fi
if [ ! -e /dev/fuse ]; then
  $sudo modprobe fuse 2>/dev/null || true
fi
[ -e /dev/fuse ] || { echo "vmvault setup: /dev/fuse is missing; this machine cannot mount FUSE file systems" >&2; exit 1; }

# npm install, not npm ci: the registry reachable here lacks other platforms' builds of some
# optional per-platform packages at the versions we use (e.g. @napi-rs/blake-hash-darwin-arm64
# 1.3.6), so npm leaves them out of the lock file and npm ci then refuses it as out of sync.
# The lock file still pins every version installed here.
echo "vmvault setup: npm install (dependencies, native addon, build)" >&2
npm install --no-audit --no-fund
