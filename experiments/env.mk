# What every experiment's Makefile shares (`include ../env.mk` from experiments/<name>/):
# the repository's venv and the environment of ../../env.mk.
ROOT := $(abspath ../..)
BIN := $(ROOT)/.venv/bin
include $(ROOT)/env.mk
