#!/usr/bin/env bash
# Set up this machine as the lab hypervisor: Debian/Ubuntu packages, the
# controller virtualenv, then playbooks/site.yml on localhost (roles/hypervisor
# starts libvirtd inside the lab namespace and ensures the default pool and the
# lab network; roles/image builds or reuses the base image).
#
# Idempotent and safe to re-run; run as root on Debian 12 or Ubuntu 22.04/24.04.
# Environment:
#   IAAS_KVM_VENV        virtualenv path (default /opt/iaas-kvm/venv)
#   IAAS_KVM_SKIP_SITE=1 stop after packages and the virtualenv
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

require_root

# Packages the controller and the test pipeline need; the hypervisor role
# installs libvirt, QEMU and the modules' Python bindings itself.
# openssh-server and tini are for the lab's fleet of simulated hypervisors
# (scripts/lab.sh fleet): an sshd inside each, and an init that reaps orphans.
packages=(
  python3 python3-venv python3-dev python3-apt gcc pkg-config libvirt-dev
  git openssh-client iproute2 ca-certificates
  netcat-openbsd cloud-image-utils genisoimage shellcheck vagrant vagrant-libvirt
  openssh-server tini
)

phase "packages"
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Packages must not start their services here (an sshd in the machine's own
  # namespace, for one): the lab starts what it needs where it belongs.
  policy_rc_d=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_rc_d=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc_d"
    chmod 0755 "$policy_rc_d"
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" || { [ -z "$policy_rc_d" ] || rm -f "$policy_rc_d"; exit 1; }
  [ -z "$policy_rc_d" ] || rm -f "$policy_rc_d"
else
  echo "all ${#packages[@]} packages present"
fi
phase_done

phase "virtualenv"
req_hash=$(cat "$repo/requirements.txt" "$repo/requirements-test.txt" | sha256sum | cut -c1-16)
stamp="$IAAS_KVM_VENV/.iaas-kvm-requirements-$req_hash"
if [ ! -x "$IAAS_KVM_VENV/bin/python" ]; then
  /usr/bin/python3 -m venv "$IAAS_KVM_VENV"
fi
if [ ! -e "$stamp" ]; then
  "$IAAS_KVM_VENV/bin/pip" install -q --upgrade pip
  "$IAAS_KVM_VENV/bin/pip" install -q -r "$repo/requirements-test.txt"
  rm -f "$IAAS_KVM_VENV"/.iaas-kvm-requirements-*
  touch "$stamp"
else
  echo "requirements unchanged ($req_hash)"
fi
phase_done

if [ "${IAAS_KVM_SKIP_SITE:-0}" = 1 ]; then
  exit 0
fi

phase "hypervisor and base image (playbooks/site.yml)"
run_playbook playbooks/site.yml
phase_done

print_phases
