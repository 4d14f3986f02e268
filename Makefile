# `make demo` and `make test` build .venv from nothing (torch pinned first), then run.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools wheel
	$(PIP) torch==2.13.0
	$(PIP) -e ".[test,crowdpose]"
	# xtcocotools from source against this numpy (the PyPI wheel breaks on numpy 2), so the suite runs CrowdPose AP
	$(PIP) --no-binary xtcocotools --no-build-isolation xtcocotools
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/scalenas demo -o demo-out

# one worker per core, at most 4 (a module's tests stay on one worker, so its fixtures are built once);
# the tiny nets of the tests gain little from a second torch thread and a lot from a second process
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadscope --durations=30 tests

clean:
	rm -rf $(VENV) build src/*.egg-info
