# qrng-ceremony: every target runs set-up first; set-up is idempotent and does only what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test bench lint module clean

setup:
	@bash scripts/setup.sh

module: setup
	@$(PY) -m pkcs11_provider.build

demo: setup
	@bash scripts/demo.sh

test: setup
	@$(PY) -m pytest -q tests

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
	@if [ -f bench/run_c_bench.sh ]; then bash bench/run_c_bench.sh; fi

lint: setup
	@$(VENV)/bin/ruff check qrng pkcs11_provider ceremony tests bench
	@$(VENV)/bin/mypy qrng pkcs11_provider ceremony

clean:
	rm -rf build .softhsm .pytest_cache
