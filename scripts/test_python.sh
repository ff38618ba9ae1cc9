#!/usr/bin/env bash
# The Python package's tests: builds gradlab (crates/python) into a venv from the workspace's
# release artefacts (same target dir, same profile: cargo reuses what `cargo test --workspace
# --release` compiled) and runs its pytest suite.
#
# The venv lives outside the repository: $GRADLAB_PY_VENV, default
# ${XDG_CACHE_HOME:-~/.cache}/gradlab/venv-python-tests (created on first use; PyPI needed then).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${GRADLAB_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gradlab/venv-python-tests}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r crates/python/requirements-test.txt

# The README's install command, without build isolation (maturin comes from the venv) and with
# the workspace's target dir, so the Rust crates are not compiled a second time.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export PATH="$venv/bin:$PATH"   # maturin's build hook runs `maturin` from PATH
start=$(date +%s)
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./crates/python
echo "python package built and installed in $(( $(date +%s) - start )) s"

# Run from outside the source tree so `import gradlab` is the installed package.
cd crates/python/tests
"$venv/bin/python" -m pytest -q -p no:cacheprovider .
