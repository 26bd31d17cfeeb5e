# Set-up and entry points. `make install` is idempotent: each step checks what the venv
# already has, and the stamp file makes a second run a no-op.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
FAIRSEQ_SPEC ?= fairseq-fixed==0.12.3.1
STAMP := $(VENV)/.pn_fairseq_installed
DATASET ?= synthetic

.PHONY: install test demo bench wheelhouse gpu-check clean-venv

install: $(STAMP)

$(STAMP): setup.py
	@test -x $(PY) || python3 -m venv $(VENV)
	@# torch first, and only if missing: GPU users install their CUDA build beforehand.
	@$(PY) -c "import torch" 2>/dev/null && echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')" \
	  || $(PIP) install "$(TORCH_SPEC)"
	@# fairseq's build imports torch and numpy: no build isolation (otherwise pip pulls a CUDA
	@# torch into the build env); --no-deps because it declares torchaudio, which does not load
	@# with current torch and which fairseq's translation code never imports.
	@$(PY) -c "import fairseq" 2>/dev/null && echo "fairseq already installed" \
	  || { $(PIP) install setuptools wheel cython "numpy>=1.21.3" \
	       && $(PIP) install --no-build-isolation --no-deps "$(FAIRSEQ_SPEC)"; }
	$(PIP) install -e ".[test]"
	@touch $(STAMP)

test: install
	@# Two workers (pytest-xdist): most tests wait on fairseq subprocesses, so 2 cores run them
	@# side by side; more do not help, the subprocesses keep the cores busy (measured on four heavy
	@# modules: -n 2 285 s, -n 4 307 s, 94% of both cores busy). One thread each: tests/conftest.py.
	@# --dist loadfile: a module's tests share one worker, so a module-scoped fixture (a trained
	@# model, a smoke run) is built once, not once per worker (measured: 5 of the 25 slowest
	@# entries were second copies). --durations: where the 15-minute budget goes.
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25 tests

demo: install
	DATASET=$(DATASET) PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# Issue 11's benchmarks (bench/README.md): norm forward+backward at the IWSLT and the big shape,
# training words/s against preln, decoding speed of a folded pn checkpoint, the tools' start-up.
# Arguments for bench_train and bench_decode: BENCH_TRAIN_ARGS, BENCH_DECODE_ARGS.
bench: install
	$(PY) bench/bench_norms.py --T 30 --B 128 --C 512
	$(PY) bench/bench_norms.py --T 64 --B 64 --C 1024
	$(PY) bench/bench_train.py $(BENCH_TRAIN_ARGS)
	@# Twice: as fairseq-generate decodes (each model's own hypothesis lengths), and with every
	@# hypothesis forced to 20 tokens (the same decoder steps for all: the cost per step).
	$(PY) bench/bench_decode.py $(BENCH_DECODE_ARGS)
	$(PY) bench/bench_decode.py --fixed-length 20 $(BENCH_DECODE_ARGS)
	$(PY) bench/bench_startup.py

# Offline installs (docs/gpus-and-scale.md "Installing on an offline GPU node"): every package beyond torch into $(WHEELHOUSE), for this
# Python (default) or PYTHON_VERSION=3.12 (manylinux x86_64 wheels); HAVE=FILE leaves out what the
# target already has. On the target: bash scripts/wheelhouse.sh install --wheelhouse DIR.
WHEELHOUSE ?= wheelhouse
wheelhouse: install
	PY=$(PY) bash scripts/wheelhouse.sh download --dest $(WHEELHOUSE) \
	  $(if $(PYTHON_VERSION),--python-version $(PYTHON_VERSION)) $(if $(HAVE),--have $(HAVE))

# docs/gpus-and-scale.md "GPU check": environment, CUDA tests, mixed precision, CUDA speed, a Multi30k table
# (GPU_CHECK_SMOKE=1: the same stages on CPU, tiny). No install dependency: on an offline node
# the venv comes from scripts/wheelhouse.sh install. Arguments: GPU_CHECK_ARGS.
gpu-check:
	@test -x $(PY) || { echo "gpu-check: no $(PY): run make install, or scripts/wheelhouse.sh install offline"; exit 1; }
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pn_fairseq.gpucheck $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
