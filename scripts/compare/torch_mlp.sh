#!/usr/bin/env bash
# Side by side: the shared core's MLP workloads (issue 17), gradlab vs PyTorch, same data and
# initial weights, 1 and 2 threads, one process at a time. Prints one JSON line per workload and
# implementation, then the ratios (gradlab throughput / PyTorch throughput; > 1 means gradlab is
# faster); `infer_emulator` is Emulator::predict (normalisers and completion head included)
# against PyTorch's plain-network `infer_relu`. usage: scripts/compare/torch_mlp.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/../.."
r="${1:-3}"
py="$(scripts/compare/setup-venv.sh | tail -1)"
cargo build --release -q --workspace --example mlp_peer --example emulator_peer
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
out="$dir/results.jsonl"
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads target/release/examples/mlp_peer "$dir" "$r" | tee -a "$out"
  RAYON_NUM_THREADS=$threads target/release/examples/emulator_peer "$dir" "$r" | tee -a "$out"
  OMP_NUM_THREADS=$threads "$py" scripts/compare/torch_mlp.py "$dir" "$threads" "$r" | tee -a "$out"
done
"$py" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["impl"] != "gradlab":
        continue
    # Emulator::predict (normalisers and head included) against PyTorch's plain network.
    work = "infer_relu" if r["work"] == "infer_emulator" else r["work"]
    peer = next(p for p in rows if p["impl"] != "gradlab" and p["work"] == work and str(p["threads"]) == str(r["threads"]))
    # Throughput ratio: time(PyTorch) / time(gradlab).
    print(f'{r["work"]:<11} {r["threads"]} thread(s): gradlab {r["median_ms"]:.1f} ms, {peer["impl"]} {peer["median_ms"]:.1f} ms '
          f'-> ours / theirs = {peer["median_ms"] / r["median_ms"]:.2f}')
PY
