# What every experiment's Makefile shares (`include ../env.mk` from experiments/<name>/):
# the repository's venv first on PATH, the shared data folder when it sits beside the
# checkout (then the hub is not needed), and no telemetry.
ROOT := $(abspath ../..)
BIN := $(ROOT)/.venv/bin

SHARED_DATA := $(abspath $(wildcard $(ROOT)/../shared/data))
ifneq ($(SHARED_DATA),)
export IMPQ_DATA_DIR ?= $(SHARED_DATA)
export HF_HUB_OFFLINE ?= 1
endif
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1
export PATH := $(BIN):$(PATH)
