"""The pure token state machine, driven directly (no cffi): PKCS#11 v2.40 sections 5.4-5.7 and 5.15."""

from __future__ import annotations

import pytest

from qrng.config import EntropyConfig
from qrng.errors import NativeUnavailable, SourceRemoved
from qrng.pipeline import Pipeline
from qrng_pkcs11 import ckdefs as ck
from qrng_pkcs11.objects import encode_ulong, padded
from qrng_pkcs11.token import CKRError, Token


def make(service_factory=lambda: Pipeline(EntropyConfig()), certs=lambda: []):
    from qrng_pkcs11.service import describe
    marks = {}
    t = Token(service_factory, describe, certs, lambda h, o: marks.__setitem__(h, o))
    t.initialize()
    return t, marks


def code(fn, *args):
    try:
        fn(*args)
    except CKRError as e:
        return e.rv
    return ck.CKR_OK


def test_encodings_match_the_c_types():
    import cffi
    ffi = cffi.FFI()
    assert len(encode_ulong(7)) == ffi.sizeof("unsigned long")
    assert padded("ab", 5) == b"ab   " and padded("x" * 40, 32) == b"x" * 32


def test_not_initialized_everywhere():
    from qrng_pkcs11.service import describe
    t = Token(lambda: None, describe)
    for fn, args in [(t.slot_list, (True,)), (t.open_session, (0, ck.CKF_SERIAL_SESSION)),
                     (t.generate_random_into, (1, bytearray(4))), (t.finalize, ())]:
        assert code(fn, *args) == ck.CKR_CRYPTOKI_NOT_INITIALIZED


def test_double_initialize():
    t, _ = make()
    assert code(t.initialize) == ck.CKR_CRYPTOKI_ALREADY_INITIALIZED


