#!/usr/bin/env bash
# The test suite (what CI runs): the Rust workspace's tests, then the Python package's pytest
# suite built from the same release artefacts. One build profile (release) for everything.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --release
scripts/test_python.sh
