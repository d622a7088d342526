# Two commands do everything (see README): `make run` and `make test`. Both install what they need and are
# safe to run twice; the stamps under .venv/ skip work whose inputs did not change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml

.PHONY: run test lint test-deps deps web-deps system-test-deps bench-deps bench clean

run: deps web-deps
	$(BIN)/meetings serve --config $(CONFIG)

# Two workers: the tests marked `waits` (long waits on shaped links and timers) run beside all the others, which keep
# one worker and their order (see tests/conftest.py). PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= 2
test: test-deps
	$(BIN)/pytest -q -ra -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check gateway signaling sfu tests bench
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.deps-stamp: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-deps-stamp: pyproject.toml $(VENV)/.deps-stamp
	$(BIN)/pip install -q -e '.[test]'
	touch $@

deps: $(VENV)/.deps-stamp

SIPJS_BUNDLE := web/node_modules/.cache/meetings-web/sip-bundle.js
# Wazo's SDK (a devDependency) in one module, for tests/browser/test_wazo_sdk.py; never served by the gateway.
WAZO_SDK_BUNDLE := web/node_modules/.cache/meetings-web/wazo-sdk.js

web-deps: $(SIPJS_BUNDLE) $(WAZO_SDK_BUNDLE)

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

# sip.js in one ES module (esbuild), and its .gz for browsers that accept gzip: served by gateway/webapps.py.
$(SIPJS_BUNDLE) $(WAZO_SDK_BUNDLE) &: web/node_modules/.package-lock.json web/sip-bundle.js web/wazo-sdk-bundle.js
	cd web && npm run --silent build

# Debian's chromium (driven by Playwright through its system executable, never a browser download), sipp, and
# the real softphones of tests/phones: baresip (baresip-core) and Linphone's console client (linphone-cli); for the
# weak-network tests, iptables (random loss, blocked UDP; tc comes with iproute2) and coturn (the TURN server).
system-test-deps:
	@if ! command -v chromium >/dev/null || ! command -v sipp >/dev/null || ! command -v baresip >/dev/null \
		|| ! command -v linphonec >/dev/null || ! command -v iptables >/dev/null \
		|| ! command -v turnserver >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium sip-tester \
			baresip-core linphone-cli iptables coturn >/dev/null; \
	fi

test-deps: $(VENV)/.test-deps-stamp web-deps system-test-deps

bench: bench-deps
	$(BIN)/python -m bench

# What only the benchmarks need: Janus VideoRoom, the side-by-side peer of `python -m bench.sfu janus-compare`.
bench-deps: test-deps
	@if ! command -v janus >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus >/dev/null; \
	fi

clean:
	rm -rf $(VENV) web/node_modules var .pytest_cache .mypy_cache .ruff_cache
