#!/usr/bin/env bash
# Prepares a fresh Debian machine for vmvault, as root (or with sudo): the system packages it
# needs, then the npm packages, the native addon and the TypeScript build (npm ci runs them).
#   tools/setup.sh            what the appliance needs
#   tools/setup.sh --test     also what the tests drive through the mount
#   tools/setup.sh --appliance  also what building and checking the appliance image needs
#   tools/setup.sh --dry-run  say what it would do (apt is only simulated), change nothing
# Environment:
#   VMVAULT_SETUP_EXTRA="pkg ..."  more Debian packages to install with ours
#   VMVAULT_SETUP_ASSUME_INSTALLED="pkg ..."  with --dry-run only: take exactly these packages as
#     installed instead of asking dpkg (tests of the package choice use it)
#
# It never removes a package: apt's plan is simulated first (apt-get -s) and any removal is
# refused with the list. apt waits up to 10 minutes for another apt/dpkg to let go of its lock.
# apt's output is kept quiet when it works and shown in full when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
with_appliance=0
dry=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    --appliance) with_appliance=1 ;;
    --dry-run) dry=1 ;;
    *) echo "usage: tools/setup.sh [--test] [--appliance] [--dry-run]" >&2; exit 2 ;;
  esac
done

say() { echo "vmvault setup: $*" >&2; }

# Every apt-get waits for the dpkg lock as apt can, rather than failing at once.
APT=(apt-get -o DPkg::Lock::Timeout=600)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# Runs a command with its output kept aside; prints it all if the command fails.
quiet() {
  local out rc=0
  out="$(mktemp)"
  "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "failed (exit $rc): $*"
    cat "$out" >&2
    rm -f "$out"
    exit 1
  fi
  rm -f "$out"
}

installed() {
  if [ "$dry" -eq 1 ] && [ -n "${VMVAULT_SETUP_ASSUME_INSTALLED+set}" ]; then
    case " $VMVAULT_SETUP_ASSUME_INSTALLED " in *" $1 "*) return 0 ;; *) return 1 ;; esac
  fi
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# FUSE: the libfuse3 binding (native/src/fuse3/, issue 16; the only one since fuse-native and
# libfuse 2 went) builds against libfuse3-dev and mounts with fuse3. Debian 12's fuse (2.9) and
# fuse3 conflict (installing either removes the other), and setup never removes a package: where
# fuse is installed and fuse3 is not, fuse stays and fuse3 is left out. libfuse3-3 (with
# libfuse3-dev) does not conflict, and running as root, as the appliance and the tests do,
# libfuse3 mounts with mount(2) and we unmount with umount(8), without fusermount3; that helper
# (package fuse3) matters only for a user other than root.
# liblz4-dev: the addon links liblz4 for its LZ4 codec (native/binding.gyp).
# python3 make g++: node-gyp builds better-sqlite3 (the catalog, issue 15) from source, because
# its prebuilt binaries download from GitHub, which is out of reach here.
packages="liblz4-dev python3 make g++"
if installed fuse && ! installed fuse3; then
  say "fuse (2.9) is installed and conflicts with fuse3: keeping fuse, installing libfuse3-dev without fuse3 (fine as root)"
else
  packages="$packages fuse3"
fi
packages="$packages libfuse3-dev"
# What the appliance runs beside itself: The Sleuth Kit reads guest filesystems for the catalog
# (issue 15); nfs-ganesha (FSAL_VFS) and Samba's smbd export the mount (issue 16).
packages="$packages sleuthkit nfs-ganesha nfs-ganesha-vfs samba"
if [ "$with_test" -eq 1 ]; then
  packages="$packages qemu-utils fio rsync e2fsprogs tar"
  # Fuzzing and the sanitizer build of the addon (native/fuzz/). The sanitizer and libFuzzer
  # runtimes are in libclang-rt-14-dev, which clang only recommends: named, as below.
  packages="$packages clang libclang-rt-14-dev"
  # The VM backup tests' guest (tools/make-test-guest.sh builds it from these) and its QEMU.
  packages="$packages qemu-system-x86 qemu-guest-agent busybox-static linux-image-amd64 postgresql-15 cpio"
  # Guest file systems built by the catalog tests (issue 15), and the export tests' clients (16).
  packages="$packages xfsprogs ntfs-3g lvm2 dosfstools exfatprogs mtools fdisk smbclient libnfs-utils libnfs-dev"
  # A real three-node cluster for the HA tests (issue 13: test/helpers/pacemaker.ts). crm_mon and
  # crm_resource are in pacemaker-cli-utils, which pacemaker only recommends: with
  # --no-install-recommends (below) they must be named, or CI's machine lacks them.
  packages="$packages pacemaker pacemaker-cli-utils corosync"
  packages="$packages libxml2-utils openssl"  # xmllint: the OVF descriptor against the DMTF schema (test/appliance-ova); openssl: first boot's certificate (test/appliance-firstboot)
