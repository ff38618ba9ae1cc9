#!/usr/bin/env bash
# Installs gradlab (crates/python, release build in the workspace's target dir, no build
# isolation) into the venv whose python is $1, unless GRADLAB_NO_INSTALL=1 (then the gradlab
# first on PYTHONPATH is used). Shared by the side-by-side wrappers of this folder.
# usage: scripts/compare/install-gradlab.sh PYTHON
set -euo pipefail
cd "$(dirname "$0")/../.."
py="$1"
if [ "${GRADLAB_NO_INSTALL:-0}" != 1 ]; then
  "$py" -m pip install -q --disable-pip-version-check "maturin>=1.9,<2"
  PATH="$(dirname "$py"):$PATH" CARGO_TARGET_DIR="$PWD/target" "$py" -m pip install -q --disable-pip-version-check \
    --no-build-isolation --force-reinstall --no-deps ./crates/python
fi
