#!/usr/bin/env bash
# Side by side (issue 18): gradlab.lap.linear_sum_assignment vs scipy linear_sum_assignment and
# lap.lapjv in ONE Python process on identical seeded matrices with forbidden entries, THREADS
# threads for everyone (RAYON_NUM_THREADS for ours; the peers are single-threaded C/C++).
# Installs the peers into scripts/compare/.venv (requirements.txt) and gradlab into it (release
# build, the workspace's target dir).
# usage: scripts/compare/lap_peers.sh [SIZES=500x550,2000x2200] [FORBIDDEN=0.2] [REPEATS=7] [THREADS=1]
set -euo pipefail
cd "$(dirname "$0")/../.."
py="$(scripts/compare/setup-venv.sh | tail -1)"
scripts/compare/install-gradlab.sh "$py"
t="${4:-1}"
RAYON_NUM_THREADS=$t OMP_NUM_THREADS=$t "$py" scripts/compare/lap_peers.py "${1:-500x550,2000x2200}" "${2:-0.2}" "${3:-7}"
