#!/usr/bin/env bash
# Strong scaling 1 → 2 ranks of the distributed paths (issue "Scale-out on MPI"), one thread per
# rank, in one run: a 51×51 loss surface (2→64→64→3 MLP, f64, 1,000 points), an M7 generation,
# and the cost of one surface round's collectives at 1–4 ranks. Writes JSON records and prints a
# Markdown table (paste into docs/benchmarks.md with the command).
#
#   scripts/mpi/scaling.sh [OUT_DIR]      (default /tmp/gradlab-mpi-scaling)
#
# Needs Open MPI (openmpi-bin libopenmpi-dev libclang-dev). On a 2-core machine the 3- and
# 4-rank round timings are oversubscribed: read them as an upper bound.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/gradlab-mpi-scaling}
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none RAYON_NUM_THREADS=1
# the binary of the MPI tests, built with the same features as scripts/test_mpi.sh
cargo test --workspace --release --features gradlab-mpi/mpi,xtask/mpi --test mpirun --no-run >/dev/null 2>&1 \
  || cargo test --workspace --release --features gradlab-mpi/mpi,xtask/mpi --test mpirun --no-run
bin=target/release/gradlab-mpi-check
run() { local n=$1; shift; mpirun -np "$n" --oversubscribe --bind-to none "$bin" "$@"; }
cells=${CELLS:-3000}
for n in 1 2; do
  run "$n" surface --points 51 --threads 1 --gather-every 16 --out "$out/surface-$n.json"
  run "$n" m7 --cells "$cells" --gather-every 500 --out "$out/m7-$n.json"
done
for n in 1 2 3 4; do
  run "$n" rounds --rounds 2000 --points 16 --out "$out/rounds-$n.json"
done
python3 - "$out" <<'PY'
import json, sys, os
d = sys.argv[1]
j = lambda f: json.load(open(os.path.join(d, f)))
print("| workload | 1 rank (s) | 2 ranks (s) | speed-up | efficiency | same result |")
print("|---|---|---|---|---|---|")
for name, key in (("surface", "hash"), ("m7", "x_hash")):
    a, b = j(f"{name}-1.json"), j(f"{name}-2.json")
    what = "51×51 surface" if name == "surface" else f"M7 generation, {a['cells']} cells"
    s = a["seconds"] / b["seconds"]
    print(f"| {what} | {a['seconds']:.2f} | {b['seconds']:.2f} | {s:.2f}× | {s/2:.0%} | {a[key] == b[key]} |")
print()
print("| ranks | seconds per surface round (2 agrees + 1 gather, 16 points/rank) |")
print("|---|---|")
for n in (1, 2, 3, 4):
    r = j(f"rounds-{n}.json")
    print(f"| {n} | {r['seconds_per_round']*1e6:.1f} µs |")
a = j("surface-1.json")
print()
print(f"per point (1 rank): {a['seconds']/a['points']**2*1e3:.2f} ms; parameters {a['parameters']}")
PY