@pytest.mark.parametrize("steps,want,expected", [
    # (sequence of (user, pin) logins before the checked one, checked login, expected code) - 5.6 C_Login
    ([], (ck.CKU_USER, b"0000"), ck.CKR_OK),
    ([(ck.CKU_USER, b"")], (ck.CKU_USER, b""), ck.CKR_USER_ALREADY_LOGGED_IN),
    ([(ck.CKU_USER, b"")], (ck.CKU_SO, b""), ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    ([], (9, b""), ck.CKR_USER_TYPE_INVALID),
    ([], (ck.CKU_CONTEXT_SPECIFIC, b""), ck.CKR_OPERATION_NOT_INITIALIZED),
])
def test_login_rules(steps, want, expected):
    t, _ = make()
    h = t.open_session(0, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION)
    for user, pin in steps:
        t.login(h, user, pin)
    user, pin = want
    assert code(t.login, h, user, pin) == expected


def test_so_login_refused_with_read_only_session():
    t, _ = make()
    t.open_session(0, ck.CKF_SERIAL_SESSION)
    rw = t.open_session(0, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION)
    assert code(t.login, rw, ck.CKU_SO, b"") == ck.CKR_SESSION_READ_ONLY_EXISTS


def test_session_states_follow_login():
    t, marks = make()
    ro = t.open_session(0, ck.CKF_SERIAL_SESSION)
    rw = t.open_session(0, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION)
    assert t.session_info(ro)[1] == ck.CKS_RO_PUBLIC_SESSION and t.session_info(rw)[1] == ck.CKS_RW_PUBLIC_SESSION
    t.login(ro, ck.CKU_USER, b"")
    assert t.session_info(ro)[1] == ck.CKS_RO_USER_FUNCTIONS and t.session_info(rw)[1] == ck.CKS_RW_USER_FUNCTIONS
    assert marks == {ro: True, rw: True}
    t.close_session(ro)
    t.close_session(rw)
    assert marks == {ro: False, rw: False}
    h = t.open_session(0, ck.CKF_SERIAL_SESSION)
    assert t.session_info(h)[1] == ck.CKS_RO_PUBLIC_SESSION  # closing the last session logged the user out


@pytest.mark.parametrize("call,want", [
    (lambda t: t.open_session(5, ck.CKF_SERIAL_SESSION), ck.CKR_SLOT_ID_INVALID),
    (lambda t: t.open_session(0, 0), ck.CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    (lambda t: t.close_session(77), ck.CKR_SESSION_HANDLE_INVALID),
    (lambda t: t.mechanism_info(0, 0x1), ck.CKR_MECHANISM_INVALID),
    (lambda t: t.wait_for_slot_event(ck.CKF_DONT_BLOCK), ck.CKR_NO_EVENT),
    (lambda t: t.wait_for_slot_event(0), ck.CKR_FUNCTION_NOT_SUPPORTED),
    (lambda t: t.find(t.open_session(0, ck.CKF_SERIAL_SESSION), 1), ck.CKR_OPERATION_NOT_INITIALIZED),
    # issue 10 item 20: a token that creates no objects says so in read-only sessions too
    (lambda t: t.modify_object(t.open_session(0, ck.CKF_SERIAL_SESSION), None), ck.CKR_FUNCTION_NOT_SUPPORTED),
    (lambda t: t.modify_object(t.open_session(0, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION), None),
     ck.CKR_FUNCTION_NOT_SUPPORTED),
    (lambda t: t.modify_object(t.open_session(0, ck.CKF_SERIAL_SESSION), 999), ck.CKR_OBJECT_HANDLE_INVALID),
    (lambda t: t.attribute_values(t.open_session(0, ck.CKF_SERIAL_SESSION), 999, [ck.CKA_CLASS]),
     ck.CKR_OBJECT_HANDLE_INVALID),
])
def test_error_codes(call, want):
    t, _ = make()
    assert code(call, t) == want


def test_objects_find_and_attributes():
    t, _ = make()
    h = t.open_session(0, ck.CKF_SERIAL_SESSION)
    t.find_init(h, [(ck.CKA_CLASS, encode_ulong(ck.CKO_DATA))])
    assert code(t.find_init, h, []) == ck.CKR_OPERATION_ACTIVE
    found = t.find(h, 10)
    t.find_final(h)
    assert len(found) == 1
    label, value, bogus = t.attribute_values(h, found[0], [ck.CKA_LABEL, ck.CKA_VALUE, 0x7777])
    assert label == b"qrng health report" and b'"state"' in value and bogus == ck.CKR_ATTRIBUTE_TYPE_INVALID


def test_certificate_object(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "sim device")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(12345).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(k, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    t, _ = make(certs=lambda: [der])
    h = t.open_session(0, ck.CKF_SERIAL_SESSION)
    t.find_init(h, [(ck.CKA_CLASS, encode_ulong(ck.CKO_CERTIFICATE))])
    (obj,) = t.find(h, 5)
    value, serial = t.attribute_values(h, obj, [ck.CKA_VALUE, ck.CKA_SERIAL_NUMBER])
    assert value == der and serial == b"\x02\x02\x30\x39"


def test_failed_source_sets_error_state_and_device_error():
    from qrng.sources.simulator import Fault
    t, _ = make(lambda: Pipeline(EntropyConfig().with_faults((Fault("stuck_at", 0),))))
    h = t.open_session(0, ck.CKF_SERIAL_SESSION)
    assert t.token_info(0).flags & ck.CKF_ERROR_STATE
    buf = bytearray(16)
    with pytest.raises(Exception) as exc:
        t.generate_random_into(h, memoryview(buf))
    from qrng_pkcs11._boundary import rv_for
    assert rv_for(exc.value) == ck.CKR_DEVICE_ERROR and not any(buf)


def test_removed_device_is_reported():
    def gone():
        raise SourceRemoved("device /dev/x not found")
    t, _ = make(gone)
    assert not t.token_present
    assert code(t.token_info, 0) == ck.CKR_TOKEN_NOT_PRESENT
    assert code(t.open_session, 0, ck.CKF_SERIAL_SESSION) == ck.CKR_TOKEN_NOT_PRESENT


# --- issue 10 items 12 and 13 ---------------------------------------------------------------------------------
class SlowFakeService:
    """A FAKE random service that takes a while to open (as a real source's start-up tests do)."""

    class info:  # noqa: N801 - shaped like SourceInfo
        simulator, quantum, kind, serial, label = True, False, "simulator", "FAKE-1", "FAKE service (unit tests)"

    failed = False

    def __init__(self) -> None:
        import time
        time.sleep(0.3)

    def generate_into(self, buf) -> None:
        buf[:] = bytes(len(buf))

    def close(self) -> None:
        pass


def test_second_thread_never_sees_a_half_opened_token():
    """Regression (item 12): the opened flag was set before the source was open and read without the lock, so a
    concurrent C_GetTokenInfo saw the error flag and the label "qrng (source unavailable)"."""
    import threading
    import time
    t, _ = make(SlowFakeService)
    seen = []
    first = threading.Thread(target=lambda: seen.append(t.token_info(0)))  # the first use opens the source
    first.start()
    time.sleep(0.05)  # the first thread is inside the slow open
    seen.append(t.token_info(0))
    first.join()
    assert [i.label for i in seen] == ["qrng FAKE-1"] * 2
    assert not any(i.flags & ck.CKF_ERROR_STATE for i in seen)


@pytest.mark.parametrize("problem", [ImportError("No module named 'numpy' (test)"),
                                     NativeUnavailable("kernels not built (test)")])
def test_an_install_problem_is_a_general_error_not_a_device_fault(problem):
    """Regression (item 13): a missing dependency inside the module answered CKR_DEVICE_ERROR."""
    def broken():
        raise problem
    t, _ = make(broken)
    with pytest.raises(CKRError) as exc:
        t.token_info(0)
    assert exc.value.rv == ck.CKR_GENERAL_ERROR and "installation problem" in str(exc.value)
    with pytest.raises(CKRError) as again:  # not remembered as a device fault: reported every time
        t.token_info(0)
    assert again.value.rv == ck.CKR_GENERAL_ERROR


def test_the_slot_description_keeps_the_simulator_and_emulator_warnings():
    """Regression (found by the conformance suite): the in-process slot description was "qrng-ceremony entropy
    slot: " + the source's label, cut at 64 bytes just before "(not a physical device)". It is the label alone,
    and the longest labels fit the 64 bytes whole."""
    from qrng.config import config_from_text
    from qrng_pkcs11.objects import padded
    from qrng_pkcs11.service import describe, describe_slot
    from qrng_pkcs11.token import Token
    for text in ("version: 1\nsource: {type: simulator}\n",
                 "version: 1\nsource: {type: usb, emulator: /tmp/EMU-0001}\n"):
        cfg = config_from_text(text)
        token = Token(lambda: None, describe, describe_slot=lambda cfg=cfg: describe_slot(cfg))
        token.initialize()
        desc = token.slot_info(0)[0]  # before any source is opened: from the configuration alone
        assert "not a physical device" in desc, desc
        assert padded(desc, 64).rstrip().decode() == desc  # all of it fits the 64 bytes of slotDescription
