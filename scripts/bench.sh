#!/usr/bin/env bash
# Run the benchmarks (tests/benchmarks/bench_*.py) against the lab and print
# their figures and a verdict line per target. The full run exits non-zero
# when a target was missed; --quick (the test pipeline's subset, scripts/test.sh
# benchmarks) prints the same lines and never fails on timing.
#
#   sudo scripts/bench.sh                 every benchmark, full size
#   sudo scripts/bench.sh --quick         every benchmark, CI size
#   sudo scripts/bench.sh vm_loop seed    only these (names without bench_ and .py)
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"
require_root
cd "$repo" || exit 1

quick=()
names=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    *) names+=("$arg") ;;
  esac
done
if [ "${#names[@]}" -eq 0 ]; then
  for f in tests/benchmarks/bench_*.py; do names+=("$(basename "$f" .py | sed 's/^bench_//')"); done
fi

"$repo/scripts/lab.sh" status || { echo "the lab's libvirtd is not running; run scripts/setup.sh" >&2; exit 1; }
rc=0
for name in "${names[@]}"; do
  phase "bench_$name ${quick[*]}"
  python "tests/benchmarks/bench_$name.py" "${quick[@]}" || rc=1
  phase_done
done
print_phases
exit $rc
