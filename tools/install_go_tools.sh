#!/usr/bin/env bash
# The stock operator tools the tests use (grpcurl, grpc-health-probe, helm), built from source at pinned versions.
# They land in .tools/bin (git-ignored); tests find them there or on PATH, and skip outside CI without.
set -euo pipefail
cd "$(dirname "$0")/.."

GRPCURL=github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3
HEALTH_PROBE=github.com/grpc-ecosystem/grpc-health-probe@v0.4.63
# helm lint / helm template check the chart in deploy/helm without a cluster (tests/deploy).
HELM=helm.sh/helm/v3/cmd/helm@v3.21.4

export GOBIN="$PWD/.tools/bin"
mkdir -p "$GOBIN"

for tool in "$GRPCURL" "$HEALTH_PROBE" "$HELM"; do
  name=$(basename "${tool%@*}")
  if [ -x "$GOBIN/$name" ] && [ -f "$GOBIN/.$name.version" ] && [ "$(cat "$GOBIN/.$name.version")" = "$tool" ]; then
    echo "$name: already built ($tool)"
    continue
  fi
  echo "$name: go install $tool"
  go install "$tool"
  echo "$tool" >"$GOBIN/.$name.version"
done
