#!/usr/bin/env bash
# Runs the Go, Java, TypeScript and Python clients against a live gateway (see `make test-interop`).
#
# Each language is built first (Go modules, Maven artifacts and npm packages come
# from their registries), then its interop test and example run under the repo's
# dev stack (`python -m encord_gateway.dev.devstack`): a fresh emulator and gateway on
# free loopback ports, with ENCORD_GATEWAY_ADDRESS, ENCORD_DEMO_PROJECT and
# ENCORD_DEMO_DATASET set. ENCORD_INTEROP_REQUIRED=1 turns the tests' "no gateway,
# skip" into a failure. Exits non-zero if any language fails.
#
#   INTEROP_LANGS="go typescript" bash client_stubs/interop.sh    # a subset
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
cd "$root"
langs=${INTEROP_LANGS:-go java typescript python}
py=$root/.venv/bin/python
mvn=(mvn -B -ntp)

make -s venv || { echo "interop: could not make the venv" >&2; exit 1; }

failed=()
# step NAME COMMAND...: runs COMMAND, times it and records a failure.
step() {
  local name=$1 start=$SECONDS
  shift
  echo "=== $name"
  if "$@"; then
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}
# live COMMAND...: runs COMMAND (from the repo root) against a fresh emulator and gateway.
live() { ENCORD_INTEROP_REQUIRED=1 "$py" -m encord_gateway.dev.devstack --token -- "$@"; }

passed=0
for lang in $langs; do
  before=${#failed[@]}
  case $lang in
    go)
      step "go: build" bash -c 'cd client_stubs/go && go mod download && go build ./... && go vet ./...' &&
        step "go: interop test and example" live bash -c \
          'cd client_stubs/go && go test -count=1 -v ./interop/ && go run ./example'
      ;;
    java)
      # A plain install runs the interop tests too; without a gateway they are skipped.
      # (sed: Debian's Maven 3.8 prints ANSI resets even in batch mode.)
      step "java: mvn install" bash -o pipefail -c \
        'cd client_stubs/java && "$@" -q install 2>&1 | sed "s/\x1b\[0m//g"' _ "${mvn[@]}" &&
        step "java: interop test and example" live bash -o pipefail -c \
          'cd client_stubs/java && "$@" surefire:test exec:java@example 2>&1 | sed "s/\x1b\[0m//g"' _ "${mvn[@]}"
      ;;
    typescript)
      step "typescript: npm ci and build" bash -c \
        'cd client_stubs/typescript && npm ci --no-audit --no-fund --loglevel=error && npm run -s build' &&
        step "typescript: interop test and example" live bash -c \
          'cd client_stubs/typescript && node --test dist/test/ && node dist/example/example.js'
      ;;
    python)
      step "python: interop test" live "$py" -m pytest -q tests/interop
      ;;
    *)
      echo "interop: unknown language $lang" >&2
      failed+=("$lang")
      ;;
  esac
  [ ${#failed[@]} -eq "$before" ] && passed=$((passed + 1))
done

# A create made in one language is replayed from the others with its request_id (needs every language).
if [ "$langs" = "go java typescript python" ]; then
  step "cross-language replay" live bash client_stubs/replay_across.sh
fi

# Languages, counted in the plain "N passed, N failed" form that CI reads.
[ ${#failed[@]} -gt 0 ] && echo "interop: failed steps: ${failed[*]}"
echo "interop: $passed passed, $(($(wc -w <<<"$langs") - passed)) failed"
[ ${#failed[@]} -eq 0 ]
