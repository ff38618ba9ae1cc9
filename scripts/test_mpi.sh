#!/usr/bin/env bash
# The MPI tests (issue "Scale-out on MPI"): gradlab-mpi's `mpirun -np 2/3` tests against one
# process (surface, M7 tables, BO batches, a killed 2-rank surface resuming). Needs Open MPI
# (Debian: openmpi-bin libopenmpi-dev) and libclang (libclang-dev) for rsmpi's bindings.
# Built with the same feature set as `cargo test --workspace --release` plus `gradlab-mpi/mpi`,
# so only gradlab-mpi and the MPI bindings are compiled on top of the workspace's test build.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in mpirun mpicc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool not found: install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev libclang-dev)" >&2
    exit 1
  fi
done
# Root in containers (CI), and no cross-memory-attach copies (refused without ptrace rights).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
cargo test --workspace --release --features gradlab-mpi/mpi,xtask/mpi --test mpirun
