# The environment every Makefile here shares (the root one, and each experiment's through
# experiments/env.mk): the venv first on PATH, the shared data folder when it sits beside
# the checkout (then the hub is not needed), and no telemetry. The includer sets ROOT (the
# repository) and BIN (the venv's bin folder) first.
SHARED_DATA := $(abspath $(wildcard $(ROOT)/../shared/data))
ifneq ($(SHARED_DATA),)
export IMPQ_DATA_DIR ?= $(SHARED_DATA)
export HF_HUB_OFFLINE ?= 1
endif
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1
export PATH := $(abspath $(BIN)):$(PATH)
