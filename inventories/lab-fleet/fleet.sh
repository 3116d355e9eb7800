#!/usr/bin/env bash
# Inventory of the lab's running fleet (scripts/lab.sh fleet start N), a script
# inventory for Ansible (--list, --host NAME).
#
# Prints the group hypervisors with hv1..hvN, N the fleet's size that the lab
# helper records in its state directory (IAAS_KVM_FLEET_DIR, default
# /var/lib/iaas-kvm-fleet), and that directory as iaas_fleet_dir: the fleet's
# SSH configuration, key and known_hosts live there (group_vars/ uses them).
set -euo pipefail

dir=${IAAS_KVM_FLEET_DIR:-/var/lib/iaas-kvm-fleet}

if [ "${1:-}" = "--host" ]; then
  echo "{}"
  exit 0
fi
size=$(cat "$dir/size" 2>/dev/null || echo 0)
if ! [[ "$size" =~ ^[1-8]$ ]]; then
  echo "no lab fleet in $dir: start one with scripts/lab.sh fleet start N" >&2
  exit 1
fi
hosts="" hostvars=""
for k in $(seq 1 "$size"); do
  hosts+="${hosts:+, }\"hv$k\""
  hostvars+="${hostvars:+, }\"hv$k\": {\"ansible_host\": \"192.168.149.$((10 + k))\"}"
done
printf '{"all": {"vars": {"iaas_fleet_dir": "%s"}}, "hypervisors": {"hosts": [%s]}, "_meta": {"hostvars": {%s}}}\n' \
  "$dir" "$hosts" "$hostvars"
