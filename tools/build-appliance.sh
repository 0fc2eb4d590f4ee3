#!/usr/bin/env bash
# npm run appliance:build: the vmvault appliance image, dist/appliance/vmvault-<version>.ova and
# its .sha256. As root, on Debian 12 with the packages of `tools/setup.sh --appliance`.
#
#  1. base tree: Debian 12 by debootstrap, cached by package list (tools/appliance/base-tree.sh)
#  2. vmvault under /opt/vmvault: dist (built here), production node_modules (a copy of this
#     checkout's, pruned by npm offline to the lock's non-dev packages), the native addon built
#     here; node itself is the binary running this build (process.execPath, Node 20: Debian 12's
#     nodejs is 18), debug symbols stripped. The build machine is Debian 12 like the image, and
#     the build loads every native module inside the image's tree (chroot) before going on.
#  3. configuration: units (vmvault, data disk, first boot), networkd, timesyncd, journald limits,
#     serial console, empty machine-id; nothing in the image downloads anything at boot.
#  4. disks without loop partitions: root ext4 made with mkfs.ext4 -d, an EFI system partition
#     made with mtools, GRUB for BIOS (boot.img + core.img in the MBR gap) and UEFI
#     (BOOTX64.EFI), assembled with sfdisk and dd; an empty sparse data disk.
#  5. the OVA (tools/appliance/ova.ts): streamOptimized VMDKs, descriptor, manifest, tar.
# Prints {"figure": "ova.mb"|"ova.build_s", ...} lines.
#
# Reproducibility: SOURCE_DATE_EPOCH (default: the commit's time) sets every file time in the
# tree, the file system's times and UUIDs are derived from the commit, the tar's times are fixed
# and the VMDKs' random CIDs pinned. What still differs between two builds of one commit: the
# inode change times (ctime) and the file system's last-write times inside the ext4 image, which
# mkfs.ext4 -d takes from the build (tools/appliance/compare-builds.sh shows it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
t0=$(date +%s)
say() { echo "appliance build: $*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "must run as root (debootstrap, chroot, file ownership in the image)"; exit 2; }
for c in debootstrap mkfs.ext4 mkfs.vfat mmd mcopy grub-mkimage sfdisk qemu-img strip; do
  command -v "$c" >/dev/null || { say "$c is missing: tools/setup.sh --appliance"; exit 2; }
done
[ -d /usr/lib/grub/i386-pc ] && [ -d /usr/lib/grub/x86_64-efi ] || { say "GRUB modules missing: tools/setup.sh --appliance (grub-pc-bin grub-efi-amd64-bin)"; exit 2; }

version="$(node -p 'require("./package.json").version')"
commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit-dirty"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
name="vmvault-$version"
out="$repo/dist/appliance"
work="${VMVAULT_APPLIANCE_WORK:-/var/tmp/vmvault-appliance-build}"
root="$work/rootfs"
seed="$(printf '%s' "$name/$commit" | sha256sum | cut -c1-32)"
uuid_of() { printf '%s' "$seed/$1" | sha256sum | sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/'; }
root_uuid="$(uuid_of root)"
esp_serial="$(printf '%s' "$seed/esp" | sha256sum | cut -c1-8)"

cleanup() {
  for m in dev/pts dev proc sys; do umount "$root/$m" 2>/dev/null || true; done
  [ -n "${KEEP_WORK:-}" ] || rm -rf --one-file-system "$work"
}
trap cleanup EXIT
for m in dev/pts dev proc sys; do umount "$root/$m" 2>/dev/null || true; done
rm -rf --one-file-system "$work"
mkdir -p "$work" "$out"

say "1/5 base tree"
tools/appliance/base-tree.sh "$work/base.tar"
mkdir -p "$root"
tar --numeric-owner --xattrs -C "$root" -xf "$work/base.tar"
rm -f "$work/base.tar"

say "2/5 vmvault $version ($commit) under /opt/vmvault"
VMVAULT_REQUIRE_NATIVE=1 node tools/build-native.js >"$work/native.log" 2>&1 || { cat "$work/native.log" >&2; exit 1; }
npx tsc -p tsconfig.json
opt="$root/opt/vmvault"
mkdir -p "$opt/dist" "$opt/native/build/Release"
cp -a bin package.json package-lock.json README.md appliance "$opt/"
cp -a dist/src "$opt/dist/src"
mkdir -p "$opt/dist/appliance" && cp -a dist/appliance/firstboot "$opt/dist/appliance/"
find "$opt/dist" -name '*.map' -delete
cp native/build/Release/vmvault_native.node native/build/Release/vmvault_fuse3.node "$opt/native/build/Release/"
# The production modules: this checkout's install (node_modules may be a link to a shared one),
# pruned to the lock's non-dev packages. npm prune works offline and runs no install scripts.
cp -a "$(readlink -f node_modules)" "$opt/node_modules"
(cd "$opt" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --offline >/dev/null 2>"$work/prune.log") || { cat "$work/prune.log" >&2; exit 1; }
# node, and a check that the image's libraries satisfy it and every native module we load.
install -m 0755 "$(node -p process.execPath)" "$root/usr/bin/node"
strip --strip-debug "$root/usr/bin/node"
mount --bind /proc "$root/proc"
env -u NODE_EXTRA_CA_CERTS chroot "$root" /usr/bin/node --input-type=module -e "
  const { createRequire } = await import('node:module');
  const require = createRequire('/opt/vmvault/package.json');
  require('/opt/vmvault/native/build/Release/vmvault_native.node');
  require('/opt/vmvault/native/build/Release/vmvault_fuse3.node');
  for (const m of ['classic-level', 'lz4-napi', '@napi-rs/blake-hash', 'msgpackr']) require(m);
  await import('/opt/vmvault/dist/src/appliance.js');
  console.log('native modules load in the image: node', process.version);
" >&2
umount "$root/proc"
node_modules_mb=$(du -sm "$opt/node_modules" | cut -f1)

say "3/5 configuration"
install -m 0644 appliance/vmvault.service "$root/etc/systemd/system/vmvault.service"
install -D -m 0644 appliance/image/vmvault-image.conf "$root/etc/systemd/system/vmvault.service.d/image.conf"
install -D -m 0644 appliance/image/vmvault.env "$root/etc/vmvault/vmvault.env"
for u in vmvault-datadisk vmvault-configure vmvault-certificate; do
  install -m 0644 "appliance/firstboot/$u.service" "$root/etc/systemd/system/$u.service"
done
install -D -m 0644 appliance/image/journald.conf "$root/etc/systemd/journald.conf.d/vmvault.conf"
install -D -m 0644 appliance/image/logrotate.conf "$root/etc/logrotate.d/vmvault"
mkdir -p "$root/srv/vmvault" "$root/var/lib/vmvault"
cat >"$root/etc/fstab" <<FSTAB
# The system disk; the data disk is mounted by vmvault-datadisk.service (by label vmvault-data).
UUID=$root_uuid / ext4 errors=remount-ro,noatime 0 1
FSTAB
echo vmvault >"$root/etc/hostname"
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# Until first boot writes its own (every Ethernet port, DHCP).
install -D -m 0644 /dev/stdin "$root/etc/systemd/network/10-vmvault.network" <<NET
[Match]
Type=ether

[Network]
DHCP=yes
NET
systemctl --root="$root" enable systemd-networkd.service systemd-timesyncd.service vmvault-datadisk.service \
  vmvault-configure.service vmvault-certificate.service vmvault.service serial-getty@ttyS0.service >/dev/null 2>&1
# Nothing downloads at boot: no apt timers (minbase has none, this keeps it so).
systemctl --root="$root" mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
# Smaller image: documentation, manuals and apt's lists are not needed on an appliance.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
kver="$(ls "$root/lib/modules" | sort -V | tail -1)"
mkdir -p "$root/boot/grub"
cp -a /usr/lib/grub/i386-pc /usr/lib/grub/x86_64-efi "$root/boot/grub/"
cat >"$root/boot/grub/grub.cfg" <<GRUB
set timeout=1
search --no-floppy --fs-uuid --set=root $root_uuid
menuentry "vmvault appliance" {
  linux /boot/vmlinuz-$kver root=UUID=$root_uuid ro quiet console=tty0 console=ttyS0,115200
  initrd /boot/initrd.img-$kver
}
GRUB
# Every file's time is SOURCE_DATE_EPOCH: the same tree gives the same image.
find "$root" -xdev -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + 2>/dev/null || true
# What the image holds, for comparing builds: every file's hash, mode and owner, every link's target.
(cd "$root" && { find . -xdev -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum;
  find . -xdev \( -type f -o -type d -o -type l \) -printf '%M %U:%G %p -> %l\n' | LC_ALL=C sort; }) >"$out/$name.contents"

say "4/5 disks"
tree_mb=$(du -sm --apparent-size "$root" | cut -f1)
root_mb=$(( tree_mb + tree_mb / 4 + 512 ))
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" mkfs.ext4 -q -F -L vmvault-system -U "$root_uuid" -E "hash_seed=$(uuid_of hash)" -d "$root" "$work/root.img" "${root_mb}M"
mods="biosdisk part_msdos ext2 search search_fs_uuid normal linux configfile echo test"
grub-mkimage -O i386-pc -p '(hd0,msdos2)/boot/grub' -o "$work/core.img" $mods
grub-mkimage -O x86_64-efi -p '(hd0,msdos2)/boot/grub' -o "$work/BOOTX64.EFI" part_msdos ext2 search search_fs_uuid normal linux configfile echo test fat part_gpt efi_gop all_video
mkfs.vfat -F 32 -i "$esp_serial" -n ESP -C "$work/esp.img" 65536 >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -m -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
[ "$(stat -c %s "$work/core.img")" -le $(( 2047 * 512 )) ] || { say "core.img does not fit the MBR gap"; exit 1; }
disk="$work/system.raw"
total_mb=$(( 1 + 64 + root_mb ))
truncate -s "${total_mb}M" "$disk"
sfdisk -q --no-reread --no-tell-kernel "$disk" <<PART
label: dos
label-id: 0x$(printf '%s' "$seed/mbr" | sha256sum | cut -c1-8)
start=2048, size=131072, type=ef
start=133120, type=83, bootable
PART
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=1M seek=65 conv=notrunc,sparse status=none
dd if=/usr/lib/grub/i386-pc/boot.img of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none
rm -f "$work/root.img" "$work/esp.img"
data_gb="${VMVAULT_APPLIANCE_DATA_GB:-100}"
truncate -s "${data_gb}G" "$work/data.raw"

say "5/5 OVA"
rm -rf --one-file-system "$root"
node dist/tools/appliance/package-ova.js --name "$name" --version "$version" --commit "$commit" \
  --disk "system=$disk" --disk "data=$work/data.raw" --out "$out" --memory 2048 >/dev/null
ova="$out/$name.ova"
size=$(stat -c %s "$ova")
t1=$(date +%s)
say "$ova ($(( size / 1048576 )) MiB; node_modules $node_modules_mb MiB) in $(( t1 - t0 )) s"
printf '{"figure": "ova.mb", "value": %s, "unit": "MiB", "commit": "%s"}\n' "$(awk "BEGIN{printf \"%.1f\", $size/1048576}")" "$commit"
printf '{"figure": "ova.build_s", "value": %s, "unit": "s", "commit": "%s"}\n' "$(( t1 - t0 ))" "$commit"
