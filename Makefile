# make demo: set up and run the pipeline on the bundled sample video, with LLM data and local training.
# make test: set up (including Chromium for the report test) and run the whole test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint browser clean

# requirements-train.txt is the optional extra for local LoRA training (--train_llm); the demo and the tests use it.
$(STAMP): requirements.txt requirements-dev.txt requirements-train.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt -r requirements-train.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python -m pipeline.fetch --public public

demo: setup
	$(BIN)/python pipeline.py --input public --train_llm

# The report test opens the HTML report in headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the report test needs Chromium: sudo apt-get install chromium" >&2; exit 1; \
	  fi; }

test: setup lint browser
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench pipeline.py
	$(BIN)/ruff format --check pipeline tests bench pipeline.py
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) output/* output/.jobs models/* llm_training_data/* llm_models/*
