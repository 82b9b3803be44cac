# nextcall: `make run` starts the daemon with a demo campaign; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/nextcall.toml
DEMO_RECORDS ?= 5000
STAMP  := $(VENV)/.installed

.PHONY: run test install migrate demo bench clean lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/nextcall --config $(CONFIG) migrate

demo: migrate
	$(BIN)/nextcall --config $(CONFIG) demo --records $(DEMO_RECORDS)

run: demo
	@echo "nextcall: socket ./run/nextcall.sock  (try: $(BIN)/nextcall login alice --campaign demo && $(BIN)/nextcall next --agent alice)"
	exec $(BIN)/nextcall --config $(CONFIG) serve

# the lint gate: ruff (rules in pyproject.toml) and mypy --strict over the daemon
lint: $(STAMP)
	$(BIN)/ruff check daemon tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var run .pytest_cache .hypothesis .benchmarks
