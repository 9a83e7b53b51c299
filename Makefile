# Two entry points, each doing its own set-up on first use:
#   make run    -> the main job: snakemake --cores 8 results/table5.csv on the embedded default
#   make rehearse -> the paper's configuration (config/pittsburgh.yaml) rehearsed on the synthetic
#                  city at 480×640 (config/rehearsal.yaml) to every table, in its own folder
#                  rehearsal/ (config/ copied in; hours on a 2-core CPU, README "Rehearsal");
#                  TARGETS="results/table1.csv ..." limits it to those targets
#   make test   -> ruff (lint + format check), snakefmt --check and the whole pytest suite, in
#                  one worker per available CPU (pytest-xdist; a module's tests stay together,
#                  so module fixtures such as the tiny workflow are built once)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

REHEARSAL := rehearsal

.PHONY: run rehearse test lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 8 results/table5.csv

rehearse: $(STAMP)
	mkdir -p $(REHEARSAL) && cp -r config $(REHEARSAL)/
	cd $(REHEARSAL) && PATH="$(CURDIR)/$(BIN):$$PATH" $(CURDIR)/$(BIN)/snakemake \
		-s $(CURDIR)/workflow/Snakefile --workflow-profile $(CURDIR)/profiles/default --cores all \
		--configfile config/pittsburgh.yaml config/rehearsal.yaml $(if $(TARGETS),-- $(TARGETS))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow/

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n auto --dist loadscope --no-loadscope-reorder

clean:
	rm -rf results .snakemake
