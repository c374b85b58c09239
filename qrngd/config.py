"""qrngd's configuration: one frozen :class:`DaemonConfig`, read from a YAML file (``qrng daemon --config-file
/etc/qrng/qrngd.yaml``, what the systemd unit uses), from the command line, or both (an option given on the
command line replaces the file's key). Validated once, before anything is opened; an error names the file, line
and column (``qrngd.yaml:7:7: pool must be ...``) or the option (``--pool '1KiB': ...``).

The file's keys are the long options' names with underscores (``max_conns_per_user`` is
``--max-conns-per-user``), except ``sources``: the list of entropy-core configurations, ``--config`` on the
command line. Paths in the file are relative to the file's folder. docs/daemon-protocol.md lists every key;
contrib/qrngd.yaml is a commented example.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qrng.asciinum import is_ascii_decimal
from qrng.errors import ConfigError
from qrng.yaml_input import Fields, load_yaml_text, marks, read_text

from .pool import DaemonOptions
from .protocol import DEFAULT_SOCKET
from .tls import TlsOptions, UpstreamOptions

__all__ = ["FLAGS", "DaemonConfig", "load_daemon_config", "parse_daemon_config"]

# key -> command-line option (every key has one; the file's key names are these without dashes)
FLAGS: dict[str, str] = {k: "--" + k.replace("_", "-") for k in (
    "socket", "mode", "group", "metrics", "stream", "max_conns_per_user", "pool", "history_interval", "retain",
    "retain_dir", "attest_state", "attest_roots", "attest_every", "allow_emulator", "feed_kernel", "feed_rate",
    "feed_fifo", "audit_log", "audit_key", "tls", "tls_cert", "tls_key", "tls_client_ca", "upstream",
    "upstream_cert", "upstream_key", "upstream_ca", "upstream_name")} | {"sources": "--config"}


@dataclass(frozen=True)
class DaemonConfig:
    """Everything ``qrng daemon`` runs with. ``sources`` empty: the entropy core's default configuration
    ($QRNG_CONFIG, /etc/qrng/qrng.yaml, the built-in simulator), unless an upstream is the only source."""

    sources: tuple[Path, ...] = ()
    socket: Path = Path(DEFAULT_SOCKET)
    mode: int = 0o660
    gid: int = -1                 # the socket's group (-1: the daemon's)
    metrics: tuple[str, int] | None = None
    options: DaemonOptions = field(default_factory=DaemonOptions)
    retain_bytes: int = 0
    retain_dir: Path | None = None
    attest_roots: tuple[Path, ...] = ()
    attest_every: float = 3600.0
    attest_state: Path | None = None
    allow_emulator: bool = False
    feed_kernel: bool = False
    feed_rate: int = 512
    feed_fifo: Path | None = None
    audit_log: Path | None = None
    audit_key: Path | None = None
    tls: TlsOptions | None = None
    upstream: UpstreamOptions | None = None


def size(text: Any, name: str) -> int:
    """A byte size such as 64KiB, 8MiB or 1GiB, or plain bytes (an integer, or its digits)."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    units = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
    t = text.strip().upper() if isinstance(text, str) else ""
    num = t.rstrip("KMGIB")
    unit = t[len(num):]
    if not is_ascii_decimal(num) or unit not in units or int(num) * units[unit] > 1 << 40:
        raise ConfigError(name, f"{text!r}: a size such as 65536, 64KiB or 8MiB (at most 1 TiB)")
    return int(num) * units[unit]


