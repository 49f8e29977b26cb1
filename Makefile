# The two commands of the README, each setting the environment up first
# when it is missing:
#   make demo    train and evaluate a PoolFormer-S12 detector on toy data
#   make test    run the test suite
# Existing environment (e.g. your GPU one):
#   bash tools/setup_env.sh --python "$(which python)"
#   make test PYTHON=python
VENV ?= .venv
PYTHON ?= $(VENV)/bin/python
PYTEST_ARGS ?=

ifeq ($(origin PYTHON),file)
SETUP := $(VENV)/.mixer-backbones-setup
else
SETUP :=
endif

.PHONY: setup demo test lint
setup: $(SETUP)

$(VENV)/.mixer-backbones-setup: tools/setup_env.sh setup.py
	bash tools/setup_env.sh --venv $(VENV)
	touch $@

demo: $(SETUP)
	$(PYTHON) tools/demo.py

test: $(SETUP)
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

lint: $(SETUP)
	$(PYTHON) -m flake8 mixer_backbones tools tests configs
