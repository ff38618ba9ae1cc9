#!/usr/bin/env bash
# The test suite (what CI runs): the Rust workspace's tests, then the Python package's pytest
# suite built from the same release artefacts, then the MPI tests (mpirun -np 2 against one
# process) where Open MPI is installed — always in CI. One build profile (release).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --release
scripts/test_python.sh
if [[ "${CI:-}" == "true" ]] || command -v mpirun >/dev/null 2>&1; then
  scripts/test_mpi.sh
else
  echo "note: MPI tests skipped: no mpirun (apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
fi
