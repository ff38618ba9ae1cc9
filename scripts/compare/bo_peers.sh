#!/usr/bin/env bash
# Side by side (issue 22): gradlab-bayesopt's default Study against scikit-optimize gp_minimize
# (10 initial points) and BoTorch SingleTaskGP + LogEI (optimize_acqf num_restarts=10,
# raw_samples=512, 10 Sobol initial points) on Branin, Hartmann-6, Levy-5 and Ackley-5: same
# budget, same seeds, one process at a time, THREADS threads each (RAYON_NUM_THREADS for ours,
# torch.set_num_threads and OMP_NUM_THREADS for the peers). Prints one JSON line per run, then
# the table: best value mean ± std, a one-sided paired t-test over seeds against the better
# peer, overhead per iteration (everything but the objective) and the ratios peer / ours.
# usage: scripts/compare/bo_peers.sh [SEEDS=0-4] [BUDGET=100] [THREADS=1] [FUNCTIONS] [OUR_CONFIG]
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds="${1:-0-4}"
budget="${2:-100}"
threads="${3:-1}"
functions="${4:-branin,hartmann6,levy5,ackley5}"
config="${5:-}"
py="$(scripts/compare/setup-venv.sh | tail -1)"
cargo build --release -q -p gradlab-bayesopt --example bo_peer
out="${BO_PEERS_OUT:-$(mktemp -d)/results.jsonl}"
: > "$out"
ours=(--functions "$functions" --seeds "$seeds" --budget "$budget")
[ -n "$config" ] && ours+=(--config "$config")
for t in ${threads//,/ }; do
  RAYON_NUM_THREADS=$t target/release/examples/bo_peer "${ours[@]}" | tee -a "$out"
  for impl in skopt botorch; do
    OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
      "$py" scripts/compare/bo_peers.py run "$impl" "$functions" "$seeds" "$budget" "$t" | tee -a "$out"
  done
done
echo "results: $out"
"$py" scripts/compare/bo_peers.py table "$out"
