#!/usr/bin/env bash
# Builds the test guest the VM backup tests boot under TCG, from Debian packages installed on this
# machine (linux-image-amd64, busybox-static, qemu-guest-agent, postgresql-15, e2fsprogs,
# qemu-utils), and prints the directory that holds it on stdout (the only line on stdout):
#   vmlinuz       the host's kernel
#   initrd.img    gzip cpio: busybox, qemu-ga and its libraries, the virtio/ext4/net modules and
#                 their dependencies, and /init (busybox sh, below)
#   data.qcow2    the data disk (vda): ext4 made with `mkfs.ext4 -d` from a small root tree with
#                 the host's PostgreSQL 15 binaries and libraries, busybox, and /pgdata, a data
#                 directory made by `initdb --data-checksums` holding a pgbench database
#                 (`pgbench -i`), shut down cleanly
#   guest.json    what the helpers need to know (versions, uid of postgres, pgbench scale, ...)
# qcow2 because persistent dirty bitmaps (incremental backups) need it. Tests copy data.qcow2.
#
# Usage: tools/make-test-guest.sh [--out DIR]
# Without --out the guest is cached in ${VMVAULT_TEST_CACHE:-/var/cache/vmvault-test}/guest-KEY,
# KEY a hash of this script and the versions of the packages it takes files from: a second run
# returns at once. With --out DIR it is built in DIR (reused when DIR holds the same KEY).
# Needs root (ownership in the image, initdb as user postgres).
#
# The guest, booted with `-kernel vmlinuz -initrd initrd.img -append "console=ttyS0 ..."`:
# mounts vda on /mnt, brings up eth0 (10.0.2.15/24, QEMU user networking), starts qemu-ga on the
# virtio-serial port named org.qemu.guest_agent.0, and with `vmvault.pg=1` on the kernel command
# line starts PostgreSQL (port 5432, any address, trust) in `chroot /mnt`. It then prints
# "vmvault-guest: ready" on the console. fsfreeze works on /mnt (a real ext4 on a block device);
# the initramfs root itself cannot be frozen and qemu-ga skips it.
set -euo pipefail

say() { echo "make-test-guest: [${SECONDS}s] $*" >&2; }
die() { say "$*"; exit 1; }

out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out="$2"; shift 2 ;;
    *) die "usage: tools/make-test-guest.sh [--out DIR]" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (image ownership, initdb as postgres)"

PGBIN=/usr/lib/postgresql/15/bin
PGSCALE=1
# Packages whose files end up in the guest, or whose tools make it: their versions key the cache.
pkgs="linux-image-amd64 busybox-static qemu-guest-agent postgresql-15 e2fsprogs qemu-utils"
versions=""
for p in $pkgs; do
  v="$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null)" || die "package $p is not installed (tools/setup.sh --test installs it)"
  versions="$versions $p=$v"
done
# The kernel itself: linux-image-amd64 depends on exactly one linux-image-<version> package.
kpkg="$(dpkg-query -W -f='${Depends}' linux-image-amd64 | sed -n 's/^\(linux-image-[^ ,]*\).*/\1/p')"
kver="${kpkg#linux-image-}"
[ -r "/boot/vmlinuz-$kver" ] || die "no /boot/vmlinuz-$kver (from $kpkg)"
[ -d "/lib/modules/$kver" ] || die "no /lib/modules/$kver (from $kpkg)"
for tool in busybox qemu-ga mkfs.ext4 qemu-img cpio gzip runuser; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x "$PGBIN/initdb" ] || die "$PGBIN/initdb not found (postgresql-15)"

key="$( { cat "$0"; echo "$versions $kver"; } | sha256sum | cut -c1-16)"
cache="${VMVAULT_TEST_CACHE:-/var/cache/vmvault-test}"
[ -n "$out" ] || out="$cache/guest-$key"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

# One builder at a time per output directory; the others wait, then find it built.
exec 9>"$out.lock"
flock 9

if [ -f "$out/KEY" ] && [ "$(cat "$out/KEY")" = "$key" ]; then
  echo "$out"
  exit 0
fi

