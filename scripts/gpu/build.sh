#!/usr/bin/env bash
# Build gradlab's `cuda` feature here, on a machine without a GPU (issue 23; docs/gpu.md).
#
# 1. A venv (target/gpu-venv) with the CUDA 13.0 toolkit pieces from the Python package index
#    (scripts/gpu/requirements.txt: nvcc, nvvm, headers, cudart, nvrtc, cuBLAS, cuRAND), which all
#    install into site-packages/nvidia/cu13 — used as CUDA_HOME.
# 2. The link-time names the linker wants (libcublas.so → libcublas.so.13, …) and a stub
#    libcuda.so (SONAME libcuda.so.1) that defines every driver entry point cudarc declares, as
#    the toolkit's own lib/stubs/libcuda.so does: the binary then loads the driver's real
#    libcuda.so.1 at run time. The stub is never shipped.
# 3. `cargo build --release -p xtask --features cuda` into its own target dir (target/gpu, so
#    the CPU build in target/release is untouched), kernels for CUDA_COMPUTE_CAP (default 90,
#    the H100/H200), plus the tracker's GPU step example and its unit-test binary; stripped
#    copies in target/gpu/bin, packed for carrying to a lent GPU (scripts/gpu/check.sh) as
#    target/gpu/carry/gpu-bins.tar.xz.
#
# usage: scripts/gpu/build.sh [--check]     (--check: `cargo check` of the feature only, as the
#                                            test suite's gpu_feature_checks test runs it)
# env:   CUDA_COMPUTE_CAP (90), GPU_VENV (target/gpu-venv), GPU_TARGET_DIR (target/gpu)
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=build
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *) echo "usage: scripts/gpu/build.sh [--check]" >&2; exit 2 ;;
esac
venv="${GPU_VENV:-target/gpu-venv}"
target="${GPU_TARGET_DIR:-target/gpu}"
cap="${CUDA_COMPUTE_CAP:-90}"
case "$cap" in
  ''|*[!0-9]*) echo "CUDA_COMPUTE_CAP=$cap: want the compute capability as digits, e.g. 90 for the H100/H200" >&2; exit 2 ;;
esac

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r scripts/gpu/requirements.txt
cuda="$("$venv/bin/python" -c 'import nvidia, os; print(next(p for p in (os.path.join(d, "cu13") for d in nvidia.__path__) if os.path.isdir(p)))')"
[ -x "$cuda/bin/nvcc" ] || { echo "no nvcc in $cuda/bin after installing scripts/gpu/requirements.txt" >&2; exit 1; }
[ -x "$cuda/nvvm/bin/cicc" ] || { echo "no nvvm/bin/cicc in $cuda (package nvidia-nvvm)" >&2; exit 1; }

# Link-time names of the versioned libraries.
for lib in cudart cublas cublasLt nvrtc curand; do
  so="$(cd "$cuda/lib" && ls "lib$lib.so."* 2>/dev/null | sort | head -1)"
  [ -n "$so" ] || { echo "lib$lib.so.* missing in $cuda/lib" >&2; exit 1; }
  ln -sf "$so" "$cuda/lib/lib$lib.so"
done

# Stub libcuda.so from the driver API that cudarc declares (only for linking).
cudarc_src="$(cargo metadata --format-version 1 --locked --all-features 2>/dev/null | "$venv/bin/python" -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(os.path.dirname(p["manifest_path"])); break
')"
[ -n "$cudarc_src" ] || { cargo fetch --locked >/dev/null; echo "cudarc's source not found (cargo fetch ran; run again)" >&2; exit 1; }
mkdir -p "$cuda/lib/stubs"
stub_c="$cuda/lib/stubs/libcuda_stub.c"
grep -ohE '^[[:space:]]+fn cu[A-Za-z0-9_]+\(' "$cudarc_src/src/driver/sys/mod.rs" \
  | sed -E 's/^[[:space:]]+fn ([A-Za-z0-9_]+)\(/\1/' | sort -u \
  | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$stub_c"
[ "$(wc -l < "$stub_c")" -gt 100 ] || { echo "found too few driver functions in $cudarc_src/src/driver/sys/mod.rs" >&2; exit 1; }
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so" "$stub_c"

export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda"
export PATH="$cuda/bin:$PATH"
export CUDA_COMPUTE_CAP="$cap" CUDARC_CUDA_VERSION=13000
# nvcc finds its host compiler on PATH; the libraries for the link step:
export LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
echo "CUDA_HOME=$cuda ($(nvcc --version | tail -2 | head -1)), compute capability $cap, target dir $target" >&2

if [ "$mode" = check ]; then
  cargo check --release -p xtask --features cuda --target-dir "$target"
  exit 0
fi
cargo build --release -p xtask --features cuda --target-dir "$target"
cargo build --release -p gradlab-track --features cuda --example gpu_step --target-dir "$target"
tests="$(cargo test --release -p gradlab-track --features cuda --lib --no-run --message-format=json --target-dir "$target" \
  | "$venv/bin/python" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])
')"
[ -n "$tests" ] || { echo "no test executable of gradlab-track was built" >&2; exit 1; }
bin="$target/bin"
rm -rf "$bin"
mkdir -p "$bin"
strip -o "$bin/xtask-cuda" "$target/release/xtask"
strip -o "$bin/gpu_step" "$target/release/examples/gpu_step"
strip -o "$bin/track-tests" "$tests"
# The binaries embed candle's PTX and Hopper kernels (≈ 60–75 MB each stripped); xz brings the
# three to ≈ 25 MB, inside what a device run carries (64 MiB).
carry="$target/carry"
rm -rf "$carry"
mkdir -p "$carry"
tar -C "$bin" -cf - xtask-cuda gpu_step track-tests | xz -T0 -6 > "$carry/gpu-bins.tar.xz"
size_mib=$(( $(du -sb "$carry" | cut -f1) / 1048576 ))
echo "built $bin (xtask-cuda, gpu_step, track-tests) and $carry/gpu-bins.tar.xz ($size_mib MiB; a run carries at most 64 MiB)" >&2
[ "$size_mib" -lt 60 ] || { echo "$carry is $size_mib MiB, over what a device run can carry" >&2; exit 1; }
readelf -d "$bin/xtask-cuda" | grep NEEDED >&2 || true
# Smoke test here, without a GPU: the binaries start against the toolkit's libraries and the stub
# driver (its cuInit fails, so no device opens) and run their CPU part.
ln -sf libcuda.so "$cuda/lib/stubs/libcuda.so.1"
LD_LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs" "$bin/gpu_step" --reps 2 >&2
LD_LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs" "$bin/track-tests" cuda >&2
