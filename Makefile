# The README's quick start: `make demo` and `make test`. Both work on a fresh machine with Python and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch first, pinned to the CPU wheel this machine carries (a bare `pip install torch` pulls a
# multi-GB CUDA build); pyproject keeps a loose range so GPU machines keep their own build.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scalinglab study run examples/demo.toml

lint: $(STAMP)
	$(BIN)/ruff check scalinglab tests bench

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
