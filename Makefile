# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap the venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv tools test unit lint typecheck demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,local]'
	touch $(STAMP)

venv: $(STAMP)

# Debian tools the deploy-tier checks need: docker-compose (validates docker-compose.yml),
# promtool (package prometheus; checks the alert rules) and chromium (draws the backtest
# report headless). Installed only when missing.
tools:
	@if ! command -v docker-compose >/dev/null || ! command -v promtool >/dev/null \
		|| ! command -v chromium >/dev/null; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			docker-compose prometheus chromium >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check siyu_stream tests bench
	$(BIN)/ruff format --check siyu_stream tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: tools lint typecheck
	# pytest exit code 5 means no tests were collected (e.g. a -k filter): not a failure
	$(BIN)/pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not deploy" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/siyu-stream demo

# benchmarks (not tests): writes bench/results.{json,md} and the README's Performance section;
# the extra `bench` adds faust-streaming, the peer bench/faust_bench.py measures against
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,local,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
