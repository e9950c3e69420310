# Two commands do all set-up:  `make demo` (tune, retrain, report on digits) and `make test`.
#
# torch: the CPU wheel by default. On a machine without a local wheel, point pip at PyTorch's
# CPU index:  make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Bring your own CUDA build:  make demo TORCH="torch>=2.2"  (or install torch first, then TORCH=)
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
RUNS ?= runs
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH),$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)))
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/tunekit search configs/quickstart.yaml --runs $(RUNS)
	$(BIN)/tunekit train --best --study quickstart --runs $(RUNS)
	$(BIN)/tunekit report quickstart --runs $(RUNS)

test: install
	$(BIN)/ruff format --check tunekit tests benchmarks
	$(BIN)/ruff check tunekit tests benchmarks
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Benchmarks take ~35 minutes on 2 cores; results go to benchmarks/results.jsonl (one JSON line each).
bench: install
	$(BIN)/python benchmarks/trainer_throughput.py --repeats 15 --epochs 5 | tee benchmarks/results.log
	$(BIN)/python benchmarks/search_vs_optuna.py --seeds 0 1 2 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/overhead.py --trials 50 500 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/scale.py --trials 10000 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/workers.py --repeats 6 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/startup.py --repeats 10 | tee -a benchmarks/results.log
	TUNEKIT_LONG_FAULTS=1 $(BIN)/python -m pytest -q tests/e2e/test_fault_injection.py tests/e2e/test_database_faults.py
	TUNEKIT_FUZZ_CASES=5000 $(BIN)/python -m pytest -q tests/e2e/test_fuzz.py
	$(BIN)/python benchmarks/population.py --repeats 3 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/grpc_proxy.py --procs 1 4 8 --trials 100 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/threads.py --repeats 3 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/worker_start.py --repeats 5 | tee -a benchmarks/results.log
	$(BIN)/python benchmarks/peers.py --seeds 0 1 2 --budget 90 | tee -a benchmarks/results.log
	grep '^{' benchmarks/results.log > benchmarks/results.jsonl

clean:
	rm -rf $(VENV) .pytest_cache
