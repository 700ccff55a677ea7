# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap the venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv tools kafka-jars compiled test identity-interpreted unit lint typecheck demo \
	bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,local]'
	touch $(STAMP)

venv: $(STAMP)

# The compiled build (hatch_build.py): a wheel with the mypyc-compiled rule core, installed
# into .compiled/site beside the editable install development runs. `make test` and `make
# bench` run it (PYTHONPATH=.compiled/site; the summary line of replay and /healthz say which
# build ran). Where no C compiler exists the wheel is the pure one. Rebuilt when a module
# changes: ~2 min of compiling on 2 cores.
COMPILED := .compiled/site
COMPILED_STAMP := .compiled/.built

$(COMPILED_STAMP): $(STAMP) hatch_build.py pyproject.toml $(shell find siyu_stream -name '*.py')
	rm -rf .compiled
	$(BIN)/python -m pip wheel -q --no-deps -w .compiled/dist .
	$(BIN)/python -m pip install -q --no-deps --target $(COMPILED) .compiled/dist/*.whl
	touch $@

compiled: $(COMPILED_STAMP)

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

# Apache Kafka for `siyu-stream broker --engine kafka` and its tests: the jars pinned in
# deploy/kafka/pom.xml, fetched once into .kafka/lib (measured: 45 jars, 43 MB; ~25 s from
# an empty Maven repository, ~10 s from a filled one), then one warm-up start and stop
# (~10-16 s) that leaves the JVM class archive behind (a 1-node restart: ~4.5 s without
# it, ~2.5 s with it). Skipped, without failing, where no
# Java >= 17 is found: the broker command then falls back to the embedded engine.
KAFKA_STAMP := .kafka/lib/.fetched

kafka-jars: $(STAMP)
	@if $(BIN)/python -m siyu_stream.kafka java >/dev/null; then \
		$(MAKE) --no-print-directory $(KAFKA_STAMP); \
	else \
		echo "kafka-jars: no Java >= 17 found, skipped (siyu-stream broker uses noida-db)"; \
	fi

$(KAFKA_STAMP): deploy/kafka/pom.xml
	@if ! command -v mvn >/dev/null; then \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			maven >/dev/null; \
	fi
# a version change must not leave the old jars on the class path
	rm -rf .kafka/lib
	mvn -q -B -Dstyle.color=never -f deploy/kafka/pom.xml package
	$(BIN)/python -m siyu_stream.kafka warm-up
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check siyu_stream tests bench hatch_build.py
	$(BIN)/ruff format --check siyu_stream tests bench hatch_build.py

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on the compiled build: .compiled/site first on the path, PYTHONSAFEPATH so
# that the processes the tests start with `python -m` in the checkout do not import its
# source instead (tests/test_builds.py checks both), and the Kafka jars named, since an
# installed package cannot find the checkout's .kafka/lib from its own path. The
# byte-identity tests that need no broker (golden files, properties, --jobs, backtest) run
# on the interpreted build too; tests/test_builds.py compares the two builds' bytes.
# That interpreted pass runs the editable install, not .compiled: it runs while the compiled
# build is made (~1 min, mostly one core), beside the fetch of the Kafka jars. None of the
# three is timed (the identity tests read no clock; their hypothesis tests have no
# deadline), so side by side they give what they gave one after the other. Lint and mypy
# run first: mypy's cache is in the checkout mypyc compiles from.
# Exit code 5 (no test collected, e.g. a -k filter) is not a failure.
IDENTITY := tests/test_replay.py tests/test_replay_jobs.py tests/test_backtest.py \
	tests/test_go_live.py tests/test_properties.py tests/test_rules.py tests/test_state.py
# The compiled run is two pytest processes at once. tests/integration (brokers and workers:
# mostly waiting on them, ~0.6 of a core) and the tests that bound wall-clock time run at
# normal priority (hypothesis has no deadline: tests/conftest.py); every other test runs
# beside them under `nice -n 19`, so that it takes only the CPU they leave
# (the kernel weighs nice 19 at 15 against 1024): brokers, workers and timed tests see the
# machine they saw before. Its output follows theirs; both exit codes count.
TIMED := tests/test_kafka_client.py
COMPILED_ENV := PYTHONPATH=$(CURDIR)/$(COMPILED) PYTHONSAFEPATH=1 \
	SIYU_COMPILED=$(CURDIR)/$(COMPILED) SIYU_KAFKA_LIB=$(CURDIR)/.kafka/lib
test: tools lint typecheck
	$(MAKE) --no-print-directory -j3 -k --output-sync=target \
		kafka-jars compiled identity-interpreted
	@log=$$(mktemp); \
	echo "pytest $(PYTEST_ARGS) without tests/integration $(TIMED): nice 19, beside (shown after)"; \
	$(COMPILED_ENV) nice -n 19 $(BIN)/pytest -p no:cacheprovider --ignore=tests/integration \
		$(addprefix --ignore=,$(TIMED)) $(PYTEST_ARGS) >$$log 2>&1 & beside=$$!; \
	trap 'kill $$beside 2>/dev/null; rm -f $$log' EXIT INT TERM; \
	$(COMPILED_ENV) $(BIN)/pytest tests/integration $(TIMED) $(PYTEST_ARGS); live=$$?; \
	wait $$beside; rest=$$?; beside=; cat $$log; \
	for rc in $$live $$rest; do [ $$rc -eq 0 ] || [ $$rc -eq 5 ] || exit $$rc; done

identity-interpreted: $(STAMP)
	SIYU_BUILD=interpreted $(BIN)/pytest -m "not integration" $(IDENTITY) $(PYTEST_ARGS) \
		|| [ $$? -eq 5 ]

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not deploy" $(PYTEST_ARGS)

demo: $(STAMP) kafka-jars
	$(BIN)/siyu-stream demo

# benchmarks (not tests): writes bench/results.{json,md} and the README's Performance section;
# the extra `bench` adds faust-streaming, and bench/kstreams is the Kafka Streams peer, one
# runnable jar (bench/kstreams/target/kstreams-peer.jar; ~80 s from an empty Maven
# repository): the peers bench/live_bench.py measures against
BENCH_STAMP := $(VENV)/.installed-bench

# the bench runs on Apache Kafka, and kafka-jars also installs Maven where it is missing
$(BENCH_STAMP): $(STAMP) bench/kstreams/pom.xml $(wildcard bench/kstreams/src/main/java/siyu/kstreams/*.java) | kafka-jars
	$(BIN)/python -m pip install -q -e '.[dev,local,bench]'
	mvn -q -B -Dstyle.color=never -f bench/kstreams/pom.xml package
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) compiled
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .kafka .compiled build
