# One entry point for set-up, tests and the CPU benchmark. Everything runs inside .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gendd-installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# The CPU/CI pins for this machine; pyproject.toml keeps loose ranges for users.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install data test lint format demo demo-quick bench bench-budget bench-budget-teacher clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (IDX files).
$(FASHION_MNIST):
	@if command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Install Debian's dataset-fashion-mnist package, or pass --dataset_name fashion_mnist online"; exit 1; fi

data: $(FASHION_MNIST)

# Two pytest workers, one per core (pytest-xdist), each test file on one worker (its module fixtures built once).
test: install data
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

# ruff's lint and format checks (pyproject.toml); tests/test_lint.py runs the same two in `make test`.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: install data
	$(PY) -m gendd_hf.bench.fashion_mnist demo

demo-quick: install data
	$(PY) -m gendd_hf.bench.fashion_mnist demo --quick

bench: install data
	$(PY) -m gendd_hf.bench.fashion_mnist bench

bench-budget: install data
	$(PY) -m gendd_hf.bench.fashion_mnist budget

# The budget curve's teacher alone (cached; its test top-1 per epoch in results/fashion_mnist_budget/teacher.json).
bench-budget-teacher: install data
	$(PY) -m gendd_hf.bench.budget --teacher_only

clean:
	rm -rf $(VENV) outputs cache
