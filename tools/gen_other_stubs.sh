#!/usr/bin/env bash
# Generates the Go and TypeScript stubs of protos/ (see `make stubs`).
#
# One protoc for both, the one pinned for Python (grpcio-tools in the venv); the
# plugins come pinned from each ecosystem's registry: protoc-gen-go and
# protoc-gen-go-grpc from client_stubs/go/tools/go.mod (Go module proxy),
# protoc-gen-es and the google.rpc protos from client_stubs/typescript's
# package-lock.json (npm). Java's stubs are not committed: Maven generates them
# from protos/ at build time (client_stubs/java/pom.xml pins protoc and the
# grpc-java plugin from Maven Central).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
python=${PYTHON:-$root/.venv/bin/python}
protoc=("$python" -m grpc_tools.protoc -I "$root/protos")
proto=$root/protos/encord_gateway/v1/api_keys.proto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- Go: committed, as Go modules expect -------------------------------------
go_out=$root/client_stubs/go
(cd "$go_out/tools" && go build -o "$tmp/bin/" tool)
rm -f "$go_out"/encordgatewayv1/*.pb.go
"${protoc[@]}" \
  --plugin=protoc-gen-go="$tmp/bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$tmp/bin/protoc-gen-go-grpc" \
  --go_out="$go_out" --go_opt=module=github.com/encord-gateway/encord-gateway/client_stubs/go \
  --go-grpc_out="$go_out" --go-grpc_opt=module=github.com/encord-gateway/encord-gateway/client_stubs/go \
  "$proto"
echo "go stubs -> client_stubs/go/encordgatewayv1"

# --- TypeScript: committed under src/gen, compiled by `npm run build` ---------
ts=$root/client_stubs/typescript
if [ ! -x "$ts/node_modules/.bin/protoc-gen-es" ] || [ ! -d "$ts/node_modules/google-proto-files" ]; then
  (cd "$ts" && npm ci --no-audit --no-fund --loglevel=error)
fi
rm -rf "$ts/src/gen"
mkdir -p "$ts/src/gen"
# google.rpc.Status and its details (BadRequest, ErrorInfo, ...) come from the
# pinned google-proto-files package, so every machine generates the same bytes.
"${protoc[@]}" -I "$ts/node_modules/google-proto-files" \
  --plugin=protoc-gen-es="$ts/node_modules/.bin/protoc-gen-es" \
  --es_out="$ts/src/gen" --es_opt=target=ts,import_extension=js \
  "$proto" google/rpc/status.proto google/rpc/error_details.proto
echo "typescript stubs -> client_stubs/typescript/src/gen"
