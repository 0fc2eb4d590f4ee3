#!/usr/bin/env bash
# The Debian 12 base tree of the appliance image, made by debootstrap and cached.
#   tools/appliance/base-tree.sh OUT.tar     writes the tree as a tar (root-owned, devices kept)
# debootstrap is the build's dominant cost (about 200 s here). Its result depends only on the
# suite, the mirror, the variant and the package list, so it is kept in the cache under a key
# made of exactly those; a second build with the same list extracts the tar instead.
# Environment: VMVAULT_APPLIANCE_CACHE (default /var/cache/vmvault-appliance),
#   VMVAULT_APPLIANCE_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

out="${1:?usage: base-tree.sh OUT.tar}"
cache="${VMVAULT_APPLIANCE_CACHE:-/var/cache/vmvault-appliance}"
mirror="${VMVAULT_APPLIANCE_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
variant=minbase
# What the appliance runs on (see appliance/README.md, "The image"):
#   kernel and boot: linux-image-amd64 systemd-sysv udev kmod (initramfs made in the chroot)
#   node (copied from the build machine) needs libstdc++6; the addon and the npm modules need
#   liblz4-1; fuse3 brings libfuse3-3 (the FUSE addon links it) and fusermount3 for a lazy
#   unmount by hand
#   first boot: openssl (TLS certificate), iproute2, e2fsprogs (mkfs/resize2fs of the data disk),
#   open-vm-tools (vmware-rpctool reads the guestinfo.ovfEnv on VMware)
#   services: systemd-timesyncd, logrotate, dbus (networkd and timesyncd talk over it)
#   operators: busybox, procps, less
packages="linux-image-amd64 systemd-sysv udev kmod libstdc++6 fuse3 liblz4-1 openssl
iproute2 e2fsprogs open-vm-tools systemd-timesyncd logrotate dbus busybox procps less"
packages="$(echo $packages | tr ' ' '\n' | sort -u | xargs)"
key="$(printf '%s\n' "$suite" "$mirror" "$variant" "$packages" | sha256sum | cut -c1-16)"
cached="$cache/base-$suite-$key.tar"

if [ -f "$cached" ]; then
  echo "base tree: cached $cached" >&2
  ln -f "$cached" "$out" 2>/dev/null || cp "$cached" "$out"
  exit 0
fi

mkdir -p "$cache"
work="$(mktemp -d "$cache/debootstrap.XXXXXX")"
# debootstrap mounts proc and sys in the tree; never delete through a mount.
cleanup() { umount -R "$work/root/proc" "$work/root/sys" 2>/dev/null || true; rm -rf --one-file-system "$work"; }
trap cleanup EXIT
echo "base tree: debootstrap $suite ($variant) into $work" >&2
debootstrap --variant="$variant" --include="$(echo $packages | tr ' ' ',')" "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 || {
  tail -30 "$work/log" >&2; exit 1; }
# apt's downloaded .debs are not part of the system.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*_Packages
umount -R "$work/root/proc" "$work/root/sys" 2>/dev/null || true
tar --numeric-owner --xattrs --one-file-system -C "$work/root" -cf "$work/base.tar" .
mv "$work/base.tar" "$cached"
ln -f "$cached" "$out" 2>/dev/null || cp "$cached" "$out"
echo "base tree: cached as $cached" >&2
