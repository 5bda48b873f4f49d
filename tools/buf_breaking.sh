#!/usr/bin/env bash
# buf breaking: the protos in the tree against the last tag, else the last commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf=$root/.venv/bin/buf
if tag=$(git describe --tags --abbrev=0 2>/dev/null); then
  against=".git#tag=$tag,subdir=protos"
else
  against=".git#ref=HEAD,subdir=protos"
fi
if ! git cat-file -e "HEAD:protos/buf.yaml" 2>/dev/null; then
  echo "buf breaking: no committed protos yet, nothing to compare"
  exit 0
fi
"$buf" breaking protos --against "$against"
echo "buf breaking: protos/ is compatible with $against"
