#!/usr/bin/env bash
# Creates scripts/compare/.venv with the peers of requirements.txt (once; a second call only
# checks it). Prints the venv's python path on the last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s "$here/requirements.txt" "$venv/.installed-requirements.txt" 2>/dev/null; then
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.installed-requirements.txt"
fi
echo "$venv/bin/python"
