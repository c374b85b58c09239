"""qrngd's operational features, each with the real part it meets: the raw-sample ring read back by
`qrng estimate`, the kernel feed through RNDADDENTROPY and through a FIFO read like rngd reads it, the signed
audit log verified by `qrng audit verify`, device attestation against manufacturer roots, `qrng status --plot`,
every extracted byte accounted for under --stream, and a PKCS#11 module's named fallback reported to the daemon
when it is back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from qrngd.client import DaemonClient

from .test_qrngd import start, stop


@pytest.fixture()
def emu(tmp_path):
    made = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {made['folder']}}}\nextractor: {{type: sha256}}\n")
    return made["folder"], cfg, tmp_path / "qrngd.sock"


def qrng(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qrng_cli", *args], capture_output=True, text=True, timeout=300,
                          **kw)


def until(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_raw_ring_keeps_the_last_samples_including_a_failure_for_qrng_estimate(emu, tmp_path):
    folder, cfg, sock = emu
    ring = tmp_path / "ring"
    d = start(cfg, sock, "--retain", "1MiB", "--retain-dir", str(ring), "--stream")
    try:
        c = DaemonClient(str(sock), "test")
        until(lambda: c.status()["sources"][0]["retained_bytes"] >= 1 << 20)  # the ring has wrapped
        write_control(folder, physics_fault="stuck_at")  # the device's samples stick: RCT fails
        until(lambda: c.status()["sources"][0]["rct_failures"] >= 1)
    finally:
        stop(d)
    src = ring / "usb"
    meta = json.loads((src / "meta.json").read_text())
    assert meta["bits_per_sample"] == 8 and meta["identity"] == "usb:1209:0001:EMU-0001" and meta["simulator"]
    segments = sorted(src.glob("raw-*.bin"))
    total = sum(p.stat().st_size for p in segments)
    assert 1 << 19 <= total <= 1 << 20 and segments[0].name != "raw-000000000001.bin"  # old segments deleted
    newest = segments[-1].read_bytes()
    # the samples that failed the repetition count test are kept (post-incident analysis)
    assert max(len(run) for run in newest.split(bytes(1))) > 100 or len(set(newest[-4096:])) == 1
    r = qrng("estimate", "-b", "8", "--quiet", "--json", str(segments[0]))
    assert r.returncode == 0, r.stderr
    assert 0 < json.loads(r.stdout)["h_assessed"] <= 8


def test_fifo_feed_for_rngd(emu, tmp_path):
    folder, cfg, sock = emu
    fifo = tmp_path / "rngd.fifo"
    d = start(cfg, sock, "--feed-fifo", str(fifo))
    try:
        with open(fifo, "rb") as f:  # what `rngd -r FIFO` does: read it as an entropy device
            data = f.read(200_000)
        assert len(data) == 200_000 and len(set(data)) == 256
        st = DaemonClient(str(sock), "test").status()
        assert st["kernel_feed"]["kind"] == "FifoFeed" and st["kernel_feed"]["fed_bytes"] >= 200_000
    finally:
        stop(d)
    target = tmp_path / "not-a-fifo"
    target.write_text("keep me")
    r = qrng("daemon", "--config", str(cfg), "--socket", str(tmp_path / "b.sock"), "--feed-fifo", str(target))
    assert r.returncode == 2 and "is not a FIFO" in r.stderr and target.read_text() == "keep me"


def test_kernel_feed_needs_privilege_and_then_credits(emu, tmp_path):
    """RNDADDENTROPY: with CAP_SYS_ADMIN the daemon adds extracted output at --feed-rate; without it, it refuses to
    start with a clear message (exit 2), never silently serving without the feed it was asked for."""
    folder, cfg, sock = emu
    setpriv = shutil.which("setpriv")
    assert setpriv, "util-linux setpriv is part of Debian's base system"
    # as root, CAP_SYS_ADMIN is dropped from the bounding set (the same user, so the checkout stays readable wherever
    # it is cloned, even in a mode-700 temporary folder); another user has no such capability anyway
    drop = [setpriv, "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"] if os.geteuid() == 0 else []
    r = subprocess.run([*drop, sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket",
                        str(tmp_path / "u.sock"), "--feed-kernel"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "needs CAP_SYS_ADMIN" in r.stderr and "Traceback" not in r.stderr, r.stderr
    if os.geteuid() != 0:
        pytest.skip("the credited feed itself needs root")
    d = start(cfg, sock, "--feed-kernel", "--feed-rate", "4096")
    try:
        c = DaemonClient(str(sock), "test")
        fed = until(lambda: c.status()["kernel_feed"]["fed_bytes"] >= 4096 and c.status()["kernel_feed"])
        assert fed["kind"] == "IoctlFeed" and fed["error"] is None
        assert c.status()["sources"][0]["kernel_fed_bytes"] >= 4096
    finally:
        stop(d)


def test_events_go_into_a_signed_audit_log_that_verifies_offline(emu, tmp_path):
    folder, cfg, sock = emu
    key = tmp_path / "qrngd-log.key"
    assert qrng("audit", "keygen", "qrngd.example/host-1", "--out", str(key)).returncode == 0
    log = tmp_path / "qrngd-audit.log"
    d = start(cfg, sock, "--audit-log", str(log), "--audit-key", str(key))
    try:
        c = DaemonClient(str(sock), "test")
        assert len(c.seed(32)) == 32
        write_control(folder, plugged="no")
        until(lambda: c.status()["state"] == "unhealthy")
        write_control(folder, plugged="yes")
        until(lambda: c.status()["state"] == "healthy")
    finally:
        stop(d)
    r = qrng("audit", "verify", str(log), "--key", str(key) + ".pub", "--json")
    assert r.returncode == 0, r.stderr
    r = qrng("audit", "show", str(log), "--json")
    events = [e["event"] for e in json.loads(r.stdout) if "event" in e]
    assert events[0] == "daemon.start" and events[-1] == "daemon.stop", events
    assert events.index("source.ready") < events.index("source.failed") < events.index("source.recovered")
    # tampering is caught
    data = log.read_bytes().replace(b"source.failed", b"source.fine!!", 1)
    log.write_bytes(data)
    assert qrng("audit", "verify", str(log), "--key", str(key) + ".pub").returncode == 1


def test_device_attestation_against_manufacturer_roots(emu, tmp_path):
    folder, cfg, sock = emu
    roots = tmp_path / "att" / "test-manufacturer-ca.pem"
    d = start(cfg, sock, "--attest-roots", str(roots), "--allow-emulator")
    try:
        st = DaemonClient(str(sock), "test").status()
        att = st["sources"][0]["attestation"]
        assert st["state"] == "healthy" and att["valid"] and att["serial"] == "EMU-0001" and att["emulator"]
        assert att["not_after"] > time.time() + 86400
    finally:
        stop(d)
    # the emulator's TEST-ONLY attestation is refused unless allowed: the device is not served from
    d = start(cfg, sock, "--attest-roots", str(roots))
    try:
        st = DaemonClient(str(sock), "test").status()
        assert st["state"] == "unhealthy" and st["sources"][0]["attestation"]["valid"] is False
        assert "emulator" in st["sources"][0]["error"].lower()
    finally:
        stop(d)
    # roots of another manufacturer: the chain does not verify
    from qrng.attestation.statement import init_simulator
    other = init_simulator(tmp_path / "other")
    d = start(cfg, sock, "--attest-roots", str(other["root"]), "--allow-emulator")
    try:
        st = DaemonClient(str(sock), "test").status()
        assert st["state"] == "unhealthy" and "does not chain" in st["sources"][0]["error"]
    finally:
        stop(d)


def test_status_plot_and_history(emu, tmp_path):
    folder, cfg, sock = emu
    d = start(cfg, sock, "--history-interval", "0.5")
    try:
        c = DaemonClient(str(sock), "test")
        for _ in range(20):
            c.seed(4096)
            time.sleep(0.1)
        png = tmp_path / "qrngd.png"
        r = qrng("status", "--socket", str(sock), "--plot", str(png))
        assert r.returncode == 0 and "HEALTHY" in r.stdout, r.stderr
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        m = r.stderr.split("(")[-1]
        assert int(m.split()[0]) >= 2  # points drawn
        r = qrng("status", "--socket", str(sock), "--plot", str(png))
        assert r.returncode == 2 and "exists" in r.stderr and png.read_bytes() == data
        r = qrng("status", "--socket", str(sock), "--plot", str(tmp_path / "x.jpg"))
        assert r.returncode == 2 and "must end in .png" in r.stderr
    finally:
        stop(d)


def test_stream_mode_accounts_for_every_extracted_byte(emu, tmp_path):
    """--stream reads the device flat out; every byte the extractor gave is served, pooled, fed or discarded."""
    folder, cfg, sock = emu
    d = start(cfg, sock, "--stream")
    try:
        c = DaemonClient(str(sock), "test")
        first = c.status()["sources"][0]["raw_samples"]
        for _ in range(50):
            c.seed(4096)
        time.sleep(1.0)
        s = c.status()["sources"][0]
        assert s["raw_samples"] > first + 5_000_000  # still reading with no demand
        accounted = s["contributed_bytes"] + s["pooled_bytes"] + s["kernel_fed_bytes"] + s["discarded_bytes"] \
            + s["dropped_bytes"]
        assert s["received_bytes"] == accounted, s  # exact: one snapshot under the source's lock
        assert s["received_bytes"] <= s["extracted_bytes"] + s["extractor_buffered_bytes"], s
        assert s["contributed_bytes"] == 50 * 4096 and s["discarded_bytes"] > 0
    finally:
        stop(d)


# a PyKCS11 consumer of the daemon-mode module with `fallback = os` (also the game day's, test_gameday_runbooks.py):
# one line per phase, "<phase> | <token model> | <token label>"
FALLBACK_THEN_BACK = textwrap.dedent("""
    import sys, time, PyKCS11
    lib = PyKCS11.PyKCS11Lib(); lib.load(sys.argv[1])
    slot = lib.getSlotList()[0]
    s = lib.openSession(slot)
    def say(phase):
        info = lib.getTokenInfo(slot)
        print(phase, "|", info.model.strip(), "|", info.label.strip(), flush=True)
    s.generateRandom(64)                       # the daemon is down: the named fallback serves
    say("fell back")
    sys.stdin.readline()                       # the test starts the daemon
    time.sleep(0.2)
    s.generateRandom(64)                       # reseeds from the daemon and reports the fallback
    say("back")
