#!/usr/bin/env bash
# The dev node iaas-dev-node in the lab: Vagrant with the libvirt provider
# against the lab's libvirtd, run inside the lab's network namespace so that
# Vagrant's SSH and the Ansible provisioner's traffic stay there.
#
#   scripts/devnode.sh box           build the box (cached by a hash of its recipe) and add it to Vagrant
#   scripts/devnode.sh up [ARG...]   vagrant up --provider=libvirt (the first up runs the Ansible provisioner)
#   scripts/devnode.sh provision     run the Ansible provisioner (playbooks/site.yml) again
#   scripts/devnode.sh ssh [ARG...]  vagrant ssh, e.g. ssh -c 'sudo virsh -c qemu:///system net-list --all'
#   scripts/devnode.sh ssh-config    SSH settings for editors and ssh -F (they reach the node through the namespace)
#   scripts/devnode.sh status        vagrant status
#   scripts/devnode.sh destroy       vagrant destroy, then the box's base volumes that nothing uses any more
#
# Environment (the Vagrantfile's lab profile reads the same variables):
#   IAAS_KVM_DEVNODE_BOX     box name (default iaas-kvm/dev-node)
#   IAAS_KVM_DEVNODE_PREFIX  prefix of the libvirt domain and management network names (default none)
#   IAAS_KVM_DEVNODE_SUBNET  vagrant-libvirt's management network (default 192.168.190.0/24)
#   IAAS_KVM_DEVNODE_CACHE   where built boxes are kept (default /var/cache/iaas-kvm/boxes)
#   IAAS_KVM_LAB_NETNS       the lab's network namespace (default iaas-lab)
#   VAGRANT_DOTFILE_PATH     Vagrant's machine state (default .vagrant in the checkout)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

export IAAS_KVM_DEVNODE=lab
export IAAS_KVM_DEVNODE_BOX=${IAAS_KVM_DEVNODE_BOX:-iaas-kvm/dev-node}
export IAAS_KVM_LAB_NETNS=${IAAS_KVM_LAB_NETNS:-iaas-lab}
export VAGRANT_CWD=$repo
cache=${IAAS_KVM_DEVNODE_CACHE:-/var/cache/iaas-kvm/boxes}
box=$IAAS_KVM_DEVNODE_BOX
netns=$IAAS_KVM_LAB_NETNS
# vagrant-libvirt uploads the box into this pool (its storage_pool_name default).
pool=default

die() {
  echo "devnode: $*" >&2
  exit 1
}

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# Vagrant keeps a box NAME under boxes/NAME with '/' spelt -VAGRANTSLASH-.
box_dir() { echo "${VAGRANT_HOME:-$HOME/.vagrant.d}/boxes/${box//\//-VAGRANTSLASH-}/0/libvirt"; }

require_vagrant() {
  command -v vagrant >/dev/null ||
    die "vagrant is not installed: apt-get install vagrant vagrant-libvirt (scripts/setup.sh installs both)."
  vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt ' ||
    die "the vagrant-libvirt plugin is missing: apt-get install vagrant-libvirt (scripts/setup.sh installs it)."
}

require_lab() {
  "$repo/scripts/lab.sh" status >/dev/null 2>&1 ||
    die "the lab is not running (no libvirtd answers inside network namespace $netns): start it with scripts/lab.sh start or scripts/setup.sh."
}

# The box's recipe: the image recipe, the box recipe, the packages and the key.
# Packages: the hypervisor role's, and python3-apt for Ansible's apt module.
box_packages() {
  python - "$repo/roles/hypervisor/vars/main.yml" <<'EOF'
import sys

import yaml

with open(sys.argv[1]) as f:
    packages = yaml.safe_load(f)["_hypervisor_packages"]["Debian"]
print(",".join([*packages, "python3-apt"]))
EOF
}

vagrant_public_key() {
  local dir
  dir=$(ruby -e 'print Gem::Specification.find_by_name("vagrant").gem_dir' 2>/dev/null) ||
    die "cannot find Vagrant's gem directory (and its insecure key) with ruby."
  [ -r "$dir/keys/vagrant.pub" ] || die "Vagrant's insecure public key $dir/keys/vagrant.pub is missing."
  echo "$dir/keys/vagrant.pub"
}

box_size_mb=4096

box_recipe() {
  {
    cat "$repo/roles/image/files/build-debian-image.sh" "$repo/scripts/build-devnode-box.sh" "$1"
    echo "$2 $box_size_mb"
  } | sha256sum | cut -c1-12
}

added_recipe() { cat "$(box_dir)/box-recipe" 2>/dev/null || true; }

add_box() {
  local file=$1 recipe=$2
  [ "$(added_recipe)" = "$recipe" ] && return 0
  echo "devnode: adding box $box from $file"
  vagrant box add --force --name "$box" "$file"
}

cmd_box() {
  require_vagrant
  local key packages recipe file
  key=$(vagrant_public_key)
  packages=$(box_packages)
  recipe=$(box_recipe "$key" "$packages")
  file=$cache/dev-node-$recipe.box
  if [ -s "$file" ]; then
    echo "devnode: box $file is built (recipe $recipe)"
  else
    echo "devnode: building box $file (recipe $recipe; about two minutes)"
    BOX_PACKAGES=$packages BOX_PUBLIC_KEY=$key BOX_RECIPE=$recipe BOX_SIZE_MB=$box_size_mb \
      "$repo/scripts/build-devnode-box.sh" "$file"
    # Boxes of older recipes are never used again.
    find "$cache" -maxdepth 1 -name 'dev-node-*.box' ! -name "dev-node-$recipe.box" -delete
  fi
  add_box "$file" "$recipe"
}

# The box must be built for the current recipe; up adds it to Vagrant.
require_box() {
  local key packages recipe file
  key=$(vagrant_public_key)
  packages=$(box_packages)
  recipe=$(box_recipe "$key" "$packages")
  file=$cache/dev-node-$recipe.box
  if [ ! -s "$file" ]; then
    [ "$(added_recipe)" = "$recipe" ] && return 0
    die "the box $box is not built for the current recipe ($recipe): run scripts/devnode.sh box first (about two minutes)."
  fi
  add_box "$file" "$recipe"
}

in_lab() { ip netns exec "$netns" "$@"; }

# vagrant-libvirt names a box's base volume <box>_vagrant_box_image_<version>_box.img
# and leaves it in the pool when the machine is destroyed.
remove_box_volumes() {
  run_playbook playbooks/vagrant_box_volumes.yml \
    -e "vagrant_box_volume_prefix=${box//\//-VAGRANTSLASH-}_vagrant_box_image_" -e "vagrant_box_pool=$pool"
}

[ "$#" -gt 0 ] || usage
require_root
command=$1
shift
case "$command" in
  box) cmd_box ;;
  up)
    require_vagrant
    require_lab
    require_box
    in_lab vagrant up --provider=libvirt "$@"
    ;;
  provision | ssh | ssh-config | status)
    require_vagrant
    require_lab
    in_lab vagrant "$command" "$@"
    ;;
  destroy)
    require_vagrant
    require_lab
    in_lab vagrant destroy --force "$@"
    remove_box_volumes
    ;;
  -h | --help | help) usage ;;
  *) echo "devnode: unknown command '$command'" >&2; usage ;;
esac
