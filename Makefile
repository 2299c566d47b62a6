# Two entry points for a fresh machine (see README.md):
#   make repro   set up .venv and run the whole pipeline on the embedded default
#   make test    set up .venv and run lint, type checks and the tests
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,gptq,ray
# llama.cpp tools for the GGUF export and the llamacpp backend, built once per machine into
# $IMPQ_LLAMACPP_DIR (default ~/.cache/impq/llama.cpp-<version>): by `make test` ahead of
# its tests (LLAMACPP=0 skips them), else on their first use; `make repro` never needs them.
LLAMACPP ?= 1
LLAMACPP_JOBS ?= 2
# the llama.cpp tests skip only when their build is off (0) or impossible (no cmake, c++)
export IMPQ_LLAMACPP := $(LLAMACPP)

# Text comes from ../shared/data when it sits beside the checkout; otherwise from the hub.
ROOT := .
include env.mk

.PHONY: setup repro test lint llamacpp

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

llamacpp: $(VENV)/.installed
	$(BIN)/python -m impq.llamacpp build --jobs $(LLAMACPP_JOBS)

# One Prefect server for the whole run (flows/server.py), not a temporary one per stage.
repro: setup
	$(BIN)/python -m flows.server -- dvc repro

lint: setup
	ruff check .
	ruff format --check .
	mypy
	lint-imports
	mkdocs build --strict

test: lint $(if $(filter 1,$(LLAMACPP)),llamacpp)
	pytest || { rc=$$?; [ $$rc -eq 5 ] && echo 'pytest collected no tests: failing' >&2; exit $$rc; }
