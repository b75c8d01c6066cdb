# streamrec: `make demo` runs the main job on a fresh machine, `make test` sets up and runs every test tier.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SR := $(BIN)/streamrec
BENCH_OUT ?= bench-results
export STREAMREC_CACHE_DIR ?= $(HOME)/.cache/streamrec

.PHONY: help setup up down status topics demo test test-unit test-functional test-integration lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@command -v uv >/dev/null || $(PY) -m pip install --quiet uv
	@test -x $(BIN)/python || uv venv --quiet -p $(PY) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip sync --quiet requirements.lock
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --no-deps -e .
	@touch $@

setup: $(STAMP) ## create the virtualenv from the lock file (uv, cached)
	@infra/kafka.sh fetch

up: setup ## start Kafka (KRaft) and Redis on loopback (idempotent)
	@infra/kafka.sh start
	@infra/redis.sh start

down: ## stop Kafka and Redis
	-@infra/kafka.sh stop
	-@infra/redis.sh stop

status: ## report whether Kafka and Redis run
	-@infra/kafka.sh status
	-@infra/redis.sh status

topics: up ## create the streamrec topics
	$(SR) topics create

demo: up ## simulate a shop, train models, stream events, ask for recommendations, print them
	@trap '$(MAKE) --no-print-directory down' EXIT; $(SR) demo

test-unit: setup ## unit tests (no network)
	$(BIN)/pytest -q tests/unit streams agents models state

test-functional: setup ## functional tests (Faust test context, in-memory stores)
	$(BIN)/pytest -q tests/functional

test-integration: up ## integration tests against the real Kafka and Redis
	$(BIN)/pytest -q -m integration tests/integration

test: up ## set up, start services, run unit + functional + integration tests, stop services
	@trap '$(MAKE) --no-print-directory down' EXIT; \
	$(BIN)/pytest -q tests streams agents models state

lint: setup ## ruff and mypy --strict
	$(BIN)/ruff check streams agents models state tests
	$(BIN)/mypy

bench: up ## run the benchmarks; JSON lands in $(BENCH_OUT)/
	@mkdir -p $(BENCH_OUT)
	$(SR) bench ingest --seconds 20 --backlog 60000 --json $(BENCH_OUT)/ingest.json
	$(SR) bench freshness --rate 5000 --seconds 10 --json $(BENCH_OUT)/freshness.json
	$(SR) bench serve --rps 100 --seconds 20 --json $(BENCH_OUT)/serve.json
	$(SR) bench serve --rps 100 --seconds 20 --train none --json $(BENCH_OUT)/serve-no-model.json
	$(SR) bench ranker --json $(BENCH_OUT)/ranker.json
	$(SR) bench metrics-cost --json $(BENCH_OUT)/metrics-cost.json

clean: down ## remove run state (logs, broker data) but keep caches
	rm -rf .run .registry $(BENCH_OUT)
