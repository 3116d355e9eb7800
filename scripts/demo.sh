#!/usr/bin/env bash
# The main job: set up this machine (packages, virtualenv), then
# playbooks/demo.yml: the lab hypervisor, its network and base image, one VM
# from a linked clone with a cloud-init seed, SSH into it, run a command, print
# how to reach it. Run it again: nothing changes, and it says so.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
require_root

phase "set-up (packages, virtualenv)"
IAAS_KVM_SKIP_SITE=1 "$repo/scripts/setup.sh"
phase_done

phase "playbooks/demo.yml"
run_playbook playbooks/demo.yml "$@"
phase_done

print_phases
