#!/usr/bin/env bash
# Run CI exactly as the CI machine does: a fresh clone of the committed HEAD in a temporary
# directory, cold target directory, `CI=true bash .ci/run`. Uncommitted changes are not included —
# that is the point: it catches files that were never committed.
#
# Usage: scripts/ci-fresh-clone.sh [DIR]   (default: a new mktemp directory, kept for inspection)
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
dir=${1:-$(mktemp -d -t gradlab-ci.XXXXXX)}
if [ -e "$dir/.git" ]; then
  echo "error: $dir already holds a clone; give an empty or new directory" >&2
  exit 2
fi
git clone -q "$root" "$dir"
cd "$dir"
echo "fresh clone of $(git rev-parse --short HEAD) in $dir"
start=$(date +%s)
CI=true bash .ci/run
echo "fresh-clone CI passed in $(( $(date +%s) - start )) s"
