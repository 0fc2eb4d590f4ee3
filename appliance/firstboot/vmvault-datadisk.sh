#!/bin/bash
# The appliance's data disk (the OVA's second disk): the store lives on it, at /var/lib/vmvault.
# Every boot, before the appliance starts:
#  - find it: the file system labelled vmvault-data; at first boot there is none, and the data
#    disk is the one whole disk that is neither the system disk nor holds anything (no partition
#    table, no file system signature): it is formatted then. A disk that holds something is
#    never formatted.
#  - grow it: resize2fs to the size of the disk, online (the operator grows the VMDK, reboots,
#    and the store has the room). The file system is on the whole disk, with no partition table,
#    so there is no partition to move.
#  - mount it at /var/lib/vmvault.
set -euo pipefail
label=vmvault-data
mnt=/var/lib/vmvault
say() { echo "vmvault-datadisk: $*" >&2; }

dev="$(blkid -L "$label" 2>/dev/null || true)"
if [ -z "$dev" ]; then
  root_disk="$(lsblk -no PKNAME "$(findmnt -no SOURCE /)" 2>/dev/null | head -1 | tr -d ' ')"
  say "no file system labelled $label yet; the system disk is $root_disk"
  for d in $(lsblk -dnpo NAME,TYPE | awk '$2 == "disk" {print $1}'); do
    [ "$(basename "$d")" = "$root_disk" ] && continue
    [ "$(lsblk -dno RO "$d" | tr -d ' ')" = "0" ] || { say "$d is read-only: skipped"; continue; }
    # Anything on it (partition table, file system, LVM...): not ours to format.
    if [ -n "$(blkid -p -o value -s TYPE "$d" 2>/dev/null)" ] || [ -n "$(blkid -p -o value -s PTTYPE "$d" 2>/dev/null)" ] || [ "$(lsblk -n "$d" | wc -l)" -gt 1 ]; then
      say "$d holds something: left alone"
      continue
    fi
    say "formatting the empty disk $d ($(lsblk -dnbo SIZE "$d") bytes) as the data disk"
    mkfs.ext4 -q -L "$label" -m 0 -E lazy_itable_init=1,lazy_journal_init=1 "$d"
    dev="$d"
    break
  done
fi
if [ -z "$dev" ]; then
  say "no data disk: add an empty disk (the OVA's second disk) and reboot; the appliance stays stopped"
  exit 1
fi
mkdir -p "$mnt"
if ! mountpoint -q "$mnt"; then
  fsck.ext4 -p "$dev" || [ $? -le 1 ]
  mount -o noatime "$dev" "$mnt"
fi
# Grows to the whole disk; says "Nothing to do" when it already fills it.
resize2fs "$dev" 2>&1 | sed 's/^/vmvault-datadisk: resize2fs: /' >&2 || say "resize2fs failed (the store still works, at the old size)"
say "$dev mounted at $mnt: $(df -h --output=size,avail "$mnt" | tail -1 | xargs) (size, free)"
