#!/usr/bin/env bash
# Run every test of the collection, doing the set-up first (scripts/setup.sh):
#
#   sudo scripts/test.sh            all stages
#   sudo scripts/test.sh unit lint  only these stages (setup always runs unless IAAS_KVM_SKIP_SETUP=1)
#
# Stages: lint, build, sanity, unit, integration, roles, molecule, fleet, vagrant, benchmarks.
# The lab stages fail (never skip) when the lab cannot start. Every stage runs;
# the script exits non-zero when any failed, and prints how long each took.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
require_root
cd "$repo" || exit 1

all_stages=(lint build sanity unit integration roles molecule fleet vagrant benchmarks)
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
shell_files() { git ls-files -co --exclude-standard -- 'scripts/*.sh' '.ci/*' 'roles/*/files/*' 'inventories/*/*.sh' | xargs -r grep -lE '^#!.*(ba)?sh' ; }

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
  local rc=0 playbook
  # The collection as users get it (tests/packaging): ansible-galaxy collection
  # build without warnings; the tarball installed into an empty directory, with
  # only that directory on the collections path and no ansible.cfg of the
  # checkout, runs a module from there, and ansible-doc renders every module's
  # documentation from there. Then ansible-builder create writes the build context
  # of the example execution environment (extensions/ee), and the context's own
  # scripts install the collection and pick up its requirements. create writes the
  # context only: these machines have no container runtime, so no image is built.
  pytest -q tests/packaging || rc=1
  for playbook in playbooks/*.yml; do
    ansible-playbook -i inventories/local --syntax-check "$playbook" >/dev/null || { echo "syntax-check failed: $playbook"; rc=1; }
  done
  # The filter and inventory plugins' documentation, from the checkout (tests/packaging covers the modules).
  for plugin in plugins/filter/*.yml plugins/inventory/*.py; do
    kind=$(basename "$(dirname "$plugin")")
    plugin=$(basename "${plugin%.*}")
    ansible-doc -t "$kind" "iaas.kvm.$plugin" >/dev/null || { echo "ansible-doc failed: $kind $plugin"; rc=1; }
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
  IAAS_KVM_LAB_SWEEP=1 pytest -q --durations=15 -m lab tests/integration || return 1
  # Faults restart libvirtd, which closes every connection: a session of their own.
  IAAS_KVM_LAB_SWEEP=1 pytest -q -m lab tests/faults
}

# A stage that finds nothing to run fails: pytest does by itself (exit code 5
# when it collects no test); these checks cover what would otherwise pass empty.
stage_roles() {
  [ -n "$(find tests/roles -name 'test_*.py' 2>/dev/null)" ] || { echo "no role tests in tests/roles"; return 1; }
  pytest -q tests/roles
}

molecule_scenarios() { find extensions/molecule -mindepth 2 -maxdepth 2 -name molecule.yml -printf '%h\n' 2>/dev/null | sort; }

molecule_collections() {
  # Molecule finds the collection only through ANSIBLE_COLLECTIONS_PATH.
  mkdir -p "$work/collections/ansible_collections/iaas"
  ln -sfn "$repo" "$work/collections/ansible_collections/iaas/kvm"
}

stage_molecule() {
  local scenario rc=0
  [ -n "$(molecule_scenarios)" ] || { echo "no Molecule scenarios in extensions/molecule"; return 1; }
  # Molecule's testinfra verifier skips a scenario without test files, with a warning only.
  for scenario in $(molecule_scenarios); do
    if [ -z "$(find "$scenario/tests" -name 'test_*.py' 2>/dev/null)" ]; then
      echo "scenario $(basename "$scenario") has no testinfra tests ($scenario/tests/test_*.py)"
      rc=1
    fi
  done
  [ "$rc" = 0 ] || return 1
  molecule_collections
  # The scenario fleet runs in the fleet stage, on the fleet it starts.
  (cd extensions && ANSIBLE_COLLECTIONS_PATH="$work/collections" molecule test --all --exclude fleet)
}

stage_fleet() {
  # One fleet boot for every fleet test: four simulated hypervisors (the
  # benchmark spreads VMs over 1, 2 and 4; the tests use the first three),
  # playbooks/site.yml over SSH, the tests in tests/fleet, the Molecule
  # scenario fleet and the quick fan-out and migration benchmarks; then the
  # fleet is removed.
  local lab="$repo/scripts/lab.sh" rc=0 started
  started=$(date +%s.%N)
  "$lab" fleet start 4 || { "$lab" fleet clean; return 1; }
  awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "fleet of 4 started in %.1fs\n", b - a }'
  started=$(date +%s.%N)
  ansible-playbook -i inventories/lab-fleet playbooks/site.yml || rc=1
  awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "site.yml on the fleet, first run: %.1fs\n", b - a }'
  if [ "$rc" = 0 ]; then
    pytest -q -s --durations=15 -m fleet tests/fleet || rc=1
    molecule_collections
    (cd extensions && ANSIBLE_COLLECTIONS_PATH="$work/collections" molecule test -s fleet) || rc=1
    python tests/benchmarks/bench_fleet.py --quick || rc=1
    python tests/benchmarks/bench_migrate.py --quick || rc=1
  fi
  "$lab" fleet clean || rc=1
  return $rc
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
  "$repo/scripts/bench.sh" --quick vm_loop storage seed network placement
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
