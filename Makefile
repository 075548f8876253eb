# The two commands of the README are `make book` and `make test`; everything else
# here serves them. Each target installs what it needs into .venv first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Set TORCH_INDEX=https://download.pytorch.org/whl/cpu to get the CPU-only torch
# wheel from PyTorch's index instead of PyPI's (which pulls CUDA libraries).
TORCH_INDEX ?=
PIP_INDEX_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

NOTEBOOKS := notebooks casestudies
PYTEST_NBVAL := --nbval --nbval-current-env --nbval-sanitize-with .nbval-sanitize.cfg \
                --nbval-cell-timeout=300

.PHONY: help install book check-site test test-fast test-unit test-notebooks lint format lab bench clean

help:
	@echo "make book   build the site into _build/html (runs every notebook)"
	@echo "make check-site  open every page of _build/html in headless chromium"
	@echo "make test   unit tests + every notebook under pytest --nbval"
	@echo "make test-fast  the fast tier of the unit tests (every change)"
	@echo "make lint   ruff lint and format check"
	@echo "make lab    JupyterLab on 127.0.0.1"
	@echo "make bench  benchmarks (benchmarks/)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), \
	  f"Python 3.11 is required, {sys.executable} is {sys.version.split()[0]}: \
	  run make PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_INDEX_ARGS) -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mlsd)" >/dev/null
	@touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -n -W --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

# Every page of the built site in headless Chromium (Debian's chromium): error
# outputs, links and images that point nowhere, figures, console errors.
check-site: $(STAMP)
	$(BIN)/python .ci/check_site.py _build/html

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_NBVAL) tests $(NOTEBOOKS)

# The fast tier, for every change: no real Triton, no quality training, no fault
# injection or fuzzing (`make test` runs them all).
FAST := not triton and not quality and not faults and not fuzz
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "$(FAST)" tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_NBVAL) $(NOTEBOOKS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser

bench: $(STAMP)
	@for script in benchmarks/*.py; do \
	  echo "== $$script"; $(BIN)/python $$script || exit 1; \
	done

clean:
	rm -rf _build .pytest_cache
