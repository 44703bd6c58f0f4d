# Diffusion models for control and planning: build and test.
#
#   make book              set up .venv if needed, build the website into _build/html
#   make test              ... and run every test: unit tests, notebooks (nbval), browser
#   make bench SUITE=recap run a benchmark suite of tutorial_lib
#
# Variables: PYTHON (a Python 3.11 interpreter), CHROMIUM (browser for the site
# test), PIP_INSTALL_ARGS (extra pip arguments, e.g. an extra index).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium
PIP_INSTALL_ARGS ?=
SUITE ?= recap
SITE := _build/html
BUILD_LOG := _build/jb-build.log

# The environment is rebuilt only when constraints.txt or pyproject.toml change:
# the stamp file's name carries a hash of both.
ENV_HASH := $(shell cat constraints.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(ENV_HASH)

# Notebook runs repeat exactly: fixed hash seed; one CPU thread per process (the
# notebooks' small tensors run fastest that way, and their stored outputs were made
# so); kernels keep the inline matplotlib backend (the one Jupyter uses, so figures
# are stored as outputs).
# The tests run PyTorch's portable CPU kernels (ATEN_CPU_CAPABILITY=default), not the
# AVX2 / AVX-512 ones the stored outputs were made with: a number that depends on the
# machine and slipped past the tolerance checks then fails here, not on a reader's CPU.
TEST_CPU_CAPABILITY ?= default
TEST_ENV := PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MPLBACKEND=module://matplotlib_inline.backend_inline \
	ATEN_CPU_CAPABILITY=$(TEST_CPU_CAPABILITY) CHROMIUM=$(CHROMIUM)

# Two pytest workers (pytest-xdist), one per core of the CI machine; --dist loadfile keeps each
# notebook's cells in one worker, in order, on one kernel. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
PYTEST_ARGS := tests book \
	-n $(PYTEST_WORKERS) --dist loadfile \
	--nbval --nbval-current-env \
	--nbval-sanitize-with tests/nbval_sanitize.cfg \
	--nbval-cell-timeout=600 --durations=15

.PHONY: help venv book html chromium test pytest bench mutate clean

help:
	@echo "make book              build the website into $(SITE) (sets up $(VENV) first)"
	@echo "make test              build, then run unit tests, notebooks and the browser test"
	@echo "make bench SUITE=name  run python -m tutorial_lib.bench name"
	@echo "make mutate            mutation testing of the library's core (mutmut; slow, not part of make test)"
	@echo "make clean             remove $(SITE) and caches (keeps $(VENV))"

venv: $(STAMP)

$(STAMP):
	@t0=$$SECONDS; \
	if [ ! -x "$(BIN)/python" ]; then \
	  if [ -z "$(PYTHON)" ]; then \
	    echo "error: no python3.11 or python3 on PATH; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; \
	  fi; \
	  version=$$("$(PYTHON)" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  if [ "$$version" != "3.11" ]; then \
	    echo "error: $(PYTHON) is Python $$version; constraints.txt pins versions for Python 3.11." >&2; \
	    echo "       Install Python 3.11 and run: make PYTHON=/path/to/python3.11 ..." >&2; exit 1; \
	  fi; \
	  echo "==> creating $(VENV) with $(PYTHON) (Python $$version)"; \
	  "$(PYTHON)" -m venv "$(VENV)"; \
	fi; \
	echo "==> installing pinned dependencies into $(VENV) (pip install -c constraints.txt -e .[book,test])"; \
	"$(BIN)/python" -m pip install --quiet $(PIP_INSTALL_ARGS) -c constraints.txt -e ".[book,test]"; \
	rm -f $(VENV)/.installed-*; \
	touch "$@"; \
	echo "==> $(VENV) ready ($$((SECONDS - t0)) s)"

# Build every page from the outputs stored in the notebooks; any warning,
# broken reference or missing file fails the build.
html: $(STAMP)
	@t0=$$SECONDS; \
	echo "==> building the website (jb build . -W -n --keep-going --all)"; \
	rm -rf "$(SITE)/_screenshots"; mkdir -p _build; \
	if ! "$(BIN)/jb" build . -W -n --keep-going --all > $(BUILD_LOG) 2>&1; then \
	  grep -E "WARNING|ERROR|Exception|Error" $(BUILD_LOG) | grep -v "ParserConfig" >&2 || tail -n 40 $(BUILD_LOG) >&2; \
	  echo "error: the website build failed (warnings count as errors); full log in $(BUILD_LOG)" >&2; \
	  exit 1; \
	fi; \
	echo "==> website built ($$((SECONDS - t0)) s)"

book: html
	@echo "The website is in $(CURDIR)/$(SITE); open $(CURDIR)/$(SITE)/index.html"

chromium:
	@t0=$$SECONDS; \
	if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    echo "==> installing the Debian package chromium (for the browser test)"; \
	    apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	  else \
	    echo "error: Chromium not found at $(CHROMIUM). The browser test needs it:" >&2; \
	    echo "       install it (Debian/Ubuntu: sudo apt-get install chromium)" >&2; \
	    echo "       or pass its path: make test CHROMIUM=/path/to/chromium" >&2; \
	    exit 1; \
	  fi; \
	  test -x "$(CHROMIUM)" || { echo "error: apt-get installed chromium but $(CHROMIUM) does not exist" >&2; exit 1; }; \
	  echo "==> chromium installed ($$((SECONDS - t0)) s)"; \
	fi

# One pytest run: unit tests (tests/), every notebook under book/ (nbval,
# strict output comparison) and the browser test of the built site.
pytest: $(STAMP)
	@t0=$$SECONDS; \
	echo "==> pytest $(PYTEST_ARGS)"; \
	status=0; $(TEST_ENV) "$(BIN)/python" -m pytest $(PYTEST_ARGS) || status=$$?; \
	echo "==> pytest finished ($$((SECONDS - t0)) s)"; \
	exit $$status

test: $(STAMP) chromium
	@$(MAKE) --no-print-directory html
	@$(MAKE) --no-print-directory pytest

bench: $(STAMP)
	"$(BIN)/python" -m tutorial_lib.bench $(SUITE)

# Mutation testing of tutorial_lib's core with mutmut (a dev-only tool, requirements-dev.txt): the modules
# listed under [tool.mutmut] in pyproject.toml, each mutant checked by the unit tests that call the mutated
# function. One worker by default (MUTATE_CHILDREN); MUTATE=<pattern> checks a subset, e.g.
# make mutate MUTATE='tutorial_lib.agents.mppi*'. Results are cached in mutants/ (delete it to start over).
# Prints the score per module and overall; tests/MUTANTS.md lists the survivors with a reason each.
MUTATE ?=
MUTATE_CHILDREN ?= 1
mutate: $(STAMP)
	@t0=$$SECONDS; \
	if ! "$(BIN)/python" -c "import mutmut" 2> /dev/null; then \
	  echo "==> installing the dev tools (pip install -r requirements-dev.txt)"; \
	  "$(BIN)/python" -m pip install --quiet $(PIP_INSTALL_ARGS) -c constraints.txt -r requirements-dev.txt; \
	fi; \
	"$(BIN)/python" tests/mutation_score.py --refresh; \
	echo "==> mutmut run --max-children $(MUTATE_CHILDREN) $(MUTATE) (log: _build/mutmut.log)"; mkdir -p _build; \
	PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MPLBACKEND=Agg TUTORIAL_LIB_DATA="$(CURDIR)/data" \
	  "$(BIN)/python" -m mutmut run --max-children $(MUTATE_CHILDREN) $(MUTATE) > _build/mutmut.log 2>&1 \
	  || { tail -n 30 _build/mutmut.log >&2; echo "error: mutmut failed; log in _build/mutmut.log" >&2; exit 1; }; \
	TUTORIAL_LIB_DATA="$(CURDIR)/data" "$(BIN)/python" tests/mutation_score.py; \
	echo "==> make mutate finished ($$((SECONDS - t0)) s)"

clean:
	rm -rf _build .pytest_cache
