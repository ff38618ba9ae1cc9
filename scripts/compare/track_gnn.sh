#!/usr/bin/env bash
# Side by side: the tracking GNN's train-mode forward + backward, gradlab vs PyTorch, on the same
# simulated frame, 1 and 2 threads, one process at a time. Prints one JSON line per run and the
# ratios. usage: scripts/compare/track_gnn.sh [PRIMARIES] [THICKNESS_MM] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-100}"; t="${2:-150}"; r="${3:-10}"
py="$(scripts/compare/setup-venv.sh | tail -1)"
cargo build --release -q --workspace --example gnn_peer
dir="$(mktemp -d)"
out="$dir/results.jsonl"
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads target/release/examples/gnn_peer "$dir" "$n" "$t" "$r" | tee -a "$out"
  for arch in ours reference; do
    OMP_NUM_THREADS=$threads "$py" scripts/compare/track_gnn.py "$dir" "$threads" "$r" "$arch" | tee -a "$out"
  done
done
"$py" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for th in sorted({str(r["threads"]) for r in rows}):
    ours = next(r for r in rows if str(r["threads"]) == th and r["impl"].startswith("gradlab"))
    for r in rows:
        if str(r["threads"]) == th and not r["impl"].startswith("gradlab"):
            # Peak memory is the whole process's (PyTorch's includes ≈ 0.5 GiB of its own
            # libraries), so it is printed, not divided.
            print(f'{th} thread(s): gradlab / {r["impl"]} = {ours["median_ms"] / r["median_ms"]:.2f}x time; '
                  f'peak RSS {ours["peak_rss_mib"]:.0f} vs {r["peak_rss_mib"]:.0f} MiB')
PY
