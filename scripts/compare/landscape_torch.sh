#!/usr/bin/env bash
# Side by side: loss surface and top Hessian eigenvalues (issue 17), gradlab vs PyTorch /
# PyHessian, same network, data, parameters and directions, 1 and 2 threads, one process at a
# time. Prints one JSON line per workload and implementation, then the ratios (gradlab
# throughput / peer throughput; > 1 means gradlab is faster).
# usage: scripts/compare/landscape_torch.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/../.."
r="${1:-3}"
py="$(scripts/compare/setup-venv.sh | tail -1)"
cargo build --release -q --workspace --example landscape_peer
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
out="$dir/results.jsonl"
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads target/release/examples/landscape_peer "$dir" "$r" | tee -a "$out"
  OMP_NUM_THREADS=$threads "$py" scripts/compare/landscape_torch.py "$dir" "$threads" "$r" | tee -a "$out"
done
"$py" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    if r["impl"] != "gradlab":
        continue
    peer = next(p for p in rows if p["impl"] != "gradlab" and p["work"] == r["work"] and str(p["threads"]) == str(r["threads"]))
    print(f'{r["work"]:<13} {r["threads"]} thread(s): gradlab {r["median_ms"]:.1f} ms, {peer["impl"]} {peer["median_ms"]:.1f} ms '
          f'-> ours / theirs = {peer["median_ms"] / r["median_ms"]:.2f}')
PY
