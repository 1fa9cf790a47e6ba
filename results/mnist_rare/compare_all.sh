#!/bin/bash
# The MNIST rare-regime comparison with BaNEL's runs in it (issue 22): Algorithm 2 (banel) and
# Algorithm 1 (banel_sequential), seeds 0-2, beside the baselines in compare/runs, one
# `python -m banel_ray.compare` table (its P(BaNEL run > this) column needs banel runs):
#     bash results/mnist_rare/compare_all.sh   # writes results/mnist_rare/compare/table_with_banel.md
# The run folders stay where they are; a temporary folder of links names them as compare does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/runs"
for d in "$here"/compare/runs/*; do ln -s "$d" "$tmp/runs/$(basename "$d")"; done
for s in 0 1 2; do
    ln -s "$here/alg2_s$s" "$tmp/runs/banel-s$s"
    ln -s "$here/alg1_s$s" "$tmp/runs/banel_sequential-s$s"
done
python=${PYTHON:-$here/../../.venv/bin/python}
"$python" -m banel_ray.compare --from-runs "$tmp/runs" --out "$tmp" > /dev/null
cp "$tmp/table.md" "$here/compare/table_with_banel.md"
echo "wrote $here/compare/table_with_banel.md"
