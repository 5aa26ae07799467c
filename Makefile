# The two commands: `make demo` and `make test`. Each does its own set-up.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check image venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The whole product on embedded defaults: SQLite, embedded broker, the Docker
# runner when an engine is reachable (its image is built on first use), else
# the development runner with a loud warning.
demo: $(STAMP)
	@if docker info >/dev/null 2>&1; then $(BIN)/sandbox runner build-image; fi
	$(BIN)/sandbox demo

test: $(STAMP)
	$(BIN)/pytest

check: $(STAMP)
	$(BIN)/ruff check sandbox portal policies runners datasets tests bench
	$(BIN)/ruff format --check sandbox portal policies runners datasets tests bench
	$(BIN)/mypy

image: $(STAMP)
	$(BIN)/sandbox runner build-image

bench: $(STAMP)
	$(BIN)/python bench/job_latency.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
