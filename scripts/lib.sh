# shellcheck shell=bash
# Helpers shared by the scripts (sourced, not run). The caller sets $repo.
: "${repo:?scripts/lib.sh needs \$repo}"

IAAS_KVM_VENV=${IAAS_KVM_VENV:-/opt/iaas-kvm/venv}
export IAAS_KVM_VENV
export PATH="$IAAS_KVM_VENV/bin:$PATH"
# Ansible finds the collection through ansible.cfg (collections/ is a link to the checkout).
export ANSIBLE_CONFIG="$repo/ansible.cfg"
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
export PYTHONDONTWRITEBYTECODE=1

_phase_names=()
_phase_secs=()
_phase_name=""
_phase_start=0

require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$(basename "$0"): run as root (sudo $0)" >&2
    exit 1
  fi
}

phase() {
  _phase_name=$1
  _phase_start=$(date +%s.%N)
  printf '\n==> %s\n' "$_phase_name"
}

phase_done() {
  local end secs
  end=$(date +%s.%N)
  secs=$(awk -v a="$_phase_start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  _phase_names+=("$_phase_name")
  _phase_secs+=("$secs")
  printf '<== %s: %ss\n' "$_phase_name" "$secs"
}

print_phases() {
  local i total=0
  printf '\n%-58s %10s\n' "phase" "seconds"
  for i in "${!_phase_names[@]}"; do
    printf '%-58s %10s\n' "${_phase_names[$i]}" "${_phase_secs[$i]}"
    total=$(awk -v a="$total" -v b="${_phase_secs[$i]}" 'BEGIN { printf "%.1f", a + b }')
  done
  printf '%-58s %10s\n' "total" "$total"
}

run_playbook() {
  (cd "$repo" && ansible-playbook -i inventories/local "$@")
}