fi
if [ "$with_appliance" -eq 1 ]; then
  # tools/build-appliance.sh and npm run appliance:check (appliance/README.md).
  packages="$packages debootstrap mtools dosfstools grub-pc-bin grub-efi-amd64-bin binutils qemu-utils"
  packages="$packages qemu-system-x86 libxml2-utils genisoimage openssl ovmf"
fi
packages="$packages ${VMVAULT_SETUP_EXTRA:-}"

missing=""
for p in $packages; do
  installed "$p" || missing="$missing $p"
done

if [ -n "$missing" ]; then
  if [ "$dry" -eq 0 ]; then
    say "apt-get update"
    quiet $sudo "${APT[@]}" update
  fi
  # Simulate first: apt must not take a user's packages away to make room for ours.
  sim="$(mktemp)"
  if ! LC_ALL=C "${APT[@]}" -s install --no-install-recommends $missing >"$sim" 2>&1; then
    say "apt cannot install$missing:"
    cat "$sim" >&2
    rm -f "$sim"
    exit 1
  fi
  removals="$(sed -n 's/^Remv \([^ ]*\).*/\1/p' "$sim" | xargs)"
  rm -f "$sim"
  if [ -n "$removals" ]; then
    say "installing$missing would remove: $removals"
    say "refusing: vmvault setup never removes installed packages. Install what vmvault needs by hand, or remove those packages yourself if nothing needs them."
    exit 1
  fi
  if [ "$dry" -eq 1 ]; then
    say "would install:$missing"
  else
    say "installing$missing"
    quiet $sudo env DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends $missing
  fi
else
  [ "$dry" -eq 0 ] || say "would install: nothing (all present)"
fi

if [ ! -e /dev/fuse ] && [ "$dry" -eq 0 ]; then
  $sudo modprobe fuse 2>/dev/null || true
fi
if [ ! -e /dev/fuse ]; then
  say "/dev/fuse is missing; this machine cannot mount FUSE file systems"
  [ "$dry" -eq 1 ] || exit 1
fi

# npm ci: exactly the versions in package-lock.json, and it never rewrites the lock (a fresh
# clone stays clean). The lock lists other platforms' optional builds (some without an
# integrity hash, as the registry reachable here lacks them); npm skips those on this one.
# npm ci starts by deleting node_modules: refuse where that is a link to an install shared
# with other checkouts.
if [ -L node_modules ]; then
  say "node_modules is a symbolic link (an install shared with other checkouts?); npm ci would delete what it holds. Not running it: build with 'node tools/build-native.js && npm run build'."
  [ "$dry" -eq 1 ] || exit 1
fi
if [ "$dry" -eq 1 ]; then
  say "would run: npm ci --no-audit --no-fund"
  exit 0
fi
# better-sqlite3 builds with node-gyp, which would download Node's headers from nodejs.org (out
# of reach here): point it at the running node's own headers, as tools/build-native.js does for
# our addon, unless the user's npm config already names a nodedir.
nodedir="$(node -p 'require("path").resolve(process.execPath, "..", "..")')"
if [ -z "${npm_config_nodedir:-}" ] && [ -e "$nodedir/include/node/node_api.h" ]; then
  export npm_config_nodedir="$nodedir"
fi
say "npm ci (dependencies, native addon, build)"
npm ci --no-audit --no-fund