""")


def test_module_fallback_is_reported_to_the_daemon_and_its_audit_log(emu, tmp_path):
    from qrng_pkcs11.build import build_client
    module = build_client()
    folder, cfg, sock = emu
    conf = tmp_path / "client.conf"
    conf.write_text(f"socket = {sock}\nfallback = os\n")
    key = tmp_path / "k"
    qrng("audit", "keygen", "qrngd.example/h", "--out", str(key))
    env = {k: v for k, v in os.environ.items() if k != "QRNGD_SOCKET"} | {"QRNGD_CLIENT_CONF": str(conf)}
    p = subprocess.Popen([sys.executable, "-c", FALLBACK_THEN_BACK, str(module)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    d = None
    try:
        assert p.stdout.readline().startswith("fell back | ")
        d = start(cfg, sock, "--audit-log", str(tmp_path / "a.log"), "--audit-key", str(key))
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().split(" | ")[1] == "QRNGD SIMULATOR"  # no longer FALLBACK
        st = DaemonClient(str(sock), "test").status()
        me = f"pkcs11:python (uid {os.getuid()})"  # the name it chose, and the peer the kernel vouches for
        assert st["client_fallback_seeds"] == {me: 1}, st["client_fallback_seeds"]
        out = qrng("status", "--socket", str(sock)).stdout
        assert f"{me} FELL BACK to its named fallback for 1 seeds" in out
    finally:
        p.kill()
        if d is not None:
            stop(d)
    events = json.loads(qrng("audit", "show", str(tmp_path / "a.log"), "--json").stdout)
    fell = [e for e in events if e.get("event") == "client.fell_back"]
    assert fell and fell[0]["data"] == {"client": f"pkcs11:python (uid {os.getuid()})", "seeds": 1,
                                        "peer": f"uid {os.getuid()}"}
