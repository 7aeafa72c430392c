# promptedit — the two commands: `make demo` (main job) and `make test` (the test suite).
# Each sets up what it needs: a virtual environment in .venv with torch==2.13.0 and the package.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
OUT    ?= out
# the offline torch wheel lies here on our machines; pip also reads PIP_FIND_LINKS when set
PIPFLAGS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: demo test test-slow setup clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
