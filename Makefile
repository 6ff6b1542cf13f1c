# Two entry points: `make run` (install + start the app on the shipped weights) and
# `make test` (install + lint + run the whole test suite). Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	bash scripts/install_browser.sh
	$(BIN)/ruff check .
	NLRD_SCREENSHOT_DIR=$${NLRD_SCREENSHOT_DIR:-$$(mktemp -d)} $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
