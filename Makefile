# promptedit — the two commands: `make demo` (main job) and `make test` (the test suite).
# Each sets up what it needs: a virtual environment in .venv with torch==2.13.0 and the package.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
OUT    ?= out
# the offline torch wheel lies here on our machines; pip also reads PIP_FIND_LINKS when set
PIPFLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: demo test test-slow setup clean gpu-wheels

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIPFLAGS) torch==2.13.0
	$(BIN)/python -m pip install -q $(PIPFLAGS) -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/promptedit demo --out $(OUT)/demo
	$(BIN)/promptedit demo --model embedded-xl --out $(OUT)/demo-xl
	@echo "promptedit is in $(BIN): run '. $(BIN)/activate' to put it on PATH (or run $(BIN)/promptedit)"

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache

# the wheels a lent GPU machine lacks (its Python 3.12 has torch and transformers), for benchmarks/gpu.sh
gpu-wheels:
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl diffusers==0.42.1 kornia==0.9.0 kornia_rs==0.2.0 importlib_metadata
