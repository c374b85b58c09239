"""Game day, consumer layer (issue 22): every fault the health tests detect, through both modules, and qrngd
killed or hung under the C module, to pkcs11-tool, openssl (pkcs11-provider) and Java SunPKCS11. Every consumer
fails closed with nothing received and the module answering CKR_DEVICE_ERROR; the healthy control rows get
their bytes; docs/gameday-consumers.md is this run's table."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def test_every_consumer_fails_closed_on_every_fault_through_both_modules(module, tmp_path):
    from qrng_cli.gameday import CONSUMERS_DOC, consumers_doc
    from qrng_pkcs11.build import build_client
    from qrng_pkcs11.consumers import missing
    from qrng_pkcs11.gameday import DAEMON_FAULTS, FAULTS, MODULES, run_matrix
    if missing():
        pytest.skip(f"consumers not installed: {missing()}")
    rows = run_matrix(tmp_path, {"in-process": module, "qrngd": build_client()})
    assert len(rows) == (len(FAULTS) * len(MODULES) + len(DAEMON_FAULTS)) * 3
    control = [r for r in rows if r.fault.startswith("none")]
    assert control and all(r.seen.exit_code == 0 and r.seen.bytes_received == 32 for r in control), control
    faulty = [r for r in rows if not r.fault.startswith("none")]
    assert faulty and all(r.failed_closed for r in faulty), [r for r in faulty if not r.failed_closed]
    assert CONSUMERS_DOC.read_text() == consumers_doc(rows), \
        "docs/gameday-consumers.md is stale: run `qrng gameday consumers --write-docs`"
