# make demo: set up and run the pipeline on the bundled sample video, with LLM data and local training.
# make test: set up (including Debian's chromium, chromium-driver and postgresql) and run the whole test suite.
# make serve: set up and start the job service on http://127.0.0.1:8000.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint system serve clean

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

# Debian's packages the tests use: headless Chromium and its driver (the report and the
# service's page) and PostgreSQL (the job database shared by several service processes).
SYSTEM_PACKAGES := chromium chromium-driver postgresql
system:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "the tests need Debian's$$missing: sudo apt-get install $(SYSTEM_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi

test: setup lint system
	$(BIN)/python -m pytest

# The job service on http://127.0.0.1:8000 (see README: "The job service").
serve: setup
	$(BIN)/python pipeline.py serve

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests bench pipeline.py
	$(BIN)/ruff format --check pipeline tests bench pipeline.py
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) output/* output/.jobs models/* llm_training_data/* llm_models/* service