class _Reader:
    """The document's keys, each read once and checked; ``name(key)`` is how an error names it (the option on
    the command line, the key in a file)."""

    def __init__(self, data: Any, base: Path, flags: frozenset[str]) -> None:
        self.f = Fields(data if data is not None else {}, "")
        self.base, self._flags = base, flags

    def name(self, key: str) -> str:
        return FLAGS[key] if key in self._flags else key

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.name(key), message)

    def path(self, key: str) -> Path | None:
        """A file name, relative to the configuration's folder; ``credential:NAME`` is the file systemd passed
        with LoadCredential= ($CREDENTIALS_DIRECTORY/NAME), so a key never sits in a path the daemon's user reads
        from /etc (contrib/systemd/qrngd.service)."""
        v: str | None = self.f.text(key, None)
        if v and v.startswith("credential:"):
            name, where = v[len("credential:"):], os.environ.get("CREDENTIALS_DIRECTORY")
            if not name or "/" in name or name in (".", ".."):
                raise self.fail(key, f"{v!r}: credential:NAME names one credential, without a '/'")
            if not where:
                raise self.fail(key, f"{v!r}: no $CREDENTIALS_DIRECTORY (systemd sets it for LoadCredential=)")
            return Path(where) / name
        return self.base / v if v else None

    def existing(self, key: str, needed_by: str) -> Path:
        p = self.path(key)
        if p is None:
            raise self.fail(needed_by, f"needs {self.name(key)}")
        if not p.is_file():
            raise self.fail(key, f"{p}: no such file")
        return p

    def only_with(self, keys: tuple[str, ...], needed: str) -> None:
        for k in keys:
            if self.f.raw(k, None) not in (None, False, ""):
                raise self.fail(k, f"only matters with {self.name(needed)}")

    def address(self, key: str, example: str) -> tuple[str, int] | None:
        text = self.f.text(key, None)
        if not text:
            return None
        host, _, port = text.rpartition(":")
        if not host or not is_ascii_decimal(port) or not 0 < int(port) < 65536:
            raise self.fail(key, f"{text!r}: expected HOST:PORT, e.g. {example}")
        return host.strip("[]"), int(port)

    def ranged(self, key: str, default: float, lo: float, hi: float, what: str) -> float:
        v = self.f.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
            raise self.fail(key, f"{v}: {what}" if key in self._flags else f"{v!r}: {what}")
        return float(v)

    def mode(self) -> int:
        v = self.f.raw("mode", "0660")
        if not isinstance(v, str):  # YAML reads 0660 as the number 432 and 660 as 660: only a string is clear
            raise self.fail("mode", "must be quoted octal permission bits, such as '0660'")
        mode = int(v, 8) if v and all(c in "01234567" for c in v) else -1
        if not 0 <= mode <= 0o777:
            raise self.fail("mode", f"{v!r}: octal permission bits 0000..0777, such as 0660")
        return mode

    def group(self) -> int:
        """The socket's group id (-1: the daemon's)."""
        import grp
        name = self.f.text("group", None)
        if not name:
            return -1
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            raise self.fail("group", f"{name!r}: no such group") from None


def _tls(r: _Reader) -> tuple[TlsOptions | None, UpstreamOptions | None]:
    tls = up = None
    listen = r.address("tls", "127.0.0.1:7464")
    if listen:
        tls = TlsOptions(*listen, r.existing("tls_cert", "tls"), r.existing("tls_key", "tls"),
                         r.existing("tls_client_ca", "tls"))
    else:
        r.only_with(("tls_cert", "tls_key", "tls_client_ca"), "tls")
    if r.address("upstream", "qrngd.example:7464"):
        up = UpstreamOptions(r.f.text("upstream"), r.existing("upstream_cert", "upstream"),
                             r.existing("upstream_key", "upstream"), r.existing("upstream_ca", "upstream"),
                             r.f.text("upstream_name", None))
    else:
        r.only_with(("upstream_cert", "upstream_key", "upstream_ca", "upstream_name"), "upstream")
    return tls, up


def _options(r: _Reader) -> DaemonOptions:
    pool = size(r.f.raw("pool", "64KiB"), r.name("pool"))
    if not 4096 <= pool <= 1 << 30:
        raise r.fail("pool", f"{r.f.raw('pool')!r}: from 4KiB to 1GiB")
    conns = r.f.raw("max_conns_per_user", 64)
    if isinstance(conns, bool) or not isinstance(conns, int) or not 1 <= conns <= 1 << 20:
        raise r.fail("max_conns_per_user", f"{conns!r}: connections, from 1")
    return DaemonOptions(stream=r.f.flag("stream", False), pool_bytes=pool,
                         history_interval_s=r.ranged("history_interval", 10.0, 0.5, 3600,
                                                     "seconds, from 0.5 to 3600"),
                         max_conns_per_user=conns)


