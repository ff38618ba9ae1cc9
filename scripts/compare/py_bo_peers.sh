#!/usr/bin/env bash
# Side by side from Python (issue 18): gradlab.bayesopt.minimize (its defaults) vs
# scikit-optimize gp_minimize (10 initial points) and BoTorch SingleTaskGP + LogEI
# (optimize_acqf num_restarts=10, raw_samples=512, 10 Sobol initial points) in ONE Python
# process, interleaved per (function, seed), THREADS threads for everyone (RAYON_NUM_THREADS,
# torch.set_num_threads, OMP/MKL/OPENBLAS_NUM_THREADS). Same functions, bounds, seeds, budget
# and JSON lines as bo_peers.sh; overhead per iteration = wall time between two objective calls.
# Then the table (best value mean ± std, paired t-test, overhead and peer / ours ratios).
# Installs the peers into scripts/compare/.venv and gradlab into it (release build) unless
# GRADLAB_NO_INSTALL=1 (then the gradlab first on PYTHONPATH is used). BO_PEERS_OUT: output file.
# usage: scripts/compare/py_bo_peers.sh [SEEDS=0-2] [BUDGET=100] [THREADS=1] [FUNCTIONS=branin,hartmann6,levy5]
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds="${1:-0-2}"
budget="${2:-100}"
t="${3:-1}"
functions="${4:-branin,hartmann6,levy5}"
py="$(scripts/compare/setup-venv.sh | tail -1)"
scripts/compare/install-gradlab.sh "$py"
out="${BO_PEERS_OUT:-$(mktemp -d)/results.jsonl}"
: > "$out"
RAYON_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
  "$py" scripts/compare/bo_peers.py run-all "$functions" "$seeds" "$budget" "$t" | tee -a "$out"
echo "results: $out"
"$py" scripts/compare/bo_peers.py table "$out"
