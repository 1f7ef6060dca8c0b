# supplygraph: `make run` serves the API, `make test` runs the suite. Both set everything up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# what running needs (`make run`), and what tests, lint and benchmarks add (`make test`)
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed
PYTEST_ARGS ?=
# make's targets are for development, tests and benchmarks, whose store and warehouse simulators
# run on this machine: they may be called over plain http (a deployment lists its own hosts,
# or none: see OUTBOUND_ALLOWED_HOSTS in the README)
export OUTBOUND_ALLOWED_HOSTS ?= 127.0.0.1,localhost

.PHONY: run test lint format migrate migrations schema seed simulate clean bench-stock bench bench-plot bench-table soak vendor-graphiql vendor-dashboard

$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("supplygraph needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The demo world (made once: `seed-demo` serves the app itself while it makes it, and prints
# fresh demo tokens), then the API with the world's store and warehouse simulators under /_demo
# (DEMO) and GraphiQL (DEBUG; `make run DEBUG=false` serves without it).
run: export DEMO ?= true
run: export DEBUG ?= true
run: $(RUN_STAMP)
	$(BIN)/python main.py migrate
	$(BIN)/python main.py seed-demo
	$(BIN)/python main.py serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-stock: $(STAMP)
	$(BIN)/python bench/stock_reservations.py

# BENCH_ARGS: e.g. --quick, --only orders_page (see bench/runner.py)
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/runner.py $(BENCH_ARGS)

bench-plot: $(STAMP)
	$(BIN)/python bench/plot.py

# the README's benchmark table (between its bench:begin/bench:end markers) from
# bench/results/latest.json; BENCH_TABLE_ARGS=--check fails if the README's differs
BENCH_TABLE_ARGS ?=
bench-table: $(STAMP)
	$(BIN)/python bench/readme_table.py $(BENCH_TABLE_ARGS)

# SOAK_ARGS: e.g. --duration 120 --subscribers 300 (see bench/soak.py); SOAK_SECONDS works too
SOAK_ARGS ?=
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(RUN_STAMP)
	$(BIN)/python main.py migrate

# After changing a model: write the next migration (review it, then commit it).
migrations: $(STAMP)
	DATABASE_URL=sqlite://$$(mktemp -d)/mk.sqlite3 $(BIN)/tortoise -c domain.db.TORTOISE_ORM makemigrations

schema: $(RUN_STAMP)
	$(BIN)/python main.py export-schema

# the demo world again (what is missing of it) and new demo tokens: against the server `make run`
# serves, else served for the while
seed: $(RUN_STAMP)
	$(BIN)/python main.py migrate
	$(BIN)/python main.py seed-demo

# against the server `make run` serves; SIMULATE_ARGS: e.g. --interval 0.5
SIMULATE_ARGS ?=
simulate: $(RUN_STAMP)
	$(BIN)/python main.py simulate $(SIMULATE_ARGS)

# GraphiQL's browser bundles (service/static/graphiql/), fetched with npm at the versions pinned in
# service/static/vendor.py; commit what it writes.
vendor-graphiql: $(STAMP)
	$(BIN)/python service/static/vendor.py

# The dashboard's graphql-ws client (service/static/dashboard/vendor/), fetched with npm at the
# version pinned in service/static/vendor.py; commit what it writes.
vendor-dashboard: $(STAMP)
	$(BIN)/python service/static/vendor.py dashboard

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache supplygraph.sqlite3*
