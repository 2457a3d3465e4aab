# The README's two commands: `make quickstart` (the main job) and `make test`.
# Both create .venv on a fresh machine; with no torch present they install the CPU wheel torch==2.13.0
# first, so that no multi-GB CUDA build is pulled in by an unpinned `torch` requirement.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
QUICKSTART_ARGS ?=

.PHONY: setup test test-gpu quickstart clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q -x --durations=15

test-gpu: setup
	$(PY) -m pytest -q -m gpu

quickstart: setup
	$(VENV)/bin/tad quickstart $(QUICKSTART_ARGS)

clean:
	rm -rf $(VENV) quickstart_out
