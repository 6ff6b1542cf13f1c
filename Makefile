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
	@# mediapipe pulls opencv-contrib-python, a GUI build of cv2 that needs libGL.so.1; it and the headless
	@# build we depend on unpack into the same cv2/ folder. Remove every other OpenCV distribution (and the
	@# files they overwrote), then reinstall the headless build's own files, so exactly one cv2 is left.
	$(BIN)/pip uninstall -q -y opencv-contrib-python opencv-python opencv-python-headless
	$(BIN)/pip install -q --no-deps --force-reinstall \
	  "opencv-contrib-python-headless==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("opencv-contrib-python-headless"))')"
	$(BIN)/python -c "import cv2, mediapipe"
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