say "building the test guest into $out (kernel $kver)"
work="$(mktemp -d "${out}.build.XXXXXX")"
cleanup() {
  # A host PostgreSQL left running by a failed build would hold the directory.
  if [ -f "$work/pgdata/postmaster.pid" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pgdata" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"

pg_uid="$(id -u postgres)"
pg_gid="$(id -g postgres)"

# Copies an ELF and every library ldd resolves for it into the tree $1, in a merged-/usr layout
# (Debian 12's own: /lib is /usr/lib), keeping the paths the dynamic loader looks for.
copy_elf() {
  local tree="$1" f="$2" lib dest
  dest="$tree$(dest_path "$f")"
  mkdir -p "$(dirname "$dest")"
  cp -L --preserve=mode "$f" "$dest"
  { ldd "$f" 2>/dev/null || true; } | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p' | while read -r lib; do
    dest="$tree$(dest_path "$lib")"
    [ -e "$dest" ] && continue
    mkdir -p "$(dirname "$dest")"
    cp -L --preserve=mode "$lib" "$dest"
  done
}
dest_path() {
  case "$1" in
    /lib/* | /lib64/* | /bin/* | /sbin/*) echo "/usr$1" ;;
    *) echo "$1" ;;
  esac
}
merged_usr() {
  mkdir -p "$1/usr/bin" "$1/usr/sbin" "$1/usr/lib" "$1/usr/lib64"
  ln -s usr/bin "$1/bin"
  ln -s usr/sbin "$1/sbin"
  ln -s usr/lib "$1/lib"
  ln -s usr/lib64 "$1/lib64"
}

# ---- initramfs ----
ird="$work/initramfs"
merged_usr "$ird"
mkdir -p "$ird"/{proc,sys,dev,mnt,run,tmp,var/run,var/log,etc,modules}
cp "$(command -v busybox)" "$ird/usr/bin/busybox"
ln -s busybox "$ird/usr/bin/sh"  # /init's interpreter, before busybox --install
if ldd "$ird/usr/bin/busybox" >/dev/null 2>&1; then die "busybox is not static (busybox-static)"; fi
copy_elf "$ird" "$(command -v qemu-ga)"

# Kernel modules and their dependencies (and ext4's crc32c), in load order.
declare -A seen=()
order=()
add_module() {
  local m="$1" deps soft d
  m="${m//-/_}"
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  deps="$(modinfo -k "$kver" -F depends "$m")" || die "module $m not found for $kver"
  soft="$(modinfo -k "$kver" -F softdep "$m" | sed -n 's/.*pre: *//p')"
  for d in ${deps//,/ } $soft; do
    [ "$d" = crypto-crc32c ] && d=crc32c_generic
    add_module "$d"
  done
  local f
  f="$(modinfo -k "$kver" -F filename "$m")"
  case "$f" in
    *.ko) cp "$f" "$ird/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" >"$ird/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$ird/modules/$m.ko" ;;
    "(builtin)" | "") return 0 ;;
    *) die "module $m: unexpected file $f" ;;
  esac
  order+=("$m")
}
for m in virtio_pci virtio_blk virtio_console virtio_net crc32c_generic ext4; do add_module "$m"; done
printf '%s\n' "${order[@]}" >"$ird/modules/order"

cat >"$ird/init" <<EOF
#!/bin/sh
# vmvault test guest (tools/make-test-guest.sh). Everything a step says goes to the console.
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in \$(cat /modules/order); do insmod /modules/\$m.ko || echo "vmvault-guest: insmod \$m failed"; done
i=0
while [ ! -b /dev/vda ] && [ \$i -lt 300 ]; do sleep 0.1; i=\$((i+1)); done
if ! mount -t ext4 /dev/vda /mnt; then echo "vmvault-guest: cannot mount vda"; poweroff -f; fi
ip link set lo up
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.2.2
port=""
for d in /sys/class/virtio-ports/*; do
  [ "\$(cat "\$d/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/\${d##*/}
done
if [ -n "\$port" ]; then
  qemu-ga -d -m virtio-serial -p "\$port" -f /var/run/qemu-ga.pid || echo "vmvault-guest: qemu-ga failed"
else
  echo "vmvault-guest: no guest agent port"
fi
if grep -q 'vmvault.pg=1' /proc/cmdline; then
  mount --bind /dev /mnt/dev
  mount -t proc proc /mnt/proc
  mount -t tmpfs tmpfs /mnt/run
  mkdir -p /mnt/dev/shm && mount -t tmpfs shm /mnt/dev/shm
  mkdir -p /mnt/run/postgresql && chown $pg_uid:$pg_gid /mnt/run/postgresql
  # The on-disk postmaster.pid of an image copied from a running guest would stop the start.
  rm -f /mnt/pgdata/postmaster.pid
  chmod 666 /dev/console  # the server logs there (-l), as user postgres
  chroot /mnt /bin/busybox su -s /bin/sh postgres -c \
    "$PGBIN/pg_ctl -D /pgdata -l /dev/console -w -t 600 start" || echo "vmvault-guest: postgres failed"
