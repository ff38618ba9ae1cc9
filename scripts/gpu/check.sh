#!/usr/bin/env bash
# The device check of issue 23 (docs/gpu.md): one command for a lent GPU machine, ≈ 2–4 minutes,
# that needs no Rust toolchain and no network there. Build here first (scripts/gpu/build.sh),
# then run, with the built files carried along:
#
#   run(command="bash scripts/gpu/check.sh", carry=["target/gpu/carry"], timeout_s=480)
#
# It runs
#   (a) the CUDA op tests: scatter-max on the GPU against the CPU op (bit for bit, f32 and f64,
#       gradients through the shared backward);
#   (b) m7-speed at the 571,392-cell global step: the emulator on the GPU (f32) vs the box model
#       and the emulator on one CPU core of that machine (RAYON_NUM_THREADS=1), beside the
#       Fortran M7's 1.65e5 cells/s per core and the paper's 64×;
#   (c) one PTT training step of the tracker's line-graph network at 100 primaries / 150 mm on
#       the GPU and on that machine's CPU (all cores, and one core);
# and writes summary.json and summary.md (plus each step's raw output) to $OUT.
#
# Not yet in it: (d) the 51×51 landscape surface on the GPU (the landscape crate's candle
# adapter evaluates on the CPU), and PAT steps (the assignment is a CPU op).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-target/gpu/check-out}"
mkdir -p "$out"
carry=target/gpu/bin
if [ -f target/gpu/carry/gpu-bins.tar.xz ]; then
  mkdir -p "$carry"
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    target/gpu/carry/gpu-bins.tar.xz "$carry"
fi
for f in xtask-cuda track-tests gpu_step; do
  [ -x "$carry/$f" ] || { echo "missing $carry/$f: run scripts/gpu/build.sh here and carry target/gpu/carry" | tee "$out/error.txt" >&2; exit 1; }
done

# Run-time libraries: libcuda.so.1 from the driver; cuBLAS, cuBLASLt, cuRAND, NVRTC of CUDA 13
# from the toolkit or from PyTorch's nvidia wheels.
libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13.0/lib64; do
  [ -d "$d" ] && libs="$libs:$d"
done
if command -v python3 >/dev/null; then
  libs="$libs:$(python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
dirs = set()
for root in site.getsitepackages() + [site.getusersitepackages()]:
    for pat in ("nvidia/*/lib", "nvidia/cu13/lib", "torch/lib"):
        for d in glob.glob(os.path.join(root, pat)):
            if glob.glob(os.path.join(d, "lib*.so.1[0-9]*")):
                dirs.add(d)
print(":".join(sorted(dirs)))
PY
)"
fi
libs="$(printf '%s' "$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" | tr -s ':' | sed 's/^://; s/:$//')"
export LD_LIBRARY_PATH="$libs"
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$carry/xtask-cuda" | grep -E "cuda|cublas|curand|nvrtc|not found"
  nproc
} > "$out/env.txt" 2>&1

status=0
# (a) op tests (the track crate's unit tests, filtered to the CUDA ones).
timeout 120 "$carry/track-tests" cuda --nocapture > "$out/op_tests.txt" 2>&1
op_rc=$?
# The test passes without a device (it says so); here a device is the point.
if grep -q "no CUDA device" "$out/op_tests.txt"; then op_rc=3; fi
[ $op_rc -eq 0 ] || status=1

# (b) m7-speed: one CPU core for the CPU columns, the GPU for the emulator.
RAYON_NUM_THREADS=1 timeout 240 "$carry/xtask-cuda" experiment m7-speed --set device=cuda --set repeats=3 \
  --out "$out/m7-speed" --quiet > "$out/m7-speed.log" 2>&1
speed_rc=$?
[ $speed_rc -eq 0 ] || status=1

# (c) tracker step: all cores, then one core (the CPU line of the second run).
timeout 120 "$carry/gpu_step" --reps 20 > "$out/gpu_step.jsonl" 2> "$out/gpu_step.err"
step_rc=$?
grep -q '"device":"Cuda' "$out/gpu_step.jsonl" || step_rc=3   # no GPU line: the device did not open
RAYON_NUM_THREADS=1 timeout 120 "$carry/gpu_step" --reps 10 > "$out/gpu_step_1thread.jsonl" 2>> "$out/gpu_step.err"
[ $step_rc -eq 0 ] || status=1

python3 - "$out" "$op_rc" "$speed_rc" "$step_rc" <<'PY'
import json, os, sys
out, op_rc, speed_rc, step_rc = sys.argv[1], *map(int, sys.argv[2:5])
FORTRAN_CELLS_PER_S = 1.65e5  # crates/aerosol/tests/data/m7-reference/description.json, timing
s = {"op_tests_rc": op_rc, "m7_speed_rc": speed_rc, "gpu_step_rc": step_rc}
md = ["# GPU check (scripts/gpu/check.sh)", ""]
try:
    env = open(os.path.join(out, "env.txt")).read().splitlines()
    s["machine"] = env[1:3]
    md += ["Machine: " + " / ".join(env[1:3]), ""]
except OSError:
    pass
ops = open(os.path.join(out, "op_tests.txt")).read() if os.path.exists(os.path.join(out, "op_tests.txt")) else ""
s["op_tests"] = [l for l in ops.splitlines() if l.startswith("test ") or "test result" in l]
md += ["## (a) CUDA op tests", "", "```", *s["op_tests"], "```", ""]
try:
    m = json.load(open(os.path.join(out, "m7-speed", "summary.json")))
    s["m7_speed"] = m
    md += ["## (b) m7-speed (one CPU core for the CPU columns)", "",
           "| batch | box model, 1 core (cells/s) | emulator CPU, 1 core | emulator GPU | GPU / box model (paper: 64×) | GPU / Fortran M7 per core (1.65e5) |",
           "|---|---|---|---|---|---|"]
    for r in m["rows"]:
        g = r.get("emulator_gpu_cells_per_s")
        md.append(f"| {r['batch']} | {r['box_cells_per_s']:.3g} | {r['emulator_cpu_cells_per_s']:.3g} | "
                  f"{g if g is None else format(g, '.3g')} | {'—' if g is None else format(g / r['box_cells_per_s'], '.1f') + '×'} | "
                  f"{'—' if g is None else format(g / FORTRAN_CELLS_PER_S, '.0f') + '×'} |")
    md.append("")
except (OSError, KeyError, ValueError) as e:
    md += ["## (b) m7-speed", "", f"no summary: {e}", ""]
rows = []
for name, label in (("gpu_step.jsonl", "all cores"), ("gpu_step_1thread.jsonl", "1 core")):
    try:
        for line in open(os.path.join(out, name)):
            r = json.loads(line)
            r["cpu_threads"] = label
            rows.append(r)
    except (OSError, ValueError):
        pass
s["gpu_step"] = rows
md += ["## (c) one PTT training step, 100 primaries / 150 mm", "",
       "| device | CPU threads | median ms / step | edges | messages |", "|---|---|---|---|---|"]
md += [f"| {r['device']} | {r['cpu_threads']} | {r['median_step_ms']:.2f} | {r['edges']} | {r['messages']} |" for r in rows]
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
open(os.path.join(out, "summary.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
exit $status
