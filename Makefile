# dlcourse: two commands get you going.
#   make lab    set everything up and open the course in JupyterLab
#   make test   set everything up and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# JupyterLab refuses to run as root unless asked (containers and Binder often are root)
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test test-fast notebooks clean

setup: $(VENV)/.installed

# PyTorch's CPU build (PyPI's torch on Linux is the CUDA build, with NVIDIA's libraries); with an NVIDIA GPU: make lab TORCH_INDEX=
TORCH_INDEX ?= --extra-index-url https://download.pytorch.org/whl/cpu

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.13.0 $(TORCH_INDEX)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

# Copies the student notebooks into work/ (never overwriting your own copies), then opens JupyterLab there.
lab: setup
	$(BIN)/python -m dlcourse.workspace notebooks work
	$(BIN)/jupyter lab work $(LAB_ARGS)

test: setup
	$(BIN)/python -m pytest

# Package unit tests only (no notebook execution), for a quick check while editing.
test-fast: setup
	$(BIN)/python -m pytest -m "not notebooks"

# Runs every notebook in full mode and checks the figures its prose states (before a release; idle machine).
# Writes bench/full_mode.md and fails if a notebook raises or a figure is out of its range.
.PHONY: check-full
check-full: setup
	MPLBACKEND=Agg $(BIN)/python scripts/check_full.py

# The notebooks' widgets in a real browser: JupyterLab driven by headless Chromium (tests/browser, a few
# minutes). Chromium comes from the system (Debian: apt-get install chromium); without it, or without
# playwright, the test is skipped and says why.
.PHONY: test-browser
test-browser: setup
	$(BIN)/python -m pip install -q -e '.[dev,browser]'
	$(BIN)/python -m pytest tests/browser -m browser -rs -v

# Regenerates the student notebooks in notebooks/ from the sources in solutions/ with nbgrader.
notebooks: setup
	$(BIN)/python -m dlcourse.release

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
