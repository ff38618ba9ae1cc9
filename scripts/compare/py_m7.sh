#!/usr/bin/env bash
# M7 box-model throughput from Python (issue 18): gradlab.aerosol.M7().step on [N, 33] cells
# (one call) and one Python call per cell, on 1 and 2 threads (RAYON_NUM_THREADS, one process
# each); prints one JSON line per workload. Installs gradlab into scripts/compare/.venv (release
# build) unless GRADLAB_NO_INSTALL=1 (then the gradlab first on PYTHONPATH is used).
# usage: scripts/compare/py_m7.sh [N=20000] [L=2000] [REPEATS=5] [THREADS=1,2]
set -euo pipefail
cd "$(dirname "$0")/../.."
py="$(scripts/compare/setup-venv.sh | tail -1)"
scripts/compare/install-gradlab.sh "$py"
threads="${4:-1,2}"
for t in ${threads//,/ }; do
  RAYON_NUM_THREADS=$t OMP_NUM_THREADS=$t "$py" scripts/compare/py_m7.py "${1:-20000}" "${2:-2000}" "${3:-5}"
done
