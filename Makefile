# qrng-ceremony. The two README commands, `make demo` and `make test`, do everything on a fresh Debian 12 machine.
# Stages (each idempotent, each does only what is missing):
#   provision  Debian packages (root, once per machine; the only target that changes the system, with install-module)
#   venv       .venv with the package and its dev tools         -> enough for `make lint` and `make check`
#   native     LGPL gf2x, qrng._native, build/libqrng-pkcs11.so  (needs provision)
#   fixtures   SoftHSM2 token and TEST-ONLY keys under .softhsm/ (needs native)
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: docs help provision venv native fixtures setup demo test check system bench lint module install-module uninstall-module wheel deb deb-test clean

help:
	@echo "make demo | test | check | lint | bench | provision | wheel | deb | deb-test | install-module | uninstall-module | clean"

provision:
	@bash scripts/provision.sh

venv:
	@bash scripts/setup.sh venv

native: provision venv
	@bash scripts/setup.sh native

fixtures: native
	@bash scripts/setup.sh fixtures

setup: fixtures

module: native

demo: setup
	@bash scripts/demo.sh

# the unit layer: pure, no subprocess, no .so, no SoftHSM2, no Debian tool (< 30 s, on every core: pytest-xdist);
# the YAML fuzzers run 60 examples per loader here and 150 in `make test` (QRNG_FUZZ_EXAMPLES sets it)
check: venv
	@QRNG_FUZZ_EXAMPLES=$${QRNG_FUZZ_EXAMPLES:-60} $(PY) -m pytest -q -n auto -m "not system" tests/unit

# everything: the unit layer and the system layer (SoftHSM2, the built module, consumers, outside judges), on both
# cores (a file's tests stay on one worker: their module fixtures are built once); then, alone, the tests that
# bound latency and CPU time (the daemon layer, USB unplug), which a second worker's load would make flaky. The
# Debian packages' test is `make deb-test` (2 min more: it would take make test past its 15-minute budget).
SERIAL_TESTS := tests/system/daemon tests/system/qrng_pkcs11/test_usb_unplug.py
test: setup
	@$(PY) -m pytest -q -n 2 --dist loadfile -m "not deb" $(foreach t,$(SERIAL_TESTS),--ignore=$(t)) tests
	@$(PY) -m pytest -q -m "not deb" $(SERIAL_TESTS)

system: setup
	@$(PY) -m pytest -q -m "not deb" tests/system

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
	@if [ -f bench/run_c_bench.sh ]; then bash bench/run_c_bench.sh; fi

lint: venv
	@$(VENV)/bin/ruff check qrng qrngd transparency qrng_cli qrng_pkcs11 ceremony tests bench scripts
	@$(VENV)/bin/mypy qrng qrngd transparency qrng_cli qrng_pkcs11 ceremony

# System-wide p11-kit registration of THIS checkout's module: explicit, never done by set-up.
P11_REG := /etc/pkcs11/modules/qrng-ceremony.module
install-module: native
	@mkdir -p /etc/pkcs11/modules
	@printf 'module: %s\nenable-in: p11-kit, p11tool, p11-kit-server\ncritical: no\n' "$(CURDIR)/build/libqrng-pkcs11.so" > $(P11_REG)
	@echo "registered $(CURDIR)/build/libqrng-pkcs11.so in $(P11_REG) (undo: make uninstall-module)"

uninstall-module:
	@rm -f $(P11_REG) && echo "removed $(P11_REG)"

# a wheel for this platform (CPython 3.11, Debian 12 x86-64) with the kernels and both PKCS#11 modules inside:
# `pip install dist/qrng_ceremony-*.whl` in any virtual environment gives a working `qrng` (README, "Install")
wheel: native
	@$(PY) -m build --wheel --no-isolation --outdir dist
	@ls dist/*.whl

# the Debian packages qrng-pkcs11-qrngd and qrngd (debian/), lintian-checked, into dist/deb/ (README, "Debian packages")
deb: native
	@bash scripts/build_deb.sh

# build them, install them with apt into a clean Debian 12 root (mmdebstrap, cached once per machine), serve, purge
deb-test: setup
	@$(PY) -m pytest -q -m deb tests/system/test_deb.py

docs/architecture.svg: docs/architecture.dot
	dot -Tsvg $< -o $@

# the README's picture of a transcript page, from the demo ceremony's PDF (run `make demo` first)
docs/img/transcript.png: out/root-ca-2026/transcript.pdf scripts/transcript_picture.py
	$(PY) scripts/transcript_picture.py $< $@

docs: docs/architecture.svg docs/img/transcript.png

clean:
	rm -rf build dist .softhsm .pytest_cache qrng/_native.*.so