def parse_daemon_config(data: Any, base: Path = Path("."), flags: frozenset[str] = frozenset(),
                        default_socket: str = DEFAULT_SOCKET) -> DaemonConfig:
    """Validate a document (the YAML file's, the command line's, or both merged) fully; raise ConfigError naming
    the first bad key (as its option when it is in ``flags``). Relative paths are resolved against ``base``."""
    r = _Reader(data, base, flags)
    f = r.f
    version = f.integer("version", 1)
    if version != 1:
        raise ConfigError("version", f"unsupported version {version}; this release reads version 1")
    sources = tuple(base / s for s in f.strings("sources", []))
    options = _options(r)
    retain = f.raw("retain", None)
    retain_bytes = size(retain, r.name("retain")) if retain is not None else 0
    if retain is not None and retain_bytes < 1 << 20:
        raise r.fail("retain", f"{retain!r}: at least 1MiB")
    retain_dir = r.path("retain_dir")
    if retain_bytes and retain_dir is None:
        raise r.fail("retain", f"needs {r.name('retain_dir')} (where the raw-sample ring lives)")
    audit_log = r.path("audit_log")
    audit_key = r.existing("audit_key", "audit_log") if audit_log else None
    r.only_with(() if audit_log else ("audit_key",), "audit_log")
    roots = tuple(base / x for x in f.strings("attest_roots", []))
    for i, root in enumerate(roots):
        if not root.is_file():
            raise ConfigError(f"{r.name('attest_roots')}[{i}]", f"{root}: no such file")
    if not roots:
        r.only_with(("allow_emulator",), "attest_roots")
    feed_fifo = r.path("feed_fifo")
    if feed_fifo and f.flag("feed_kernel", False):
        raise r.fail("feed_kernel", f"and {r.name('feed_fifo')}: choose one way to feed the kernel")
    feed_rate = r.f.raw("feed_rate", 512)
    if isinstance(feed_rate, bool) or not isinstance(feed_rate, int) or not 64 <= feed_rate <= 1 << 20:
        raise r.fail("feed_rate", f"{feed_rate}: bytes a second, from 64 to 1048576")
    tls, upstream = _tls(r)
    metrics = r.address("metrics", "127.0.0.1:9464")
    cfg = DaemonConfig(
        sources=sources, socket=base / f.text("socket", default_socket), mode=r.mode(), gid=r.group(),
        metrics=metrics, options=options, retain_bytes=retain_bytes, retain_dir=retain_dir, attest_roots=roots,
        attest_every=r.ranged("attest_every", 3600.0, 1, 86400 * 365, "seconds, from 1 to a year"),
        attest_state=r.path("attest_state"), allow_emulator=f.flag("allow_emulator", False),
        feed_kernel=f.flag("feed_kernel", False), feed_rate=feed_rate, feed_fifo=feed_fifo, audit_log=audit_log,
        audit_key=audit_key, tls=tls, upstream=upstream)
    f.done()
    return cfg


def load_daemon_config(path: Path | None, given: Mapping[str, Any],
                       default_socket: str = DEFAULT_SOCKET) -> DaemonConfig:
    """The configuration from ``path`` (None: none) with the command line's ``given`` options (keys as in the
    file) replacing the file's keys. Errors in the file name FILE:LINE:COLUMN; errors in an option name it."""
    text, document = "", {}
    if path is not None:
        text = read_text(path)
        document = load_yaml_text(text, str(path))
        if document is None:
            document = {}
        if not isinstance(document, Mapping):
            raise ConfigError("", "must be a mapping of qrngd's keys (see docs/daemon-protocol.md)", str(path))
    cwd = Path.cwd()
    merged = {k: (str(cwd / v) if k in _PATH_KEYS and isinstance(v, str) and not v.startswith("credential:") else
                  [str(cwd / x) for x in v] if k in _PATH_LISTS else v) for k, v in given.items()}
    try:
        return parse_daemon_config({**document, **merged}, path.parent if path is not None else cwd,
                                   frozenset(given) if path is not None else frozenset(FLAGS), default_socket)
    except ConfigError as exc:
        if path is not None and not exc.path.startswith("--"):
            raise exc.in_file(str(path), marks(text)) from None
        raise


# keys whose values are paths: given on the command line they are relative to the working folder
_PATH_KEYS = frozenset({"socket", "retain_dir", "attest_state", "feed_fifo", "audit_log", "audit_key", "tls_cert",
                        "tls_key", "tls_client_ca", "upstream_cert", "upstream_key", "upstream_ca"})
_PATH_LISTS = frozenset({"sources", "attest_roots"})
