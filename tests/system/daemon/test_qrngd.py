"""qrngd as users run it: `qrng daemon` in its own process on the USB EMULATOR, clients in other processes and
threads. Seeds are served; hostile bytes never take it down; a removed device makes it fail closed (UNHEALTHY, the
client raises) and it serves again when the device is back; a killed daemon fails its clients closed and a
restarted one serves the same client objects again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qrng.sources.usbemu import write_control
from qrng.sources.usbemu_init import init_emulator
from qrngd import protocol as P
from qrngd.client import DaemonClient, DaemonUnavailable


@pytest.fixture()
def setup(tmp_path):
    folder = init_emulator(tmp_path / "EMU-0001", tmp_path / "att")["folder"]
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(f"version: 1\nsource: {{type: usb, emulator: {folder}}}\nextractor: {{type: sha256}}\n")
    return folder, cfg, tmp_path / "qrngd.sock"


def start(cfg: Path | None, sock: Path, *extra: str) -> subprocess.Popen[str]:
    """`qrng daemon` on ``cfg`` (and ``extra`` options), serving on ``sock``; its stderr goes to ``sock``.log
    (a pipe nobody reads could fill and block it)."""
    log = open(sock.with_suffix(".log"), "a")  # noqa: SIM115 - the daemon writes it for its whole life
    cmd = [sys.executable, "-m", "qrng_cli", "daemon", *(["--config", str(cfg)] if cfg else []), "--socket",
           str(sock), *extra]
    p = subprocess.Popen(cmd, stderr=log, text=True)
    log.close()
    for _ in range(400):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(sock))  # serving (a stale socket file of a dead daemon refuses)
            return p
        except OSError:
            pass
        finally:
            probe.close()
        if p.poll() is not None:
            raise AssertionError(sock.with_suffix(".log").read_text())
        time.sleep(0.05)
    p.kill()
    raise AssertionError("the daemon did not create its socket")


def stop(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=20)


def test_serves_seeds_to_many_clients_and_reports(setup):
    folder, cfg, sock = setup
    d = start(cfg, sock)
    try:
        assert oct(sock.stat().st_mode & 0o777) == "0o660"
        def draw(i: int) -> bytes:
            c = DaemonClient(str(sock), f"client-{i}")
            out = b"".join(c.seed(64) for _ in range(20))
            c.close()
            return out
        with ThreadPoolExecutor(8) as ex:
            outs = list(ex.map(draw, range(8)))
        assert all(len(o) == 1280 for o in outs) and len(set(outs)) == 8  # never the same bytes twice
        st = DaemonClient(str(sock), "status").status()
        assert st["state"] == "healthy" and st["seeds_served"] == 160 and st["seed_bytes_served"] == 160 * 64
        assert set(st["clients"]) == {f"client-{i}" for i in range(8)}
        assert st["sources"][0]["simulator"] is True and "EMULATOR" in st["sources"][0]["label"]
        r = subprocess.run([sys.executable, "-m", "qrng_cli", "status", "--socket", str(sock)], capture_output=True,
                           text=True)
        assert r.returncode == 0 and "HEALTHY" in r.stdout and "client-3: 1,280 bytes" in r.stdout
    finally:
        stop(d)
    assert not sock.exists()  # removed on a clean stop


@pytest.mark.parametrize("raw,status", [
    (b"XX\x01\x02\x04\x00\x00\x00", P.STATUS.BAD_REQUEST),
    (P.encode_request(P.OP.SEED, (10**6).to_bytes(4, "little")), P.STATUS.TOO_LARGE),
    (P.encode_request(99), P.STATUS.BAD_REQUEST),
    (b"QR\x02\x02\x04\x00\x00\x00\x10\x00\x00\x00", P.STATUS.VERSION),
    (P.encode_request(P.OP.HELLO, b"\xff\xfe"), P.STATUS.BAD_REQUEST),
])
def test_hostile_bytes_get_an_answer_and_never_take_it_down(setup, raw, status):
    folder, cfg, sock = setup
    d = start(cfg, sock)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))
        s.sendall(raw)
        head = s.recv(8)
        assert P.decode_header(head)[1] == status
        s.close()
        assert len(DaemonClient(str(sock)).seed(32)) == 32  # still serving
    finally:
        stop(d)


def test_unplugged_source_fails_closed_and_recovers(setup):
    folder, cfg, sock = setup
    d = start(cfg, sock)
    try:
        c = DaemonClient(str(sock), "consumer")
        assert len(c.seed(48)) == 48
        write_control(folder, plugged="no")
        time.sleep(0.15)
        with pytest.raises(DaemonUnavailable, match="unhealthy"):
            c.seed(48)
        assert c.status()["state"] == "unhealthy"
        write_control(folder, plugged="yes")
        deadline = time.monotonic() + 5
        while True:
            try:
                assert len(c.seed(48)) == 48
                break
            except DaemonUnavailable:
                assert time.monotonic() < deadline, "the daemon did not recover"
                time.sleep(0.05)
    finally:
        stop(d)


def test_killed_daemon_fails_clients_closed_and_a_restart_serves_them_again(setup):
    folder, cfg, sock = setup
    d = start(cfg, sock)
    c = DaemonClient(str(sock), "long-lived")
    assert len(c.seed(16)) == 16
    d.kill()  # no clean stop: the socket file is left behind
    d.wait()
    with pytest.raises(DaemonUnavailable):
        c.seed(16)
    d2 = start(cfg, sock)  # a stale socket of a dead daemon is replaced
    try:
        assert len(c.seed(16)) == 16  # the same client object, no restart of the consumer
        r = subprocess.run([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "refusing to run a second time" in r.stderr  # never taken over
        assert "Traceback" not in r.stderr
        assert len(c.seed(16)) == 16
    finally:
        stop(d2)


def test_a_non_socket_file_is_never_replaced(setup):
    folder, cfg, sock = setup
    sock.write_text("precious")
    r = subprocess.run([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not a socket" in r.stderr and sock.read_text() == "precious"
    assert "Traceback" not in r.stderr


def test_systemd_socket_activation(setup, tmp_path):
    """LISTEN_FDS/LISTEN_PID as systemd sets them (sd_listen_fds(3)): the daemon serves on the socket it was
    given, and leaves it to its owner when it stops."""
    folder, cfg, _ = setup
    path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    fd = listener.fileno()

    def as_systemd() -> None:
        os.dup2(fd, 3)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())

    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket",
                          str(tmp_path / "unused.sock")], preexec_fn=as_systemd, close_fds=False,  # noqa: PLW1509
                         stderr=subprocess.PIPE, text=True)
    try:
        c = DaemonClient(str(path), "activated")
        c.wait(30, alive=lambda: p.poll() is None)
        assert len(c.seed(32)) == 32
        assert not (tmp_path / "unused.sock").exists()
    finally:
        stop(p)
        listener.close()
    assert path.exists()  # systemd's socket, not the daemon's to remove


def test_two_sources_mixed_one_unplugged_keeps_service_with_lower_credit(tmp_path):
    """Two emulated QRNGs mixed: both contribute; one unplugged, seeds keep coming from the other alone (its
    credit only), the state and qrng_source_up say which; both gone, the daemon fails closed."""
    folders, cfgs = [], []
    for serial in ("EMU-0001", "EMU-0002"):
        f = init_emulator(tmp_path / serial, tmp_path / "att", serial=serial)["folder"]
        c = tmp_path / f"{serial.lower()}.yaml"
        c.write_text(f"version: 1\nsource: {{type: usb, emulator: {f}, serial: {serial}}}\n"
                     "extractor: {type: sha256}\n")
        folders.append(f)
        cfgs.append(c)
    sock = tmp_path / "qrngd.sock"
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfgs[0]), "--config",
                          str(cfgs[1]), "--socket", str(sock)], stderr=subprocess.PIPE, text=True)
    try:
        c = DaemonClient(str(sock), "mixer")
        c.wait(30, alive=lambda: p.poll() is None)
        for _ in range(10):
            assert len(c.seed(64)) == 64
        st = c.status()
        both = {s["name"]: s["contributed_bytes"] for s in st["sources"]}
        assert both == {"emu-0001": 320, "emu-0002": 320}  # each gives half of every seed
        write_control(folders[1], plugged="no")
        time.sleep(0.15)
        for _ in range(10):
            assert len(c.seed(64)) == 64  # service stays up
        st = c.status()
        by = {s["name"]: s for s in st["sources"]}
        assert st["state"] == "healthy" and by["emu-0002"]["state"] == "unhealthy"
        assert "removed" in by["emu-0002"]["error"] or "not found" in by["emu-0002"]["error"]
        assert by["emu-0001"]["contributed_bytes"] == 320 + 640 and by["emu-0002"]["contributed_bytes"] == 320
        write_control(folders[0], plugged="no")
        time.sleep(0.15)
        with pytest.raises(DaemonUnavailable, match="no healthy source"):
            c.seed(64)
    finally:
        stop(p)


@pytest.mark.parametrize("extra,message", [
    (["--group", "no-such-group-qrng"], "--group 'no-such-group-qrng': no such group"),
    (["--mode", "7777"], "--mode '7777': octal permission bits"),
    (["--mode", "rw"], "--mode 'rw': octal permission bits"),
    (["--metrics", "localhost:99999"], "--metrics 'localhost:99999'"),
    (["--attest-every", "nan"], "--attest-every nan: seconds, from 1 to a year"),
    (["--attest-every", "-5"], "--attest-every -5.0: seconds"),
    (["--feed-rate", "-1"], "--feed-rate -1: bytes a second, from 64"),
    (["--history-interval", "inf"], "--history-interval inf: seconds, from 0.5 to 3600"),
    (["--pool", "NaN"], "--pool 'NaN': a size such as"),
    (["--pool", "99999999999999GiB"], "a size such as 65536, 64KiB or 8MiB (at most 1 TiB)"),
    (["--retain", "1MiB"], "--retain needs --retain-dir"),
    (["--tls", "127.0.0.1:7464"], "--tls needs --tls-cert"),
])
def test_bad_options_exit_2_before_anything_is_opened(setup, extra, message):
    folder, cfg, sock = setup
    r = subprocess.run([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock),
                        *extra], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not sock.exists()


def test_two_daemons_started_at_once_one_serves(setup):
    folder, cfg, sock = setup
    cmd = [sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock)]
    a = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while a.poll() is None and b.poll() is None:
            assert time.monotonic() < deadline, "neither daemon stopped"
            time.sleep(0.05)
        loser, winner = (a, b) if a.poll() is not None else (b, a)
        assert loser.wait() == 2 and "refusing to run a second time" in (loser.stderr.read() if loser.stderr else "")
        c = DaemonClient(str(sock), "after-race")
        c.wait(30, alive=lambda: winner.poll() is None)
        assert len(c.seed(16)) == 16
    finally:
        for p in (a, b):
            if p.poll() is None:
                stop(p)


def test_runs_from_its_configuration_file_as_the_systemd_unit_does(setup, tmp_path):
    """`qrng daemon --config-file qrngd.yaml` (issue 21): the sources, socket, mode and pool come from the file,
    paths relative to its folder; a bad key stops the daemon with FILE:LINE:COLUMN and exit 2."""
    folder, cfg, sock = setup
    conf = tmp_path / "etc" / "qrngd.yaml"
    conf.parent.mkdir()
    conf.write_text(f"version: 1\nsources: [../{cfg.name}]\nsocket: ../file.sock\nmode: '0600'\npool: 8KiB\n")
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config-file", str(conf)],
                         stderr=subprocess.PIPE, text=True)
    try:
        served = tmp_path / "file.sock"
        for _ in range(400):
            if served.exists():
                break
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
            time.sleep(0.05)
        assert oct(served.stat().st_mode & 0o777) == "0o600"
        c = DaemonClient(str(served), "from-file")
        assert len(c.seed(64)) == 64 and c.status()["sources"][0]["name"] == cfg.stem
        c.close()
    finally:
        stop(p)
    conf.write_text("version: 1\npool: 8KiB\nbogus: 1\n")
    r = subprocess.run([sys.executable, "-m", "qrng_cli", "daemon", "--config-file", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"{conf}:3:1: bogus is not a known key" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_tells_systemd_it_is_ready_once_it_serves(setup, tmp_path):
    """Type=notify (issue 22): READY=1 arrives on $NOTIFY_SOCKET once the socket serves, with a STATUS= line naming
    the socket as the kernel has it (its real mode) and each source's state; STOPPING=1 on SIGTERM."""
    folder, cfg, sock = setup
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")}
    p = subprocess.Popen([sys.executable, "-m", "qrng_cli", "daemon", "--config", str(cfg), "--socket", str(sock),
                          "--mode", "0640"], stderr=subprocess.DEVNULL, env=env)
    try:
        ready = notify.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=serving on ") and f"{sock} (mode 640)" in ready, ready
        assert "usb (healthy)" in ready and sock.exists()
        assert len(DaemonClient(str(sock), "after-ready").seed(32)) == 32
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    assert notify.recv(4096) == b"STOPPING=1"
    notify.close()
