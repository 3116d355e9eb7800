#!/usr/bin/env bash
# Run every test of the collection, doing the set-up first (scripts/setup.sh):
#
#   sudo scripts/test.sh            all stages
#   sudo scripts/test.sh unit lint  only these stages (setup always runs unless IAAS_KVM_SKIP_SETUP=1)
#
# Stages: lint, build, sanity, unit, integration, roles, molecule, vagrant, benchmarks.
# The lab stages fail (never skip) when the lab cannot start. Every stage runs;
# the script exits non-zero when any failed, and prints how long each took.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
require_root
cd "$repo" || exit 1

all_stages=(lint build sanity unit integration roles molecule vagrant benchmarks)
if [ "$#" -gt 0 ]; then stages=("$@"); else stages=("${all_stages[@]}"); fi
for s in "${stages[@]}"; do
  case " ${all_stages[*]} " in *" $s "*) ;; *) echo "unknown stage '$s' (stages: ${all_stages[*]})" >&2; exit 2 ;; esac
done

work=$(mktemp -d /tmp/iaas-kvm-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=()

run_stage() {
  local name=$1
  shift
  phase "$name"
  if "$@"; then
    phase_done
  else
    phase_done
    failed+=("$name")
    echo "!!! stage $name FAILED"
  fi
}

python_files() { git ls-files -co --exclude-standard -- '*.py'; }
yaml_files() { git ls-files -co --exclude-standard -- '*.yml' '*.yaml' | grep -v '^changelogs/changelog.yaml$'; }
shell_files() { git ls-files -co --exclude-standard -- 'scripts/*.sh' '.ci/*' 'roles/*/files/*' | xargs -r grep -lE '^#!.*(ba)?sh' ; }

stage_lint() {
  local rc=0
  ruff check --output-format concise . || rc=1
  ruff format --check --quiet . || { echo "ruff format: files need formatting (run ruff format .)"; rc=1; }
  yaml_files | xargs yamllint -s || rc=1
  shell_files | xargs -r shellcheck -x || rc=1
  ansible-lint --profile production --offline -q || rc=1
  return $rc
}

stage_build() {
  local rc=0 playbook module
  ansible-galaxy collection build --force --output-path "$work/build" . >/dev/null || rc=1
  ls "$work"/build/iaas-kvm-*.tar.gz || rc=1
  for playbook in playbooks/*.yml; do
    ansible-playbook -i inventories/local --syntax-check "$playbook" >/dev/null || { echo "syntax-check failed: $playbook"; rc=1; }
  done
  for module in plugins/modules/*.py; do
    module=$(basename "$module" .py)
    ansible-doc -t module "iaas.kvm.$module" >/dev/null || { echo "ansible-doc failed: $module"; rc=1; }
  done
  if [ -f Vagrantfile ]; then
    # Both profiles: the public box (on your own machine) and the lab's.
    (cd "$repo" && VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate) || rc=1
    (cd "$repo" && VAGRANT_DEFAULT_PROVIDER=libvirt IAAS_KVM_DEVNODE=lab vagrant validate) || rc=1
  fi
  return $rc
}

stage_sanity() {
  local dest="$work/ansible_collections/iaas/kvm"
  mkdir -p "$dest" "$HOME/.ansible/test/cache"
  cp "$repo/scripts/ansible-test-get-pip.py" "$HOME/.ansible/test/cache/get_pip_24_2.py"
  # ansible-test wants the collection at .../ansible_collections/iaas/kvm and refuses a symlink.
  # collections/ (the link that lets playbooks find the checkout) is not part of the built collection either.
  git ls-files -z -co --exclude-standard | grep -zv '^collections/' | tar --null -T - -cf - | tar -xf - -C "$dest"
  (cd "$dest" && git init -q && git add -A && ansible-test sanity --color no --requirements --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')")
}

stage_unit() {
  pytest -q tests/unit
}

stage_integration() {
  "$repo/scripts/lab.sh" status || { echo "the lab's libvirtd is not running inside its namespace"; return 1; }
  IAAS_KVM_LAB_SWEEP=1 pytest -q -m lab tests/integration || return 1
  # Faults restart libvirtd, which closes every connection: a session of their own.
  IAAS_KVM_LAB_SWEEP=1 pytest -q -m lab tests/faults
}

stage_roles() {
  if [ -d tests/roles ]; then
    pytest -q tests/roles
  else
    echo "no role tests"
  fi
}

stage_molecule() {
  if [ ! -d extensions/molecule ] || [ -z "$(ls -A extensions/molecule 2>/dev/null)" ]; then
    echo "no molecule scenarios"
    return 0
  fi
  mkdir -p "$work/collections/ansible_collections/iaas"
  ln -sfn "$repo" "$work/collections/ansible_collections/iaas/kvm"
  (cd extensions && ANSIBLE_COLLECTIONS_PATH="$work/collections" molecule test --all)
}

stage_vagrant() {
  # The dev node: the box (built once, cached by its recipe), vagrant up with the
  # Ansible provisioner, a second provision that changes nothing, checks over
  # vagrant ssh and ssh-config, destroy; each step prints its time.
  "$repo/scripts/lab.sh" status || { echo "the lab's libvirtd is not running inside its namespace"; return 1; }
  pytest -q -s tests/vagrant
}

stage_benchmarks() {
  # The CI-sized variants of the benchmarks that need no guest boot; every
  # benchmark at full size is its own command: scripts/bench.sh.
  "$repo/scripts/bench.sh" --quick vm_loop storage seed network
}

if [ "${IAAS_KVM_SKIP_SETUP:-0}" != 1 ]; then
  run_stage setup "$repo/scripts/setup.sh"
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "set-up failed; no tests run" >&2
  exit 1
fi
for s in "${stages[@]}"; do
  run_stage "$s" "stage_$s"
done

# Guest networks belong inside the lab namespace: none may appear in the machine's own.
if ip -br link show type bridge 2>/dev/null | awk '{print $1}' | grep -E '^(virbr|iaast)'; then
  echo "!!! a libvirt bridge exists in the machine's own network namespace"
  failed+=("bridge-check")
fi
if [ -n "$(git status --porcelain)" ]; then
  echo "!!! the test run left changes in the checkout:"
  git status --porcelain
  failed+=("git-status")
fi

print_phases
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all stages passed"
