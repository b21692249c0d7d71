# latent3d: the two commands that set everything up on a fresh machine.
#   make demo   create .venv, install latent3d, run the main job on the bundled default
#   make test   create .venv, install latent3d[dev], run the test suite
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch 2.13.0 is pinned first so pip takes the CPU build on disk instead of a multi-GB CUDA build;
# on a GPU machine install your CUDA torch into .venv first and `make` keeps it (the range in pyproject admits it).
TORCH   ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test test-numerics venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/latent3d info
	$(BIN)/latent3d dream "a red snowman" --out out/demo --seed 0

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

# the numerically sensitive tests (parity and training) again on ATen's scalar kernels and oneDNN's SSE4.1 ones (the
# ATen setting does not reach oneDNN's convolutions): what another CPU computes
test-numerics: $(STAMP)
	ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile -m numerics $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
