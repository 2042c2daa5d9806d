# make demo: set up and run the pipeline on the bundled sample video.
# make test: set up and run the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python -m pipeline.fetch --public public

demo: setup
	$(BIN)/python pipeline.py --input public

test: setup lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench pipeline.py
	$(BIN)/ruff format --check pipeline tests bench pipeline.py

clean:
	rm -rf $(VENV) output/* models/* llm_training_data/*
