# Two commands do all the set-up on a fresh machine:
#   make demo   virtual environment + torch/torchvision + this package, then the main job
#   make test   the same set-up, then the test suite (fast and medium tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.netgraph-installed

.PHONY: demo test test-all bench bench-docs docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch 2.14.1 and torchvision 0.29.1 lie on this machine's disk (a bare `torch` would
	# pull another CUDA build); torchvision and timm are the model sources of the coverage tests.
	$(BIN)/python -c "import torchvision" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e ".[test,models,study]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/netgraph demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks (issue 13): a table of figures, targets and same-run references, printed and written to
# build/benchmarks/; bench-docs also updates docs/benchmarks.md and docs/figures/benchmarks/.
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--ladder-max 1e8 --quiet".
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-docs: $(STAMP)
	$(BIN)/python benchmarks/run.py --docs $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
