# Two entry points: `make run` (install + start the app on the shipped weights) and
# `make test` (install + lint + run the whole test suite). Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ANNY_STAMP := .cache/anny/.built

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
	@# Anny body meshes for the renderer (nlrd/data/synthetic/anny_body.py; code Apache-2.0, assets CC0). Its
	@# wheel declares NVIDIA Warp (~150 MB), which nothing here imports (the model build's one Warp routine is
	@# replaced by torch): install it without dependencies, with the one it needs, roma.
	$(BIN)/pip install -q --no-deps anny==0.6.2 roma==1.8.0
	touch $(STAMP)

# Anny's model is built once into .cache/anny (about 4 CPU-minutes, 1.7 GB peak) before the suite runs, so the
# tests that render Anny bodies only load it.
$(ANNY_STAMP): $(STAMP)
	$(BIN)/python -c "from nlrd.data.synthetic.anny_body import anny_template; anny_template()"
	touch $(ANNY_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) $(ANNY_STAMP)
	bash scripts/install_browser.sh
	$(BIN)/ruff check .
	NLRD_SCREENSHOT_DIR=$${NLRD_SCREENSHOT_DIR:-$$(mktemp -d)} $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
