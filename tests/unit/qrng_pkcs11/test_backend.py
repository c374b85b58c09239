"""The in-process module's Python backend, driven directly (no cffi): the entropy service's life behind the C
token core (initialise once, describe, generate, seed, health; failures, removal, installation problems).
Sessions, login, objects and their codes are the C token core's, checked through both built modules by
tests/system/qrng_pkcs11/test_conformance.py."""

from __future__ import annotations

import json

import pytest

from qrng.config import EntropyConfig
from qrng.errors import NativeUnavailable, SourceRemoved
from qrng.pipeline import Pipeline
from qrng_pkcs11 import ckdefs as ck
from qrng_pkcs11.backend import Backend, CKRError


def make(service_factory=lambda: Pipeline(EntropyConfig()), certs=lambda: [], stale=None):
    from qrng_pkcs11.service import describe
    b = Backend(service_factory, describe, certs, on_stale_output=stale)
    b.initialize()
    return b


def code(fn, *args):
    try:
        fn(*args)
    except CKRError as e:
        return e.rv
    return ck.CKR_OK


def test_not_initialized_everywhere():
    from qrng_pkcs11.service import describe
    b = Backend(lambda: None, describe)
    for fn, args in [(b.describe, (True,)), (b.generate_into, (bytearray(4),)), (b.seed, (b"x",)), (b.finalize, ())]:
        assert code(fn, *args) == ck.CKR_CRYPTOKI_NOT_INITIALIZED


def test_double_initialize():
    assert code(make().initialize) == ck.CKR_CRYPTOKI_ALREADY_INITIALIZED


def test_healthy_source_serves_and_reports():
    b = make()
    d = b.describe(True)
    assert (d.model, d.error_state, d.absent, d.hardware) == ("QRNG-SIMULATOR", False, False, False)
    buf = bytearray(64)
    started = []
    b.generate_into(memoryview(buf), lambda: started.append(1))
    assert any(buf) and started == [1]
    b.seed(b"caller's bytes")
    assert json.loads(b.health_json())["source"]


def test_certificates_are_read_once_at_initialize():
    reads = []
    b = make(certs=lambda: reads.append(1) or [b"DER"])
    assert b.certificates() == [b"DER"] and b.certificates() == [b"DER"] and reads == [1]


def test_failed_source_sets_error_state_and_device_error():
    from qrng.sources.simulator import Fault
    stale = []
    b = make(lambda: Pipeline(EntropyConfig().with_faults((Fault("stuck_at", 0),))), stale=lambda: stale.append(1))
    assert b.describe(True).error_state
    buf = bytearray(16)
    with pytest.raises(Exception) as exc:
        b.generate_into(memoryview(buf))
    from qrng_pkcs11._boundary import rv_for
    assert rv_for(exc.value) == ck.CKR_DEVICE_ERROR and not any(buf)
    assert stale  # buffered output outside the backend is dropped at the failure


def test_removed_device_is_reported():
    def gone():
        raise SourceRemoved("device /dev/x not found")
    b = make(gone)
    assert not b.describe(False).absent  # listing slots opens nothing
    d = b.describe(True)
    assert d.absent and d.error_state
    assert code(b.generate_into, bytearray(4)) == ck.CKR_DEVICE_REMOVED
    health = json.loads(b.health_json())
    assert health["state"] == "unavailable" and "not found" in health["error"]


def test_generation_that_fails_before_output_leaves_the_buffer_alone():
    def gone():
        raise SourceRemoved("device /dev/x not found")
    started = []
    assert code(make(gone).generate_into, bytearray(4), lambda: started.append(1)) == ck.CKR_DEVICE_REMOVED
    assert started == []  # the C core zeroes the caller's buffer only once output began


@pytest.mark.parametrize("problem", [ImportError("No module named 'numpy' (test)"),
                                     NativeUnavailable("kernels not built (test)")])
def test_an_install_problem_is_a_general_error_not_a_device_fault(problem):
    """Regression (issue 10 item 13): a missing dependency inside the module answered CKR_DEVICE_ERROR."""
    def broken():
        raise problem
    b = make(broken)
    with pytest.raises(CKRError) as exc:
        b.describe(True)
    assert exc.value.rv == ck.CKR_GENERAL_ERROR and "installation problem" in str(exc.value)
    with pytest.raises(CKRError) as again:  # not remembered as a device fault: reported every time
        b.describe(True)
    assert again.value.rv == ck.CKR_GENERAL_ERROR


def test_the_slot_description_keeps_the_simulator_and_emulator_warnings():
    """Regression (found by the conformance suite): the in-process slot description was "qrng-ceremony entropy
    slot: " + the source's label, cut at 64 bytes just before "(not a physical device)". It is the label alone,
    and the longest labels fit the 64 bytes of slotDescription whole."""
    from qrng.config import config_from_text
    from qrng_pkcs11.service import describe, describe_slot
    for text in ("version: 1\nsource: {type: simulator}\n",
                 "version: 1\nsource: {type: usb, emulator: /tmp/EMU-0001}\n"):
        cfg = config_from_text(text)
        b = Backend(lambda: None, describe, describe_slot=lambda cfg=cfg: describe_slot(cfg))
        b.initialize()
        desc = b.describe(False).slot_description  # before any source is opened: from the configuration alone
        assert "not a physical device" in desc, desc
        assert len(desc.encode()) <= 64, desc


def test_the_cdef_names_one_python_entry_per_backend_operation():
    """The in-process backend's Python entries are exactly the C token core's backend operations."""
    from pathlib import Path

    from qrng_pkcs11 import build
    ops = {"init", "finalize", "info", "generate", "seed", "health", "certificate"}
    assert {name.removeprefix("py_backend_") for name, _ in build.CALLBACKS} == ops
    token_h = (Path(build.ROOT) / "csrc" / "token" / "token.h").read_text()
    for op in ops:
        assert f"(*{op})(" in token_h, op


@pytest.mark.parametrize(("output", "said"), [
    ("error: PKCS11 function C_GenerateRandom failed: rv = CKR_DEVICE_ERROR (0x30)\n", "CKR_DEVICE_ERROR"),
    ("Using slot 0\nerror: Could not generate random bytes\nAborting.\n", "Could not generate random bytes"),
    ("80FB0CF6627F0000:error:0308010C:digital envelope routines:inner_evp_generic_fetch:unsupported:"
     "../crypto/evp/evp_fetch.c:341:Global default library context, Algorithm (CTR-DRBG : 0)\n",
     "error:0308010C:...:inner_evp_generic_fetch:unsupported"),
    ("", "-"),
])
def test_what_a_consumer_said_reads_the_same_each_time(output, said):
    """The game day's consumer matrix compares runs: addresses and source paths are dropped from what it keeps."""
    from qrng_pkcs11.consumers import _said
    assert _said(output) == said


def test_a_row_fails_closed_only_with_an_error_no_bytes_and_the_modules_device_error():
    from qrng_pkcs11.consumers import Seen
    from qrng_pkcs11.gameday import Row
    closed = Seen("java", 1, "CKR_DEVICE_ERROR", 0, "C_GenerateRandom -> CKR_DEVICE_ERROR")
    assert Row("stuck_at", "qrngd", closed).failed_closed
    for leak in (Seen("java", 0, "-", 32, "-"), Seen("java", 1, "x", 16, "C_GenerateRandom -> CKR_DEVICE_ERROR"),
                 Seen("java", 1, "x", 0, "C_OpenSession -> CKR_GENERAL_ERROR")):
        assert not Row("stuck_at", "qrngd", leak).failed_closed
