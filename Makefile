# One entry point for every chore: make run, make test, make lint, make stubs, make bench.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help venv run test coverage test-reliability test-interop lint docs dist stubs stubs-check bench bench-quick clean

help:
	@echo "make run               start the emulator and the gateway, and show every operation"
	@echo "make test              the whole unit, integration and conformance suite"
	@echo "make coverage          make test under branch coverage, failing below the floor (92 %)"
	@echo "make test-interop      the Go, Java, TypeScript and Python clients against a live gateway"
	@echo "make test-reliability  faults, load, restarts and fuzzing (long)"
	@echo "make lint              ruff, mypy, import-linter (the layers), buf lint and buf breaking"
	@echo "make dist              wheels and sdists of encord-gateway and encord-gateway-client in dist/"
	@echo "make docs              build the manual in docs/ (mkdocs, strict: a broken link fails)"
	@echo "make stubs             regenerate every client stub from protos/"
	@echo "make bench             gateway vs Encord SDK vs raw floor, in one run"

$(STAMP): pyproject.toml client_stubs/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ./client_stubs/python -e '.[test,dev,bench]'
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m encord_gateway.dev.demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

# The same suite under branch coverage of the server package, also in the gateway and emulator processes
# the tests start; below the floor ([tool.coverage.report] fail_under in pyproject.toml) it fails. It runs
# apart from make test because tracing every line makes the suite about 1.7 times as costly in CPU.
# COVERAGE_FILE is absolute so that a process started in a temporary directory writes its data here.
# A partial run (ARGS) has no floor.
coverage: $(STAMP)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m pytest -q -m "not slow" --cov --cov-report=term $(if $(ARGS),--cov-fail-under=0) $(ARGS)

test-reliability: $(STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

test-interop: $(STAMP)
	bash client_stubs/interop.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	cd protos && ../$(VENV)/bin/buf lint
	bash tools/buf_breaking.sh

# The two distributions, wheel and sdist each; `pip install --find-links dist encord-gateway` installs them.
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist ./client_stubs/python
	$(PY) -m build --outdir dist .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

stubs: $(STAMP)
	bash tools/gen_python_stubs.sh
	bash tools/gen_other_stubs.sh

# CI: regenerating the stubs must leave the committed tree unchanged.
stubs-check: stubs
	git diff --exit-code -- client_stubs
	test -z "$$(git status --porcelain -- client_stubs)"

bench: $(STAMP)
	$(PY) bench/run.py $(ARGS)

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site dist .coverage .coverage.*
