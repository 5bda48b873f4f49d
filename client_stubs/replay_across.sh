#!/usr/bin/env bash
# One create, four languages, one request_id: every client gets the same key, and Encord holds one.
#
# Runs under the dev stack (interop.sh's `live`), after each language was built: the Go, Java and
# TypeScript examples and the Python client send the same create with the same request_id in turn.
# The first mints the key; the others are replays. Passes if all four print one fingerprint and the
# project lists the title once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv/bin/python
export ENCORD_REQUEST_ID=$("$py" -c 'import uuid; print(uuid.uuid4())')
export ENCORD_EXAMPLE_TITLE="replayed across languages $ENCORD_REQUEST_ID"
mvn=(mvn -B -ntp -q)

created() { grep -o 'created .*fingerprint=[0-9a-f]*' | sed 's/.*fingerprint=//'; }
fingerprints=()
fingerprints+=("go:$(cd "$root/client_stubs/go" && go run ./example | created)")
fingerprints+=("typescript:$(cd "$root/client_stubs/typescript" && node dist/example/example.js | created)")
fingerprints+=("java:$(cd "$root/client_stubs/java" && "${mvn[@]}" exec:java@example 2>&1 | sed 's/\x1b\[0m//g' | created)")
fingerprints+=("python:$("$py" - <<'PY'
import os
from encord_gateway_client import connect
with connect(os.environ["ENCORD_GATEWAY_ADDRESS"], token=os.environ.get("ENCORD_GATEWAY_TOKEN")) as client:
    key = client.create_project_api_key(
        os.environ["ENCORD_DEMO_PROJECT"], os.environ["ENCORD_EXAMPLE_TITLE"], ["label.read"],
        request_id=os.environ["ENCORD_REQUEST_ID"],
    )
    print(key.fingerprint)
PY
)")
printf 'replay: %s\n' "${fingerprints[@]}"
distinct=$(printf '%s\n' "${fingerprints[@]}" | sed 's/^[a-z]*://' | sort -u)
if [ "$(wc -l <<<"$distinct")" -ne 1 ] || [ -z "$distinct" ]; then
  echo "replay: the languages got different keys (or none)" >&2
  exit 1
fi
stored=$("$py" - <<'PY'
import os
from encord_gateway_client import connect
with connect(os.environ["ENCORD_GATEWAY_ADDRESS"], token=os.environ.get("ENCORD_GATEWAY_TOKEN")) as client:
    keys = client.list_project_api_keys(os.environ["ENCORD_DEMO_PROJECT"])
    print(sum(k.title == os.environ["ENCORD_EXAMPLE_TITLE"] for k in keys))
PY
)
if [ "$stored" != 1 ]; then
  echo "replay: Encord holds $stored keys with the title, not 1" >&2
  exit 1
fi
echo "replay: one key ($distinct), four languages"
