#!/usr/bin/env bash
# The stock operator tools the tests speak to the gateway with, built from source at pinned versions.
# They land in .tools/bin (git-ignored); tests find them there or on PATH, and skip outside CI without.
set -euo pipefail
cd "$(dirname "$0")/.."

GRPCURL=github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
HEALTH_PROBE=github.com/grpc-ecosystem/grpc-health-probe@v0.4.63

export GOBIN="$PWD/.tools/bin"
mkdir -p "$GOBIN"

for tool in "$GRPCURL" "$HEALTH_PROBE"; do
  name=$(basename "${tool%@*}")
  if [ -x "$GOBIN/$name" ] && [ -f "$GOBIN/.$name.version" ] && [ "$(cat "$GOBIN/.$name.version")" = "$tool" ]; then
    echo "$name: already built ($tool)"
    continue
  fi
  echo "$name: go install $tool"
  go install "$tool"
  echo "$tool" >"$GOBIN/.$name.version"
done
