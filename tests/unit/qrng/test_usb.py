"""The USB QRNG protocol v1, its driver and the USB EMULATOR (issue 12). The emulator is a pyusb backend, so the
real driver code runs unchanged against it: in-process, no subprocess, no libusb, no hardware."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from qrng.attestation.statement import AttestationError, init_simulator
from qrng.attestation.usb import FirmwarePolicy, check_firmware, verify_usb_attestation
from qrng.errors import EntropyError, SourceError, SourceRemoved
from qrng.sources import usbproto as P
from qrng.sources.usb import UsbSource, list_devices
from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "usb-protocol-v1.json"
EMU = (0x1209, 0x0001)


# --- the protocol against the document's vectors ---------------------------------------------------------------
def test_vectors_decode_reencode_and_verify():
    v = json.loads(VECTORS.read_text())
    req = {r["name"]: r for r in v["requests"]}
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(v["test_public_key_x962"]))
    nonce = bytes.fromhex(v["nonce"])
    info = P.DeviceInfo.decode(bytes.fromhex(req["GET_INFO"]["response"]))
    assert (info.serial, info.model, info.bits_per_sample, info.claimed_min_entropy) == ("QX1-000042", "QX-1", 8, 6.5)
    assert info.encode().hex() == req["GET_INFO"]["response"]
    assert P.Status.decode(bytes.fromhex(req["GET_STATUS"]["response"])).encode().hex() == req["GET_STATUS"]["response"]
    att = P.Attestation.decode(bytes.fromhex(req["GET_ATTESTATION"]["response"]))
    assert att.encode().hex() == req["GET_ATTESTATION"]["response"]
    assert att.info_sha256 == hashlib.sha256(info.encode()).digest() and att.counter == 7
    assert P.attestation_message(nonce, att).hex() == req["GET_ATTESTATION"]["signed_message"]
    key.verify(att.signature, P.attestation_message(nonce, att), ec.ECDSA(hashes.SHA256()))
    rd = P.SignedRead.decode(bytes.fromhex(req["SIGNED_READ"]["response"]))
    assert rd.samples == bytes(range(16)) and rd.encode().hex() == req["SIGNED_READ"]["response"]
    key.verify(rd.signature, P.read_message(nonce, rd), ec.ECDSA(hashes.SHA256()))
    assert req["GET_VERSION"]["setup"] == "c101010000000400"  # bmRequestType bRequest wValue wIndex wLength


def test_vectors_are_what_the_generator_makes():
    import importlib.util
    spec = importlib.util.spec_from_file_location("usb_vectors", Path(__file__).resolve().parents[3] / "scripts" /
                                                  "usb_vectors.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    assert mod.vectors() == json.loads(VECTORS.read_text())
    doc = (Path(__file__).resolve().parents[3] / "docs" / "usb-protocol.md").read_text()
    assert mod.markdown(mod.vectors()) in doc


@pytest.mark.parametrize("mutate,field", [
    (lambda b: b[:-1], "GET_INFO serial"), (lambda b: b + b"x", "after the serial"),
    (lambda b: b"\x02" + b[1:], "struct version 2"), (lambda b: b[:1] + b"\x09" + b[2:], "bits_per_sample 9"),
    (lambda b: b[:4] + b"\x00\x00\x00\x00" + b[8:], "claimed min-entropy 0"), (lambda b: b[:10], "at least 44"),
])
def test_hostile_device_info_is_refused_naming_the_field(mutate, field):
    good = P.DeviceInfo(8, 8, 0, 4.0, bytes(32), (1, 0, 0), "v", "m", "s").encode()
    with pytest.raises(P.ProtocolError, match=field):
        P.DeviceInfo.decode(mutate(good))


def test_hostile_chain_and_signature_lengths():
    with pytest.raises(P.ProtocolError, match="certificate 0"):
        P.decode_chain(b"\x01\x10\x00abc")
    with pytest.raises(P.ProtocolError, match="after the last certificate"):
        P.decode_chain(P.encode_chain([b"abc"]) + b"!")
    st = P.Status(3, 0, 0, 0, 0, 0)
    att = P.Attestation(1, bytes(32), bytes(32), st, b"\x30" * 200)
    with pytest.raises(P.ProtocolError, match="signature length"):
        P.Attestation.decode(att.signed_part() + b"\xc8" + b"\x30" * 200)


# --- the emulator under the real driver ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    d = tmp_path_factory.mktemp("usb")
    paths = init_emulator(d / "EMU-0001", d / "att", firmware_log=d / "fwlog")
    return d, paths["folder"]


@pytest.fixture()
def dev(emu):
    d, folder = emu
    write_control(folder, plugged="yes", fault="none", control_fault="none", physics_fault="none",
                  kernel_driver="none", permission="granted")
    time.sleep(0.03)  # the emulator looks at its control file at most every 20 ms
    src = UsbSource(*EMU, emulator=[str(folder)], timeout_ms=100)
    yield folder, src
    src.close()


def set_control(folder: Path, **kw: str) -> None:
    write_control(folder, **kw)
    time.sleep(0.03)


def test_the_emulator_is_listed_and_labelled(emu, dev):
    folder, src = dev
    found = list_devices(emulator=[str(folder)])
    assert len(found) == 1 and found[0].protocol and found[0].serial == "EMU-0001"
    assert src.protocol and src.info.simulator and not src.info.quantum and "EMULATOR" in src.info.label
    assert src.device_info is not None and src.device_info.emulator


def test_reads_are_exact_and_in_range(dev):
    _, src = dev
    for n in (1, 511, 512, 513, 100_000, (1 << 20) + 3):
        x = src.read(n)
        assert x.size == n and x.dtype.name == "uint8"
    x = src.read(200_000)
    assert 100 < x.mean() < 155 and len(set(x.tolist())) > 100  # the homodyne model: centred, many codes


@pytest.mark.parametrize("fault,error,match", [
    ("stall", SourceError, "stalled"), ("timeout", SourceError, "no samples within 100 ms"),
    ("eio", SourceError, "bulk read failed"), ("zlp", SourceError, "zero-length packets"),
])
def test_bus_faults_are_errors_never_short_data(dev, fault, error, match):
    folder, src = dev
    set_control(folder, fault=fault)
    with pytest.raises(error, match=match):
        src.read(1000)


def test_short_packets_are_read_on(dev):
    folder, src = dev
    set_control(folder, fault="short")
    assert src.read(50_000).size == 50_000


def test_a_halted_endpoint_is_cleared_once(dev):
    folder, src = dev
    from qrng.sources.usbemu import EmulatedDevice
    emulated = [d for d in src._dev._ctx.backend.devices if isinstance(d, EmulatedDevice)][0]
    emulated.halted = True  # a transient stall: CLEAR_FEATURE(ENDPOINT_HALT) then the read goes on
    assert src.read(4096).size == 4096 and not emulated.halted


def test_unplug_is_removal_and_replug_opens_again(dev):
    folder, src = dev
    set_control(folder, plugged="no")
    with pytest.raises(SourceRemoved):
        src.read(10)
    with pytest.raises(SourceRemoved, match="not found"):
        UsbSource(*EMU, emulator=[str(folder)])
    set_control(folder, plugged="yes")
    again = UsbSource(*EMU, emulator=[str(folder)])
    assert again.read(10).size == 10
    again.close()


def test_the_devices_own_health_failure_stops_output(dev):
    folder, src = dev
    src.check()
    set_control(folder, physics_fault="stuck_at")
    with pytest.raises(EntropyError, match="its own health tests"):
        src.check()


def test_kernel_driver_is_detached_only_when_configured(dev):
    folder, src = dev
    src.close()
    set_control(folder, kernel_driver="bound")
    with pytest.raises(SourceError, match="detach_kernel_driver: true"):
        UsbSource(*EMU, emulator=[str(folder)])
    taken = UsbSource(*EMU, emulator=[str(folder)], detach_kernel_driver=True)
    emulated = taken._dev._ctx.backend.devices[0]
    assert emulated.driver_detached and taken.read(10).size == 10
    taken.close()
    assert not emulated.driver_detached  # given back to the kernel on close
    set_control(folder, kernel_driver="none")


def test_no_permission_names_the_udev_rule(dev):
    folder, src = dev
    src.close()
    set_control(folder, permission="denied")
    with pytest.raises(SourceError, match="contrib/udev/60-qrng-ceremony.rules"):
        UsbSource(*EMU, emulator=[str(folder)])
    set_control(folder, permission="granted")


def test_control_stall_and_wrong_serial(dev):
    folder, src = dev
    set_control(folder, control_fault="stall")
    with pytest.raises(SourceError, match="stalled"):
        src.status()
    set_control(folder, control_fault="none")
    with pytest.raises(SourceRemoved, match="serial NOPE"):
        UsbSource(*EMU, serial="NOPE", emulator=[str(folder)])


# --- attestation over USB ------------------------------------------------------------------------------------------
def _roots(d: Path) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate((d / "att" / "test-manufacturer-ca.pem").read_bytes())]


def _policy(d: Path, **kw) -> FirmwarePolicy:
    return FirmwarePolicy(log_key=(d / "fwlog" / "log.pub").read_text().strip(),
                          witnesses=((d / "fwlog" / "witness.pub").read_text().strip(),), quorum=1, **kw)


def test_attestation_over_usb_good(emu, dev):
    d, folder = emu
    _, src = dev
    nonce = os.urandom(32)
    att, info = src.attest(nonce)
    _, chain = src.chain()
    r = verify_usb_attestation(att, info, chain, nonce, _roots(d), allow_emulator=True)
    assert r.serial == "EMU-0001" and r.emulator and r.counter >= 1
    fw = check_firmware(r.info, _policy(d), (folder / "firmware.tlog-proof").read_text())
    assert fw["firmware_accepted_by"] == "transparency log" and fw["firmware_log_index"] == 1
    att2, info2 = src.attest(os.urandom(32))
    assert att2.counter > att.counter  # the counter never repeats


def test_attestation_over_usb_bad(emu, dev):
    d, folder = emu
    _, src = dev
    nonce = os.urandom(32)
    att, info = src.attest(nonce)
    _, chain = src.chain()
    with pytest.raises(AttestationError, match="does not verify for this nonce"):
        verify_usb_attestation(att, info, chain, os.urandom(32), _roots(d), True)        # stale nonce
    with pytest.raises(AttestationError, match="replayed"):
        verify_usb_attestation(att, info, chain, nonce, _roots(d), True, last_counter=att.counter)
    other = init_simulator(d / "other-ca")
    with pytest.raises(AttestationError, match="does not chain"):
        verify_usb_attestation(att, info, chain, nonce,
                               [x509.load_pem_x509_certificate(other["root"].read_bytes())], True)
    with pytest.raises(AttestationError, match="forbids simulated"):
        verify_usb_attestation(att, info, chain, nonce, _roots(d), allow_emulator=False)
    with pytest.raises(AttestationError, match="different GET_INFO"):
        bad = P.DeviceInfo.decode(info)
        forged = P.DeviceInfo(bad.bits_per_sample, bad.adc_bits, bad.flags, 7.5, bad.firmware_sha256,
                              bad.firmware_version, bad.vendor, bad.model, bad.serial).encode()
        verify_usb_attestation(att, forged, chain, nonce, _roots(d), True)


def test_firmware_not_in_the_log_or_a_forged_proof_is_refused(emu, dev):
    d, folder = emu
    _, src = dev
    info = src.device_info
    proof = (folder / "firmware.tlog-proof").read_text()
    other = P.DeviceInfo(info.bits_per_sample, info.adc_bits, info.flags, info.claimed_min_entropy,
                         hashlib.sha256(b"unlogged firmware").digest(), info.firmware_version, info.vendor,
                         info.model, info.serial)
    with pytest.raises(AttestationError, match="does not verify"):
        check_firmware(other, _policy(d), proof)                     # firmware digest not in the log
    lines = proof.split("\n")
    lines[2] = ("A" if lines[2][0] != "A" else "B") + lines[2][1:]  # a forged inclusion-proof hash
    with pytest.raises(AttestationError, match="does not verify"):
        check_firmware(info, _policy(d), "\n".join(lines))
    with pytest.raises(AttestationError, match="no transparency-log proof"):
        check_firmware(info, _policy(d), None)
    with pytest.raises(AttestationError, match="not the policy's"):
        check_firmware(info, _policy(d, log_origin="elsewhere.example/log"), proof)
    assert check_firmware(info, FirmwarePolicy(allowed_sha256=frozenset({info.firmware_sha256.hex()})), None) == \
        {"firmware_accepted_by": "policy list"}


def test_raw_mode_reads_a_plain_bulk_rng_without_attestation(dev):
    from qrng.errors import ConfigError
    folder, src = dev
    with pytest.raises(ConfigError, match="claimed_min_entropy"):
        UsbSource(*EMU, emulator=[str(folder)], raw=True)
    raw = UsbSource(*EMU, emulator=[str(folder)], raw=True, claimed_min_entropy=3.0, bits_per_sample=6)
    try:
        assert not raw.protocol and raw.info.claimed_min_entropy == 3.0 and "raw mode" in raw.info.model
        assert raw.info.simulator and not raw.info.quantum and "EMULATOR" in raw.info.label  # even in raw mode
        x = raw.read(10_000)
        assert x.size == 10_000 and int(x.max()) < 64  # bits_per_sample 6: the high bits are masked
        raw.check()  # raw mode: a small read proves the device is there
        with pytest.raises(SourceError, match="raw mode"):
            raw.attest(os.urandom(32))
    finally:
        raw.close()


def test_an_emulator_path_that_is_not_a_state_folder_is_a_config_error(tmp_path, capsys):
    import qrng_cli
    from qrng_cli.common import ExitCode
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {tmp_path / 'nowhere'}}}\n")
    assert qrng_cli.main(["bytes", "4", "--hex", "--config", str(cfg)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "source.emulator" in err and "not a USB EMULATOR state folder" in err and "Traceback" not in err


def test_the_identity_served_under_is_the_attested_one(emu, dev):
    """Issue 20: the source took its serial and claimed min-entropy from the GET_INFO answer read when it was opened,
    while attestation verified a second answer read later; a device answering differently the second time had its
    output served under an identity that was never attested."""
    from qrng.attestation.usb import bind_to_source
    d, _ = emu
    _, src = dev
    nonce = os.urandom(32)
    att, info = src.attest(nonce)
    _, chain = src.chain()
    r = verify_usb_attestation(att, info, chain, nonce, _roots(d), allow_emulator=True)
    bind_to_source(r, src.device_info)  # the same: accepted
    first = src.device_info
    claimed_more = P.DeviceInfo(first.bits_per_sample, first.adc_bits, first.flags, first.claimed_min_entropy + 1,
                                first.firmware_sha256, first.firmware_version, first.vendor, first.model, first.serial)
    with pytest.raises(AttestationError, match="claimed_min_entropy"):
        bind_to_source(r, claimed_more)


def test_the_daemon_remembers_attestation_counters_per_serial(emu, dev, tmp_path):
    """Issue 20: the daemon verified every attestation with a last counter of 0, so a replayed statement, or a
    device whose counter went back, passed. The last counter per serial is kept, across restarts with a state
    file, and a counter that goes back fails attestation."""
    from types import SimpleNamespace

    from qrngd.attester import Attester
    d, _ = emu
    _, src = dev
    state = tmp_path / "attest.json"
    roots = (d / "att" / "test-manufacturer-ca.pem",)
    a = Attester(roots, allow_emulator=True, state=state)
    first = a(SimpleNamespace(device=src))["counter"]
    second = a(SimpleNamespace(device=src))["counter"]
    assert second > first and json.loads(state.read_text()) == {"EMU-0001": second}
    again = Attester(roots, allow_emulator=True, state=state)  # a restarted daemon
    assert again(SimpleNamespace(device=src))["counter"] > second
    state.write_text(json.dumps({"EMU-0001": 10 ** 9}))  # the device's counter is now behind the last one seen
    with pytest.raises(AttestationError, match="not above the last one seen"):
        Attester(roots, allow_emulator=True, state=state)(SimpleNamespace(device=src))


def test_an_emulator_folder_made_halfway_is_made_again(tmp_path, monkeypatch):
    """Regression: device.json (the "made" mark) was written before the control file, so a run stopped between
    them left a folder that every later init took as made, with no control file. Each file is now written all
    or nothing, the key created 0600, and device.json last."""
    import qrng.sources.usbemu_init as maker
    real = maker._put

    def stop_at_control(path, data, mode=0o644):
        if path.name == "control":
            raise OSError(28, "No space left on device", str(path))
        real(path, data, mode)

    monkeypatch.setattr(maker, "_put", stop_at_control)
    with pytest.raises(OSError):
        init_emulator(tmp_path / "EMU", tmp_path / "att")
    assert not (tmp_path / "EMU" / "device.json").exists()
    monkeypatch.setattr(maker, "_put", real)
    folder = init_emulator(tmp_path / "EMU", tmp_path / "att")["folder"]
    assert (folder / "control").read_text().startswith("plugged: yes")
    assert (folder / "device.key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == [".emulator-init.lock"]  # no temporary


@pytest.mark.parametrize("held", ["EMU/.emulator-init.lock", "att/.ca-init.lock"])
def test_two_inits_of_one_folder_at_once_the_second_is_refused(tmp_path, capsys, held):
    """Two inits at once wrote one's device key beside the other's certificate (a folder that never attests).
    The second is refused, naming the first, exit 2, and nothing of the folder is written."""
    import qrng_cli
    from qrng.lockfile import hold
    (tmp_path / held).parent.mkdir(parents=True)
    with hold(tmp_path / held, "the test"):
        code = qrng_cli.main(["usb", "emulator", "init", "--dir", str(tmp_path / "EMU"), "--attestation-dir",
                              str(tmp_path / "att")])
    err = capsys.readouterr().err
    assert code == 2 and "is in use by pid" in err and "refusing to run a second time" in err and "Traceback" not in err
    assert not (tmp_path / "EMU" / "device.json").exists() and not (tmp_path / "EMU" / "device.key").exists()
    folder = init_emulator(tmp_path / "EMU", tmp_path / "att")["folder"]  # once the first is done: made
    assert (folder / "device.json").exists()


@pytest.mark.parametrize("serial", ["../../escaped", "/abs", "x" * 33, "x" * 5000, ".hidden", "", "a b", "é", "a\x7f"])
@pytest.mark.parametrize("command", [["usb", "emulator", "init", "--dir", "{d}/EMU", "--attestation-dir", "{d}/att"],
                                     ["attestation", "init-simulator", "--dir", "{d}/att"]])
def test_a_hostile_serial_is_refused_naming_the_option(tmp_path, capsys, serial, command):
    """Regression: a 5,000-character serial was an internal error (a certificate attribute over 64), and a path-like
    one named files outside the folder (device-../../x.pem); now refused up front, exit 2, nothing written."""
    import qrng_cli
    with pytest.raises(SystemExit) as exit_:
        qrng_cli.main([a.format(d=tmp_path) for a in command] + ["--serial", serial])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --serial" in err and "a serial is 1 to 32 of" in err, err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_a_seeded_emulator_repeats_its_noise_and_an_unseeded_one_does_not(tmp_path):
    """The game day's USB rows are measured on an emulator with a fixed noise seed (regression: with fresh noise,
    a stuck value that happened to follow an equal sample was caught one sample sooner, about one run in 150,
    and docs/gameday.md no longer matched its own run). A hostile seed in device.json is refused, naming it."""
    from qrng.errors import UsageError
    from qrng.gameday import USB_NOISE_SEED
    from qrng.sources.usbemu import EmulatedDevice

    def noise(folder: Path) -> bytes:
        return EmulatedDevice(folder).physics.samples(4096, "none")

    seeded = init_emulator(tmp_path / "seeded", tmp_path / "att", noise_seed=USB_NOISE_SEED)["folder"]
    fresh = init_emulator(tmp_path / "fresh", tmp_path / "att")["folder"]
    assert noise(seeded) == noise(seeded) and noise(fresh) != noise(fresh)
    assert "noise_seed" not in json.loads((fresh / "device.json").read_text())
    for bad in (-1, 1.5, "7", True):
        meta = json.loads((seeded / "device.json").read_text()) | {"noise_seed": bad}
        (seeded / "device.json").write_text(json.dumps(meta))
        with pytest.raises(UsageError, match=r"device.json: noise_seed must be a whole number"):
            EmulatedDevice(seeded)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("device.json", b"\xff\xfe{", r"device.json: not a JSON document in UTF-8"),
    ("device.json", b"{", r"device.json: not a JSON document in UTF-8"),
    ("device.json", b"[1, 2]", r"device.json: must be a JSON object, not list"),
    ("device.json", b"{}", r"device.json: serial must be printable text of 1 to 64 bytes \(got 'None'\)"),
    ("device.json", {"serial": "x" * 65}, r"device.json: serial must be printable text"),
    ("device.json", {"model": "a\nb"}, r"device.json: model must be printable text"),
    ("device.json", {"firmware_version": [1, 0]}, r"device.json: firmware_version must be three whole numbers"),
    ("device.json", {"firmware_version": [1, 0, 256]}, r"device.json: firmware_version must be three whole"),
    ("device.json", {"address": 10**100}, r"device.json: address must be a USB address"),
    ("device.json", {"claimed_min_entropy": float("nan")}, r"device.json: claimed_min_entropy must be a number"),
    ("device.json", {"claimed_min_entropy": float("inf")}, r"device.json: claimed_min_entropy must be a number"),
    ("device.json", {"claimed_min_entropy": -1}, r"device.json: claimed_min_entropy must be a number above 0"),
    ("device.json", {"claimed_min_entropy": 1e308}, r"device.json: claimed_min_entropy must be a number above 0"),
    ("device.json", {"noise_seed": -1}, r"device.json: noise_seed must be a whole number"),
    ("device.key", b"not a key", r"device.key: not a PEM private key"),
    ("chain.pem", b"\xff" * 10, r"chain.pem: not PEM certificates"),
])
def test_a_damaged_emulator_folder_is_named_field_by_field(tmp_path, name, content, expected):
    """Hostile or damaged state of a USB EMULATOR folder is a UsageError naming the file and the field (exit 2 at
    the command line), never an internal error (a missing key or non-UTF-8 device.json was one before)."""
    from qrng.errors import UsageError
    from qrng.sources.usbemu import EmulatedDevice
    folder = init_emulator(tmp_path / "emu", tmp_path / "att")["folder"]
    path = folder / name
    if isinstance(content, dict):
        content = json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k not in content}
                             | content).encode()
    path.write_bytes(content)
    with pytest.raises(UsageError, match=expected):
        EmulatedDevice(folder)


def test_a_damaged_signature_counter_is_named(tmp_path):
    from qrng.errors import UsageError
    from qrng.sources.usbemu import EmulatedDevice
    folder = init_emulator(tmp_path / "emu", tmp_path / "att")["folder"]
    device = EmulatedDevice(folder)
    (folder / "counter").write_bytes(b"\xffseven")
    device.vendor_out(P.REQ.SET_NONCE, 0, bytes(P.NONCE_LEN))
    with pytest.raises(UsageError, match=r"counter: the signature counter must be a whole number"):
        device.vendor_in(P.REQ.GET_ATTESTATION, 0, 4096)
    assert (folder / "counter").read_bytes() == b"\xffseven"  # left as it was, for a person to look at