fi
echo "vmvault-guest: ready (guest uptime \$(cut -d" " -f1 /proc/uptime) s)"
while :; do sleep 3600; done
EOF
chmod 755 "$ird/init"
(cd "$ird" && find . -print0 | sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -6 >"$work/initrd.img"

say "initramfs made"

# ---- data disk ----
root="$work/root"
merged_usr "$root"
mkdir -p "$root"/{proc,dev,run,tmp,etc,usr/share/zoneinfo/Etc}
chmod 1777 "$root/tmp"
cp "$(command -v busybox)" "$root/usr/bin/busybox"
ln -s busybox "$root/usr/bin/sh"
# The programs the guest runs, with their libraries; the server's loadable modules (plpgsql,
# snowball, ...) link only what postgres itself links. Not llvmjit.so: it pulls in libLLVM
# (100 MB) for a JIT the guest turns off (jit = off). One ldd per program: ldd is slow here.
for f in postgres pg_ctl psql pgbench pg_isready; do copy_elf "$root" "$PGBIN/$f"; done
mkdir -p "$root/usr/lib/postgresql/15/lib"
for f in /usr/lib/postgresql/15/lib/*.so; do
  case "$f" in */llvmjit*.so) continue ;; esac
  cp "$f" "$root/usr/lib/postgresql/15/lib/"
done
mkdir -p "$root/usr/share/postgresql"
cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
cp -L /usr/share/zoneinfo/UTC "$root/usr/share/zoneinfo/UTC"
cp -L /usr/share/zoneinfo/UTC "$root/usr/share/zoneinfo/Etc/UTC"
printf 'root:x:0:0:root:/:/bin/sh\npostgres:x:%s:%s:PostgreSQL:/pgdata:/bin/sh\n' "$pg_uid" "$pg_gid" >"$root/etc/passwd"
printf 'root:x:0:\npostgres:x:%s:\n' "$pg_gid" >"$root/etc/group"

say "data disk tree made"

# The data directory, made and filled on the host, then shut down cleanly.
pgdata="$work/pgdata"
sock="$work/sock"
mkdir -m 700 "$sock" "$pgdata" && chown postgres:postgres "$sock" "$pgdata"
TZ=UTC runuser -u postgres -- "$PGBIN/initdb" -D "$pgdata" --data-checksums -U postgres --auth=trust \
  --locale=C --encoding=UTF8 >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; die "initdb failed"; }
cat >>"$pgdata/postgresql.conf" <<EOF

# vmvault test guest
listen_addresses = '*'
port = 5432
unix_socket_directories = '/run/postgresql'
shared_buffers = 32MB
max_connections = 20
timezone = 'UTC'
jit = off
log_timezone = 'UTC'
jit = off
EOF
echo "host all all 0.0.0.0/0 trust" >>"$pgdata/pg_hba.conf"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgdata" -l "$sock/pg.log" -w -t 120 \
  -o "-c listen_addresses='' -c unix_socket_directories='$sock' -p 5432" start >/dev/null ||
  { cat "$sock/pg.log" >&2; die "host postgres did not start"; }
runuser -u postgres -- "$PGBIN/pgbench" -h "$sock" -p 5432 -U postgres -i -s "$PGSCALE" -q postgres >"$work/pgbench.log" 2>&1 ||
  { cat "$work/pgbench.log" >&2; die "pgbench -i failed"; }
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
rm -f "$pgdata/postmaster.pid" "$pgdata/postmaster.opts"
mv "$pgdata" "$root/pgdata"

say "pgbench database made"
size_mib=$(( $(du -sm "$root" | cut -f1) * 2 + 256 ))
mkfs.ext4 -q -F -L vmvault-data -E root_owner=0:0 -d "$root" "$work/data.raw" "${size_mib}M" >&2
qemu-img convert -f raw -O qcow2 "$work/data.raw" "$work/data.qcow2"
rm -f "$work/data.raw"
cp "/boot/vmlinuz-$kver" "$work/vmlinuz"

cat >"$work/guest.json" <<EOF
{
  "version": 1,
  "key": "$key",
  "kernel": "$kver",
  "packages": "$(echo $versions)",
  "dataDisk": "data.qcow2",
  "dataSizeMiB": $size_mib,
  "pgdata": "/pgdata",
  "pgPort": 5432,
  "pgUser": "postgres",
  "pgDatabase": "postgres",
  "pgbenchScale": $PGSCALE,
  "pgUid": $pg_uid,
  "pgGid": $pg_gid
}
EOF
echo "$key" >"$work/KEY"

final="$work.done"
mkdir "$final"
mv "$work/vmlinuz" "$work/initrd.img" "$work/data.qcow2" "$work/guest.json" "$work/KEY" "$final/"
rm -rf "$out"
mv "$final" "$out"
say "built: initrd $(du -h "$out/initrd.img" | cut -f1), data disk ${size_mib} MiB ($(du -h "$out/data.qcow2" | cut -f1) allocated)"
echo "$out"
