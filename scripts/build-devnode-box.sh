#!/usr/bin/env bash
# Build the Vagrant box of the dev node (libvirt provider) from the project's
# own image recipe, roles/image/files/build-debian-image.sh:
#
#   1. the Debian cloud image, with the hypervisor's packages added, so that
#      provisioning needs no network inside the guest;
#   2. what Vagrant expects inside it: a `vagrant` user that logs in with
#      Vagrant's well-known insecure key, passwordless sudo, sshd; the guest
#      boots without cloud-init (no seed to wait for) and takes DHCP on eth0;
#   3. packed as a box: a tar of box.img (qcow2, zstd-compressed clusters),
#      metadata.json and the recipe hash (box-recipe).
#
# Usage: build-devnode-box.sh OUTPUT.box
# Environment:
#   BOX_PACKAGES     packages added to the image, comma separated (required)
#   BOX_SIZE_MB      size of the disk in MiB (default 4096)
#   BOX_PUBLIC_KEY   public key of the vagrant user (required: Vagrant's keys/vagrant.pub)
#   BOX_RECIPE       recipe hash written into the box (default: none)
#   IMAGE_SUITE, IMAGE_MIRROR  passed to build-debian-image.sh
# scripts/devnode.sh box runs this and caches the result by its recipe hash.
set -euo pipefail

out=${1:?usage: $0 OUTPUT.box}
: "${BOX_PACKAGES:?BOX_PACKAGES (comma separated) is required}"
: "${BOX_PUBLIC_KEY:?BOX_PUBLIC_KEY (path of the vagrant user public key) is required}"
size_mb=${BOX_SIZE_MB:-4096}
here=$(cd "$(dirname "$0")/.." && pwd)

[ "$(id -u)" = 0 ] || { echo "build-devnode-box.sh: must run as root" >&2; exit 1; }
[ -r "$BOX_PUBLIC_KEY" ] || { echo "build-devnode-box.sh: cannot read $BOX_PUBLIC_KEY" >&2; exit 1; }

work=$(mktemp -d /var/tmp/iaas-kvm-box.XXXXXX)
loop=""
cleanup() {
  set +e
  mountpoint -q "$work/mnt" && umount "$work/mnt"
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '[box] %s: %s\n' "$(date +%T)" "$*"; }

step "base image with the hypervisor packages (build-debian-image.sh)"
IMAGE_PACKAGES=$BOX_PACKAGES IMAGE_SIZE_MB=$size_mb IMAGE_WORKDIR="$work/image" \
  "$here/roles/image/files/build-debian-image.sh" "$work/image.qcow2"

step "vagrant user, sudo, sshd, network"
qemu-img convert -f qcow2 -O raw "$work/image.qcow2" "$work/disk.raw"
rm -f "$work/image.qcow2"
# The recipe puts one partition at sector 2048; read it back rather than assume it.
start=$(sfdisk --dump "$work/disk.raw" | sed -n 's/.*start= *\([0-9]*\),.*/\1/p' | head -n 1)
[ -n "$start" ] || { echo "build-devnode-box.sh: no partition in the image" >&2; exit 1; }
loop=$(losetup --find --show --offset $((start * 512)) "$work/disk.raw")
mkdir -p "$work/mnt"
mount "$loop" "$work/mnt"
root=$work/mnt

chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
install -d -m 0700 -o "$(chroot "$root" id -u vagrant)" -g "$(chroot "$root" id -g vagrant)" "$root/home/vagrant/.ssh"
install -m 0600 -o "$(chroot "$root" id -u vagrant)" -g "$(chroot "$root" id -g vagrant)" \
  "$BOX_PUBLIC_KEY" "$root/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
chroot "$root" visudo -c -q -f /etc/sudoers.d/vagrant
# No cloud-init: nothing would feed it, and under software emulation it costs
# half a minute at every boot. Its two jobs move to the box: host keys on the
# first start of sshd, and DHCP on the first NIC (net.ifnames=0 names it eth0).
touch "$root/etc/cloud/cloud-init.disabled"
mkdir -p "$root/etc/systemd/system/ssh.service.d"
# Debian's unit checks the configuration (sshd -t) first, which fails without
# host keys: make the keys, then check. ECDSA and Ed25519 only: an RSA key
# takes some 20 s to generate under software emulation.
cat > "$root/etc/systemd/system/ssh.service.d/host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'for t in ecdsa ed25519; do f=/etc/ssh/ssh_host_$${t}_key; [ -e $$f ] || ssh-keygen -q -t $$t -N "" -f $$f; done'
ExecStartPre=/usr/sbin/sshd -t
EOF
cat > "$root/etc/network/interfaces.d/eth0" <<'EOF'
auto eth0
iface eth0 inet dhcp
EOF
# Vagrant logs in by key only.
cat > "$root/etc/ssh/sshd_config.d/vagrant.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
UseDNS no
EOF
echo iaas-dev-node > "$root/etc/hostname"
used_mb=$(df -m --output=used "$root" | tail -n 1 | tr -d ' ')
umount "$root"
losetup -d "$loop"
loop=""

step "box.img (qcow2, zstd)"
virtual_gb=$(( (size_mb + 1023) / 1024 ))
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd "$work/disk.raw" "$work/box.img"
rm -f "$work/disk.raw"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$virtual_gb" > "$work/metadata.json"
printf '%s\n' "${BOX_RECIPE:-}" > "$work/box-recipe"
mkdir -p "$(dirname "$out")"
tar -C "$work" -cf "$out.tmp" metadata.json box-recipe box.img
mv -f "$out.tmp" "$out"
step "done: $out ($(du -h "$out" | cut -f1); ${used_mb} MiB used in the guest's file system)"
