# Two entry points for a fresh clone: `make run` (set up, start the app) and
# `make test` (set up, run the tests). Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test setup bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's dependency list changes. The cluster extra
# (Ray) too, so that the tests of `--ray` run here and in CI.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e ".[dev,cluster]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/persam-studio $(ARGS)

# Import contracts first (pyproject.toml: layers, no Qt in core, no torch in
# the GUI, no cycles), then the tests.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/persam-studio bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
