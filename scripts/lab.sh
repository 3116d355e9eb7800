#!/usr/bin/env bash
# The lab helper of this checkout: runs roles/hypervisor/files/iaas-kvm-lab,
# the same script the hypervisor role installs as /usr/local/sbin/iaas-kvm-lab.
#   scripts/lab.sh start|stop|restart|status
#   scripts/lab.sh exec ssh debian@192.168.122.10   (any command inside the lab namespace)
exec "$(cd "$(dirname "$0")/.." && pwd)/roles/hypervisor/files/iaas-kvm-lab" "$@"
