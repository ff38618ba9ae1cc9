#!/usr/bin/env bash
# Side by side from Python (issue 18): top-3 Hessian eigenvalues of a tanh MLP through
# gradlab.landscape.hessian_eigs + gradlab.landscape.torch (exact Hessian-vector products) vs
# PyHessian's eigenvalues(top_n=3), in ONE Python process per thread count (torch.set_num_threads,
# RAYON_NUM_THREADS, OMP_NUM_THREADS), against a dense eigvalsh / ARPACK float64 reference.
# Prints one JSON line per (model, impl) and a table with PyHessian time / ours (> 1: ours faster).
# Installs gradlab into scripts/compare/.venv (release build) unless GRADLAB_NO_INSTALL=1 (then
# the gradlab first on PYTHONPATH is used).
# usage: scripts/compare/py_hessian.sh [REPEATS=3] [THREADS=1,2] [MODELS=small,peer]
set -euo pipefail
cd "$(dirname "$0")/../.."
py="$(scripts/compare/setup-venv.sh | tail -1)"
scripts/compare/install-gradlab.sh "$py"
threads="${2:-1,2}"
for t in ${threads//,/ }; do
  RAYON_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
    "$py" scripts/compare/py_hessian.py "$t" "${1:-3}" "${3:-small,peer}"
done
