# Two entry points: `make demo` (train → quantize → netx → Lava CPU → report)
# and `make test`. Both build .venv with a Python 3.10 found on this machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= demo_out

.PHONY: demo test bench bench-data clean

$(VENV)/.installed: pyproject.toml
	@py=$$(bash scripts/find_python310.sh) || exit 1; \
	echo "using $$py"; \
	[ -x $(PY) ] || $$py -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip && \
	$(PY) -m pip install -q -e '.[dev]' && touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/snn2loihi demo --out $(OUT)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	$(PY) bench/emulator_vs_lava.py

# Full Fashion-MNIST (60k/10k IDX files) for bench/methods.py, from Debian's package (root).
bench-data:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || apt-get install -y dataset-fashion-mnist

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
