# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes first and pinned: the CPU build of 2.13.0 is what our machines
# carry; an open range could pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	rm -rf $(DEMO_DIR)
	$(BIN)/neuroalrnn train --task stimulus-selection --model alrnn --units 64 --nonlinear 4 \
		--steps 2000 --seed 0 --out $(DEMO_DIR)
	$(BIN)/neuroalrnn evaluate $(DEMO_DIR) --trials 2000

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs build *.egg-info
