#!/usr/bin/env bash
# Build a Debian cloud image (qcow2, BIOS boot through extlinux) without network
# access beyond a Debian mirror: mmdebstrap a root filesystem, copy it into an
# ext4 partition of a raw disk, install extlinux, convert to compressed qcow2.
#
# Usage: build-debian-image.sh OUTPUT.qcow2
# Environment (all optional):
#   IMAGE_SUITE      Debian suite (default: bookworm)
#   IMAGE_MIRROR     Debian mirror (default: http://deb.debian.org/debian)
#   IMAGE_SIZE_MB    size of the raw disk in MiB (default: 2048)
#   IMAGE_PACKAGES   extra packages, comma separated
#   IMAGE_WORKDIR    scratch directory (default: a new directory under /var/tmp)
set -euo pipefail

out=${1:?usage: $0 OUTPUT.qcow2}
suite=${IMAGE_SUITE:-bookworm}
mirror=${IMAGE_MIRROR:-http://deb.debian.org/debian}
size_mb=${IMAGE_SIZE_MB:-2048}
packages="linux-image-cloud-amd64,systemd-sysv,cloud-init,openssh-server,qemu-guest-agent"
packages+=",ifupdown,isc-dhcp-client,e2fsprogs,cloud-guest-utils,locales,sudo,netbase"
# dbus: without it systemd-logind does not run and the guest ignores the ACPI power button.
packages+=",iproute2,iputils-ping,python3,initramfs-tools,ca-certificates,dbus"
[ -n "${IMAGE_PACKAGES:-}" ] && packages+=",${IMAGE_PACKAGES}"

[ "$(id -u)" = 0 ] || { echo "build-debian-image.sh: must run as root" >&2; exit 1; }
for tool in mmdebstrap extlinux sfdisk mkfs.ext4 losetup qemu-img; do
  command -v "$tool" >/dev/null || { echo "build-debian-image.sh: $tool is missing" >&2; exit 1; }
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -r "$mbr" ] || mbr=/usr/lib/SYSLINUX/mbr.bin
[ -r "$mbr" ] || { echo "build-debian-image.sh: syslinux mbr.bin not found (install syslinux-common)" >&2; exit 1; }

work=${IMAGE_WORKDIR:-$(mktemp -d /var/tmp/iaas-kvm-image.XXXXXX)}
mkdir -p "$work"
loop=""
cleanup() {
  set +e
  mountpoint -q "$work/mnt" && umount "$work/mnt"
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '[image] %s: %s\n' "$(date +%T)" "$*"; }

step "mmdebstrap $suite ($packages)"
# The hook runs in mmdebstrap's shell with the root directory as $1.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=apt --include="$packages" \
  --customize-hook='chroot "$1" sh -c "echo en_US.UTF-8 UTF-8 > /etc/locale.gen && locale-gen >/dev/null && update-locale LANG=en_US.UTF-8"' \
  "$suite" "$work/rootfs.tar" "$mirror"

step "raw disk of ${size_mb} MiB with one partition"
raw="$work/disk.raw"
truncate -s "${size_mb}M" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk --quiet "$raw"
offset=$((2048 * 512))
part_bytes=$(( size_mb * 1024 * 1024 - offset ))
uuid=$(cat /proc/sys/kernel/random/uuid)

loop=$(losetup --find --show --offset "$offset" --sizelimit "$part_bytes" "$raw")
mkfs.ext4 -q -L rootfs -U "$uuid" "$loop"
mkdir -p "$work/mnt"
mount "$loop" "$work/mnt"
tar -C "$work/mnt" --numeric-owner -xpf "$work/rootfs.tar"

step "system configuration"
cat > "$work/mnt/etc/fstab" <<EOF
UUID=$uuid / ext4 errors=remount-ro 0 1
EOF
echo debian > "$work/mnt/etc/hostname"
cat > "$work/mnt/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
EOF
mkdir -p "$work/mnt/etc/network/interfaces.d"
# cloud-init: NoCloud and ConfigDrive first, no network datasources to wait for.
cat > "$work/mnt/etc/cloud/cloud.cfg.d/90-iaas-kvm.cfg" <<'EOF'
datasource_list: [NoCloud, ConfigDrive, None]
EOF
# A machine-id is created at first boot.
: > "$work/mnt/etc/machine-id"
rm -f "$work/mnt/var/lib/dbus/machine-id"
# Host keys are created at first boot by cloud-init.
rm -f "$work/mnt"/etc/ssh/ssh_host_*
rm -rf "$work/mnt/var/lib/apt/lists/"* "$work/mnt/var/cache/apt/"*.bin

step "extlinux"
kernel=$(find "$work/mnt/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
initrd=$(find "$work/mnt/boot" -maxdepth 1 -name 'initrd.img-*' -printf '%f\n' | sort -V | tail -n 1)
if [ -z "$kernel" ] || [ -z "$initrd" ]; then
  echo "build-debian-image.sh: no kernel or initrd in /boot" >&2
  exit 1
fi
mkdir -p "$work/mnt/boot/extlinux"
cat > "$work/mnt/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
TIMEOUT 1
PROMPT 0
LABEL debian
  LINUX /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8 net.ifnames=0
EOF
extlinux --install "$work/mnt/boot/extlinux" 2>/dev/null
sync
umount "$work/mnt"
losetup -d "$loop"
loop=""
dd if="$mbr" of="$raw" bs=440 count=1 conv=notrunc status=none

step "qcow2"
mkdir -p "$(dirname "$out")"
qemu-img convert -c -f raw -O qcow2 "$raw" "$out.tmp"
mv -f "$out.tmp" "$out"
step "done: $out ($(du -h "$out" | cut -f1))"
