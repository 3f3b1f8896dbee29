# The whole set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE_STAMP := node/node_modules/.installed

.PHONY: install test lint bench demo clean

install: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,fastmcp,bench]'
	touch $@

$(NODE_STAMP): node/package.json node/package-lock.json
	cd node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench --write docs/benchmarks.md $(BENCH_ARGS)

demo: $(STAMP)
	$(VENV)/bin/mcp-warden demo

clean:
	rm -rf $(VENV) node/node_modules .pytest_cache .mypy_cache .ruff_cache
