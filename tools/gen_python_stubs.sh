#!/usr/bin/env bash
# Generates the Python stubs of protos/ into client_stubs/python (see `make stubs`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
out=$root/client_stubs/python/src/encord_gateway_client/v1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$python" -m grpc_tools.protoc -I "$root/protos" \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$python")/protoc-gen-mypy_grpc" --mypy_grpc_out="$tmp" \
  "$root/protos/encord_gateway/v1/api_keys.proto"

# protoc writes absolute imports that follow the proto package (encord_gateway.v1),
# which is the server's own import name; the client package imports its siblings
# relatively so that both can be installed side by side.
for f in "$tmp"/encord_gateway/v1/*; do
  sed -e 's/^from encord_gateway\.v1 import /from . import /' \
      -e 's/^import encord_gateway\.v1\.api_keys_pb2$/from . import api_keys_pb2/' \
      -e 's/encord_gateway\.v1\.api_keys_pb2\./api_keys_pb2./g' "$f" > "$out/$(basename "$f")"
done
echo "python stubs -> ${out#"$root"/}"
