# One venv, one install step, used by `make test`, `make demo` and CI alike.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install test lint-imports docs docs-build demo figures bench protos clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip
	# torch pinned explicitly first so nothing can pull a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP)

# lint-imports checks the contracts in pyproject.toml ([tool.importlinter]): dependencies point
# one way between and inside packages, and no package has an import cycle.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(MAKE) --no-print-directory docs-build
	FLWR_TELEMETRY_ENABLED=0 $(PY) -m pytest -q tests

# The documentation site (mkdocs.yml): --strict fails on a broken link, a page missing from the nav
# or an API reference that does not resolve. NO_MKDOCS_2_WARNING silences a theme banner.
docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

demo: $(STAMP)
	FLWR_TELEMETRY_ENABLED=0 $(VENV)/bin/analog-edge demo

# Every measured figure of README.md and docs/, over seeds 0 1 2, from one scripted run (hours on 2
# cores): runs/figures/figures-<time>/figures.md states each figure's mean and min..max across seeds;
# docs/sweep.png, sweep.csv, sweep_table.txt and figures.md are replaced by the new ones.
figures: $(STAMP)
	FLWR_TELEMETRY_ENABLED=0 $(PY) scripts/figures.py --seeds 0 1 2

bench: $(STAMP)
	$(PY) benchmarks/analog_step.py

protos: $(STAMP)
	$(PY) -m protos.generate

lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
