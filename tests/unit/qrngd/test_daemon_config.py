"""qrngd's configuration (issue 21): one frozen DaemonConfig from a YAML file, the command line, or both; errors
name FILE:LINE:COLUMN or the option; the shipped example (contrib/qrngd.yaml) parses; the file and the command
line mean the same thing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from qrng.errors import ConfigError
from qrngd.config import FLAGS, DaemonConfig, load_daemon_config, parse_daemon_config
from qrngd.pool import DaemonOptions

ROOT = Path(__file__).resolve().parents[3]


def _file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "qrngd.yaml"
    p.write_text(text)
    return p


def test_defaults_are_the_documented_ones() -> None:
    cfg = parse_daemon_config({})
    assert cfg == DaemonConfig(socket=cfg.socket)
    assert cfg.mode == 0o660 and cfg.options == DaemonOptions() and cfg.metrics is None and cfg.gid == -1
    assert dataclasses.is_dataclass(cfg) and type(cfg).__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_the_shipped_example_parses(tmp_path: Path) -> None:
    cfg = load_daemon_config(ROOT / "contrib" / "qrngd.yaml", {})
    assert cfg.sources == (Path("/etc/qrng/qrng.yaml"),) and cfg.socket == Path("/run/qrngd/qrngd.sock")
    assert cfg.metrics == ("127.0.0.1", 9464) and cfg.options.pool_bytes == 64 << 10


def test_file_and_command_line_mean_the_same(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\n")
    path = _file(tmp_path, "sources: [a.yaml]\nsocket: q.sock\nmode: '0600'\npool: 1MiB\nstream: true\n"
                           "history_interval: 2.5\nretain: 2MiB\nretain_dir: raw\nmetrics: 127.0.0.1:9999\n")
    from_file = load_daemon_config(path, {})
    import os
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        from_argv = load_daemon_config(None, {"sources": ["a.yaml"], "socket": "q.sock", "mode": "0600",
                                              "pool": "1MiB", "stream": True, "history_interval": 2.5,
                                              "retain": "2MiB", "retain_dir": "raw", "metrics": "127.0.0.1:9999"})
    finally:
        os.chdir(here)
    assert from_file == from_argv
    assert from_file.sources == (tmp_path / "a.yaml",) and from_file.retain_dir == tmp_path / "raw"
    assert from_file.options == DaemonOptions(stream=True, pool_bytes=1 << 20, history_interval_s=2.5)


def test_the_command_line_replaces_the_files_key(tmp_path: Path) -> None:
    path = _file(tmp_path, "pool: 1MiB\nmode: '0600'\n")
    cfg = load_daemon_config(path, {"pool": "128KiB"})
    assert cfg.options.pool_bytes == 128 << 10 and cfg.mode == 0o600


@pytest.mark.parametrize(("text", "message"), [
    ("pool: 1KiB\n", "qrngd.yaml:1:1: pool '1KiB': from 4KiB to 1GiB"),
    ("mode: 0660\n", "qrngd.yaml:1:1: mode must be quoted octal permission bits"),
    ("mode: '9'\n", "mode '9': octal permission bits"),
    ("version: 1\nbogus: 1\n", "qrngd.yaml:2:1: bogus is not a known key"),
    ("history_interval: .nan\n", "qrngd.yaml:1:1: history_interval nan: seconds, from 0.5 to 3600"),
    ("attest_every: 1.0e+400\n", "attest_every inf: seconds, from 1 to a year"),
    ("feed_rate: 99999999999999999999999\n", "feed_rate 99999999999999999999999: bytes a second"),
    ("max_conns_per_user: 0\n", "max_conns_per_user 0: connections, from 1"),
    ("retain: 64MiB\n", "qrngd.yaml:1:1: retain needs retain_dir"),
    ("metrics: 'localhost'\n", "metrics 'localhost': expected HOST:PORT"),
    ("tls: 127.0.0.1:7464\n", "tls needs tls_cert"),
    ("tls_cert: x.pem\n", "tls_cert only matters with tls"),
    ("audit_log: a.log\n", "audit_log needs audit_key"),
    ("audit_key: k\n", "audit_key only matters with audit_log"),
    ("allow_emulator: true\n", "allow_emulator only matters with attest_roots"),
    ("attest_roots: [nope.pem]\n", "attest_roots[0]"),
    ("feed_kernel: true\nfeed_fifo: f\n", "feed_kernel and feed_fifo: choose one"),
    ("sources: /etc/qrng/qrng.yaml\n", "sources must be a list"),
    ("group: no-such-group-qrng\n", "group 'no-such-group-qrng': no such group"),
    ("- a\n- b\n", "must be a mapping"),
    ("pool: [1\n", "malformed YAML"),
    ("version: 2\n", "unsupported version 2"),
])
def test_file_errors_name_file_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_daemon_config(_file(tmp_path, text), {})
    assert message in str(err.value) and "qrngd.yaml" in str(err.value), str(err.value)


def test_non_utf8_and_not_a_regular_file(tmp_path: Path) -> None:
    p = tmp_path / "qrngd.yaml"
    p.write_bytes(b"pool: \xff\n")
    with pytest.raises(ConfigError, match="qrngd.yaml: is not UTF-8"):
        load_daemon_config(p, {})
    with pytest.raises(ConfigError, match="not a regular file"):
        load_daemon_config(tmp_path, {})


@pytest.mark.parametrize(("given", "message"), [
    ({"pool": "NaN"}, "--pool 'NaN': a size such as"),
    ({"retain": "1MiB"}, "--retain needs --retain-dir"),
    ({"attest_every": float("nan")}, "--attest-every nan: seconds, from 1 to a year"),
    ({"mode": "7777"}, "--mode '7777': octal permission bits"),
    ({"tls": "127.0.0.1:7464"}, "--tls needs --tls-cert"),
])
def test_command_line_errors_name_the_option(tmp_path: Path, given: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        load_daemon_config(None, given)


def test_an_option_over_a_file_is_named_as_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^--pool '1KiB'"):
        load_daemon_config(_file(tmp_path, "stream: true\n"), {"pool": "1KiB"})


def test_every_key_has_an_option() -> None:
    import argparse

    from qrng_cli.daemon import register
    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    daemon = sub.choices["daemon"]
    options = {o for a in daemon._actions for o in a.option_strings}
    assert set(FLAGS.values()) <= options


def test_every_key_is_documented() -> None:
    doc = (ROOT / "docs" / "daemon-protocol.md").read_text()
    table = doc[doc.index("### The configuration file"):doc.index("## The PKCS#11 module in daemon mode")]
    assert all(f"`{key}`" in table for key in FLAGS), [k for k in FLAGS if f"`{k}`" not in table]


def test_a_busy_metrics_port_is_named_before_any_source_opens() -> None:
    """Issue 22 (on-call): a busy --metrics port failed only after the sources were opened, with a bare OSError."""
    import socket

    from qrngd.run import check_metrics_port
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"metrics 127.0.0.1:{port}: cannot listen there"):
            check_metrics_port(parse_daemon_config({"metrics": f"127.0.0.1:{port}"}))
    finally:
        held.close()
    check_metrics_port(parse_daemon_config({"metrics": f"127.0.0.1:{port}"}))  # free again


def test_keys_can_come_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`audit_key: credential:qrngd-log.key` is $CREDENTIALS_DIRECTORY/qrngd-log.key (LoadCredential= in the unit),
    from the file or the command line; without systemd's variable it is an error naming the key."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "qrngd-log.key").write_text("not read here\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = _file(tmp_path, "audit_log: /var/lib/qrngd/audit.log\naudit_key: credential:qrngd-log.key\n")
    assert load_daemon_config(path, {}).audit_key == creds / "qrngd-log.key"
    cfg = load_daemon_config(None, {"audit_log": "a.log", "audit_key": "credential:qrngd-log.key"})
    assert cfg.audit_key == creds / "qrngd-log.key"
    with pytest.raises(ConfigError, match="credential:NAME names one credential"):
        load_daemon_config(_file(tmp_path, "audit_log: a.log\naudit_key: credential:../etc/shadow\n"), {})
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    path = _file(tmp_path, "audit_log: /var/lib/qrngd/audit.log\naudit_key: credential:qrngd-log.key\n")
    with pytest.raises(ConfigError, match=r"audit_key 'credential:qrngd-log.key': no \$CREDENTIALS_DIRECTORY"):
        load_daemon_config(path, {})
