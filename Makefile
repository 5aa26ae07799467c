# The two commands: `make demo` and `make test`. Each does its own set-up.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test check image venv clean bench translations

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

# The web pages' words (CONTRIBUTING.md, "Words"): extract every key from the templates,
# portal/*.py and the findings of policies/ and sandbox/ (babel.cfg), add the new ones to
# both catalogs, compile them. Fill in the new msgstrs, then run it again.
translations: $(STAMP)
	$(BIN)/pybabel -q extract -F babel.cfg -o portal/translations/messages.pot \
		--sort-output --add-location=file --no-wrap \
		--project=open-data-sandbox --copyright-holder="open-data-sandbox contributors" .
	$(BIN)/pybabel -q update -i portal/translations/messages.pot -d portal/translations \
		--no-wrap --ignore-obsolete --no-fuzzy-matching
	$(BIN)/pybabel -q compile -d portal/translations

image: $(STAMP)
	$(BIN)/sandbox runner build-image

bench: $(STAMP)
	$(BIN)/python bench/job_latency.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
