# Explainable ML for ECG - course commands. `make help` lists them.
# Every target installs what it needs first (a virtual environment in .venv).

PYTHON ?= $(shell for p in python3.12 python3.11 python3.10 python3; do \
            command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] <= (3,12))' 2>/dev/null && { echo $$p; break; }; done)
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb)) $(sort $(wildcard notebooks/deep_dives/*.ipynb))
PYTEST_NB := --nbval --nbval-current-env --nbval-cell-timeout=900 \
             --nbval-sanitize-with tests/nbval_sanitize.cfg
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONHASHSEED ?= 0

.PHONY: help install data lab instructor browser-test test test-portable unit notebooks models student grade bench clean evaluation \
        check-python check-venv sandbox sandbox-try grades formgrade release exchange-release collect test-class

help:  ## list the targets and the variables
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14
	@echo; echo "variables (make VAR=value target, or export them):"
	@sed -n 's/^#var //p' $(MAKEFILE_LIST) | expand -t 14

#var MITDB_DIR	local copy of MIT-BIH, used in place (else data/mitdb/, else a download)
#var PYTHON	Python 3.10-3.12 that creates .venv (default: the first one found)
#var LAB_ARGS	extra jupyter lab options for lab/instructor, e.g. LAB_ARGS="--port 8899"
#var JOBS	notebooks that make grade grades at the same time: LocalCluster workers (default 1)
#var DASK_SCHEDULER_ADDRESS	make grade sends its tasks to this Dask cluster (tcp://host:8786) instead
#var GRADE_ARGS	more options for make grade, e.g. GRADE_ARGS="--regrade" or "--engine threads"
#var EXCHANGE	nbgrader exchange root for exchange-release/collect (default /srv/nbgrader/exchange)
#var COURSE_ID	nbgrader course id on the exchange (default xai-ecg)
#var SELFCHECK	make release SELFCHECK=off: a graded release whose exercises give no right/wrong feedback
#var SUBMISSIONS	folder of <learner>/<notebook>.ipynb for make grade (default submissions)
#var CELL_TIMEOUT	make grade: seconds a cell may run, then interrupted; killed 10 s later (default 300)
#var NOTEBOOK_TIMEOUT	make grade: seconds a whole notebook may run in its sandbox (default 1200)
#var SANDBOX_MEMORY_MB	make grade: memory of one sandbox in MB, 0 = none (default 4096)
#var SANDBOX_PROCESSES	make grade: processes and threads of one sandbox, 0 = none (default 512)
#var SANDBOX_FILE_MB	make grade: largest file a sandbox may write, in MB (default 256)
#var BENCH_ARGS	options for make bench, e.g. BENCH_ARGS="--quick"
#var CHROMIUM	browser for make browser-test / site-test (default /usr/bin/chromium, apt-get if missing)

check-python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "ERROR: this course needs Python 3.10, 3.11 or 3.12 (alibi needs numpy<2, so not 3.13)."; \
	  echo "       Install one of them, or run e.g. 'make PYTHON=/path/to/python3.11 test'."; exit 1; fi
	@$(PYTHON) -c 'import sys; v=sys.version_info[:2]; ok=(3,10)<=v<=(3,12); \
	  print("Using Python %d.%d" % v) if ok else sys.exit("ERROR: Python %d.%d is not supported; use 3.10-3.12 (make PYTHON=python3.11 ...)" % v)' \
	  || { echo "ERROR: '$(PYTHON)' is not a working Python 3.10-3.12 interpreter."; exit 1; }

# A .venv made by another (unsupported or removed) Python is recreated, not reused.
check-venv:
	@if [ -e $(VENV) ] && ! $(PY) -c 'import sys; sys.exit(not (3,10) <= sys.version_info[:2] <= (3,12))' 2>/dev/null; then \
	  echo "Recreating $(VENV): its Python ($$($(PY) -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo 'missing or broken')) is not 3.10-3.12."; \
	  rm -rf $(VENV); fi

$(STAMP): requirements.txt pyproject.toml
	@$(MAKE) --no-print-directory check-python
	@$(MAKE) --no-print-directory check-venv
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned packages and the utils package

data: $(STAMP)  ## get and verify MIT-BIH (uses MITDB_DIR if set, else downloads from PhysioNet)
	$(PY) -m utils.data.mitdb

LAB_ARGS ?=

lab: data  ## learner view: notebooks without solutions in work/ (never overwritten), no nbgrader tools
	$(PY) -m utils.course.learner lab -- $(LAB_ARGS)

instructor: data  ## instructor view: the source notebooks in notebooks/ (solutions in), nbgrader tools
	$(PY) -m utils.course.learner instructor -- $(LAB_ARGS)

CHROMIUM ?= /usr/bin/chromium
BROWSER_SITE := build/browser-site

$(BROWSER_SITE)/.installed: requirements-browser.txt $(STAMP)
	rm -rf $(BROWSER_SITE)
	$(PY) -m pip install -q --no-deps --target $(BROWSER_SITE) -r requirements-browser.txt
	touch $@

chromium:
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) not found: installing Debian's chromium (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  && test -x $(CHROMIUM) || { echo "ERROR: could not install Chromium (apt-get needs root and Debian's"; \
	  echo "       package registry). Install it yourself, or point CHROMIUM=/path/to/chromium at one."; exit 1; }; }

browser-test: data sandbox-try $(BROWSER_SITE)/.installed chromium  ## headless Chromium: make lab hides solutions; no learner script runs in feedback/formgrader
	BROWSER_TEST=1 CHROMIUM=$(CHROMIUM) PYTHONPATH=$(CURDIR)/$(BROWSER_SITE)$${PYTHONPATH:+:$$PYTHONPATH} \
	  $(PY) -m pytest tests/browser -q -ra -p no:cacheprovider

# The course website: Sphinx + MyST-NB + sphinx-book-theme from requirements-site.txt, installed
# like Playwright into a folder of its own (build/site-env, --no-deps: only packages .venv lacks,
# checked by site/check_env.py), and MathJax from npm (site/package-lock.json) so that the
# site draws its maths without a CDN.
SITE_ENV := build/site-env
SITE_NPM := build/site-npm
.PHONY: chromium site site-test

$(SITE_ENV)/.installed: requirements-site.txt $(STAMP)
	rm -rf $(SITE_ENV)
	$(PY) -m pip install -q --no-deps --target $(SITE_ENV) -r requirements-site.txt
	PYTHONPATH=$(CURDIR)/$(SITE_ENV) $(PY) site/check_env.py $(SITE_ENV)
	touch $@

$(SITE_NPM)/.installed: site/package.json site/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "ERROR: make site needs npm (Node.js) to install"; \
	  echo "       MathJax (apt-get install npm, or see docs/SITE.md)."; exit 1; }
	rm -rf $(SITE_NPM) && mkdir -p $(SITE_NPM)
	cp site/package.json site/package-lock.json $(SITE_NPM)/
	cd $(SITE_NPM) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

site: $(SITE_ENV)/.installed $(SITE_NPM)/.installed  ## the course website from the executed notebooks (learner view) -> build/site/
	PYTHONPATH=$(CURDIR)/$(SITE_ENV)$${PYTHONPATH:+:$$PYTHONPATH} $(PY) site/site_build.py

site-test: site $(BROWSER_SITE)/.installed chromium  ## build/site/ in headless Chromium: pages, images, links, maths, no solution
	SITE_TEST=1 CHROMIUM=$(CHROMIUM) PYTHONPATH=$(CURDIR)/$(BROWSER_SITE):$(CURDIR)/$(SITE_ENV)$${PYTHONPATH:+:$$PYTHONPATH} \
	  $(PY) -m pytest tests/site -q -ra -p no:cacheprovider

unit: data sandbox-try  ## unit tests only (skips the slow autograding of the real notebooks)
	GRADING_SKIP_AUTOGRADE=1 $(PY) -m pytest tests -q -m "not class_workflow"

test: data sandbox-try  ## unit tests + every notebook re-executed and compared with pytest --nbval
	$(PY) -m pytest tests $(NOTEBOOKS) $(PYTEST_NB) -q -ra -m "not class_workflow"

test-class: data sandbox-try  ## end to end: incremental grades, exchange, Dask cluster, release's make test (~5 min)
	$(PY) -m pytest tests -q -ra -s -m class_workflow

# The same comparison with the numerics turned to the other side (oneDNN flipped, one thread for
# TensorFlow/OpenMP/BLAS, another hash seed): an output that depends on the CPU fails here.
test-portable: data  ## every notebook re-executed under perturbed numerics and compared (nbval)
	$(PY) -m utils.course.portable $(NOTEBOOKS) $(PYTEST_NB) -q -ra

notebooks: data  ## re-execute the notebooks in place (refresh the committed outputs and the self-check digests)
	SELFCHECK_RECORD=1 $(PY) -m utils.course.execute $(NOTEBOOKS)

models: data  ## train every course model and save it under data/models/ (about 1 h on 2 cores)
	$(PY) -m utils.models.catalog

evaluation: data  ## deep dive D2's full explanation-evaluation grid, every method (long) -> data/evaluation/
	$(PY) -m utils.studies.evaluation_grid

SUBMISSIONS ?= submissions
JOBS ?= 1
CELL_TIMEOUT ?= 300
NOTEBOOK_TIMEOUT ?= 1200
SANDBOX_MEMORY_MB ?= 4096
SANDBOX_PROCESSES ?= 512
SANDBOX_FILE_MB ?= 256

student: $(STAMP)  ## learner notebooks without solutions (nbgrader) -> build/student/
	$(PY) -m utils.course.grading student

# Grading runs every submission in a bubblewrap sandbox: install it when missing (as root).
# `sandbox-try` (for the tests) never fails: the sandbox tests skip with the reason instead.
sandbox-try:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing bubblewrap (the grading sandbox) with apt-get..."; \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } || true; \
	  fi; }

sandbox: sandbox-try
	@command -v bwrap >/dev/null 2>&1 || { \
	  echo "ERROR: make grade needs bubblewrap (bwrap) to run each submission in a sandbox."; \
	  echo "       Install it: sudo apt-get install bubblewrap (Debian/Ubuntu), dnf install bubblewrap (Fedora)."; \
	  exit 1; }

GRADE_ARGS ?=
EXCHANGE ?= /srv/nbgrader/exchange
COURSE_ID ?= xai-ecg

grade: data sandbox  ## grade new/changed SUBMISSIONS/<learner>/<nb>.ipynb (Dask tasks, sandboxes) -> build/grades.csv
	$(PY) -m utils.course.gradebook grade $(SUBMISSIONS) --jobs $(JOBS) \
	  --timeout $(CELL_TIMEOUT) --notebook-timeout $(NOTEBOOK_TIMEOUT) \
	  --memory-mb $(SANDBOX_MEMORY_MB) --processes $(SANDBOX_PROCESSES) --file-mb $(SANDBOX_FILE_MB) \
	  $(GRADE_ARGS)

grades: $(STAMP)  ## after manual grading: rewrite build/grades*.csv and the feedback from the gradebook
	$(PY) -m utils.course.gradebook export

formgrade: $(STAMP)  ## nbgrader's formgrader on the gradebook: written answers with the rubric beside them
	$(PY) -m utils.course.gradebook formgrade -- $(LAB_ARGS)

release: $(STAMP)  ## learner distribution without answers -> build/release/xai-ecg-course/ and .tar.gz
	$(PY) -m utils.course.release $(if $(filter off,$(SELFCHECK)),--no-selfcheck)

exchange-release: $(STAMP)  ## release the learner notebooks to nbgrader's exchange (EXCHANGE, COURSE_ID)
	EXCHANGE=$(EXCHANGE) COURSE_ID=$(COURSE_ID) $(PY) -m utils.course.exchange release

collect: $(STAMP)  ## collect the learners' submissions from the exchange into SUBMISSIONS (then make grade)
	EXCHANGE=$(EXCHANGE) COURSE_ID=$(COURSE_ID) $(PY) -m utils.course.exchange collect --submissions $(SUBMISSIONS)

BENCH_ARGS ?=

bench: data  ## time extraction, training, notebooks and explainers (~15 min; build/bench/bench.md)
	$(PY) -m utils.course.benchmark --out build/bench $(BENCH_ARGS)

clean:  ## remove the virtual environment, caches and the downloaded database copy
	rm -rf $(VENV) build data/cache data/mitdb data/mitdb.partial .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
