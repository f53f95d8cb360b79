# vitopt developer entry points. `make demo` and `make test` each work as the first command on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Every extra that installs on Linux (tensorrt needs NVIDIA's libraries: pip install 'vitopt[tensorrt]' there).
EXTRAS := onnx,openvino,coreml,pruning,dev
PYTEST_ARGS ?=

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/vitopt compress --out demo-out

bench: install
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check vitopt tests bench scripts

clean:
	rm -rf demo-out .pytest_cache .ruff_cache build *.egg-info
