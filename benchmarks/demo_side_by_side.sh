#!/usr/bin/env bash
# The whole demo, this checkout against an older commit, alternating (new, old, new, old, ...), each into a
# fresh folder. The older commit runs from `git archive REV` on this checkout's virtual environment.
#
#     bash benchmarks/demo_side_by_side.sh OLD_REV [ROUNDS] [OUT_DIR]
#
# Prints one line per demo: its wall time and the CPU time the whole machine spent meanwhile (from
# /proc/stat: run it on an otherwise idle machine), and ends with the median wall times of both versions.
# FIRST_ROUND=N in the environment starts at round N, adding to the times of an earlier call into OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:?usage: demo_side_by_side.sh OLD_REV [ROUNDS] [OUT_DIR]}
rounds=${2:-1}
out=${3:-demo-side-by-side}
mkdir -p "$out/old-tree"
git archive "$old_rev" src configs pyproject.toml | tar -x -C "$out/old-tree"

busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }  # user nice system irq softirq
one_demo() {  # version tree folder
  local start_busy start end
  rm -rf "$3"
  start_busy=$(busy)
  start=$(date +%s.%N)
  PYTHONPATH="$2/src" .venv/bin/python -c "import sys; from gradremedy.cli import main; sys.exit(main())" \
    demo --out "$3" > "$3.log" 2>&1
  end=$(date +%s.%N)
  printf '%s %s: wall %.0f s, machine cpu %.0f s\n' "$1" "$3" "$(echo "$end - $start" | bc)" \
    "$(echo "($(busy) - $start_busy) / 100" | bc -l)" | tee -a "$out/times.txt"
}
for round in $(seq "${FIRST_ROUND:-1}" "$rounds"); do
  one_demo new "$PWD" "$out/new-$round"
  one_demo old "$out/old-tree" "$out/old-$round"
done
for version in new old; do
  grep "^$version " "$out/times.txt" | sed 's/.*wall \([0-9]*\) s.*/\1/' | sort -n \
    | awk -v v="$version" '{a[NR] = $1} END {print v "_median_wall_s: " a[int((NR + 1) / 2)]}'
done
