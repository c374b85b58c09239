"""Strict YAML at the edge: duplicate keys are errors, and typed getters quote the YAML path.

Used by the entropy-core config and by ceremony scripts and policies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable

from .errors import ConfigError

__all__ = ["Fields", "check_plain", "load_yaml", "load_yaml_text", "marks", "observing", "parse_file", "read_text"]


def check_plain(value: str, path: str) -> str:
    """Text that reaches certificates, papers and logs people read: no control, format (bidirectional overrides such
    as U+202E, zero-width characters), separator-line, private-use or surrogate characters, which would make what
    is shown differ from what is signed. Raises ConfigError naming the YAML path."""
    import unicodedata
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp")), None)
    if bad is not None:
        raise ConfigError(path, f"contains U+{ord(bad):04X} ({unicodedata.name(bad, 'a control character')}): "
                                "control, bidirectional and invisible characters are not allowed")
    return value


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        where = {"line": key_node.start_mark.line + 1, "column": key_node.start_mark.column + 1}
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise ConfigError("", "merge keys ('<<') are not supported: write the fields out", **where)
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError("", "a mapping key must be a plain scalar, not a list or mapping ('? [...]')",
                              **where)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError("", f"duplicate key {key!r}", line=key_node.start_mark.line + 1,
                              column=key_node.start_mark.column + 1)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def marks(text: str) -> dict[str, tuple[int, int]]:
    """(line, column) of every node, keyed by the YAML path that :class:`Fields` uses (``a.b[2].c``)."""
    out: dict[str, tuple[int, int]] = {}
    try:
        root = yaml.compose(text, Loader=_StrictLoader)
    except yaml.YAMLError:
        return out

    def walk(node: Any, path: str) -> None:
        out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    p = f"{path}.{k.value}" if path else str(k.value)
                    out.setdefault(p, (k.start_mark.line + 1, k.start_mark.column + 1))
                    walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{path}[{i}]")
    if root is not None:
        walk(root, "")
    return out


def load_yaml_text(text: str, origin: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise exc.in_file(origin) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError("", f"malformed YAML ({getattr(exc, 'problem', exc)})", origin,
                          mark.line + 1 if mark else None, mark.column + 1 if mark else None) from None
    except RecursionError:
        raise ConfigError("", "malformed YAML (nested too deeply)", origin) from None


MAX_CONFIG = 4 << 20  # no configuration, script, policy or profile comes near 4 MiB


def read_text(path: str | Path) -> str:
    """A YAML file's text; unreadable or non-UTF-8 files are a ConfigError naming the file. A regular file only:
    a FIFO would block the reader for ever, a device would be read as configuration (issue 20)."""
    import os
    import stat
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError("", f"cannot read ({exc.strerror})", str(p)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError("", "is not a regular file (a FIFO, device or folder is never read as configuration)",
                          str(p))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_CONFIG + 1)
    if len(data) > MAX_CONFIG:
        raise ConfigError("", f"is larger than {MAX_CONFIG >> 20} MiB; not a configuration file", str(p))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"is not UTF-8 text (byte {exc.start})", str(p)) from None


def load_yaml(path: str | Path) -> Any:
    return load_yaml_text(read_text(path), str(path))


def parse_file(path: str | Path, parse: Any) -> Any:
    """Load ``path`` and run ``parse(document)``; any ConfigError comes out naming the file, line and column."""
    text = read_text(path)
    data = load_yaml_text(text, str(path))
    try:
        return parse(data)
    except ConfigError as exc:
        raise exc.in_file(str(path), marks(text)) from None


_MISSING = object()


class _Observing:
    """``with observing(callback):`` every Fields read in the block is told to ``callback`` (see Fields)."""

    def __init__(self, callback: Callable[[str, str, dict[str, Any]], None]) -> None:
        self._callback = callback

    def __enter__(self) -> None:
        Fields.observer = self._callback

    def __exit__(self, *exc: object) -> None:
        Fields.observer = None


def observing(callback: Callable[[str, str, dict[str, Any]], None]) -> _Observing:
    return _Observing(callback)


class Fields:
    """A mapping read field by field; :meth:`done` rejects keys nobody asked for.

    ``Fields.observer``, when set (:func:`observing`), is told of every typed read: the path, the reader's kind,
    the default and the bounds or choices. The generated references (docs/ceremony-reference.md) come from it, so
    they describe what the parsers actually accept."""

    observer: Callable[[str, str, dict[str, Any]], None] | None = None

    def _seen(self, key: str, kind: str, default: Any, **limits: Any) -> None:
        if Fields.observer is not None:
            Fields.observer(self.p(key), kind, {"default": default, **limits})

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(path or "<root>", f"must be a mapping, got {type(value).__name__}")
        odd = [k for k in value if not isinstance(k, str)]
        if odd:
            raise ConfigError(path or "<root>", f"has a key that is not a string: {odd[0]!r}")
        self._m = dict(value)
        self._path = path
        self._used: set[str] = set()

    def p(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def has(self, key: str) -> bool:
        return key in self._m

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key not in self._m:
            if default is _MISSING:
                raise ConfigError(self.p(key), "is required")
            return default
        return self._m[key]

    def text(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] | None = None) -> Any:
        self._seen(key, "string", default, choices=choices)
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, str):
            raise ConfigError(self.p(key), f"must be a string, got {type(v).__name__}")
        if "\0" in v:  # no field means a NUL; in a path it would reach the OS as a truncated name
            raise ConfigError(self.p(key), "must not contain a NUL character")
        if choices is not None and v not in choices:
            raise ConfigError(self.p(key), f"must be one of {', '.join(choices)} (got {v!r})")
        return v

    def integer(self, key: str, default: Any = _MISSING, lo: int | None = None, hi: int | None = None) -> Any:
        self._seen(key, "integer", default, lo=lo, hi=hi)
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(self.p(key), f"must be an integer, got {type(v).__name__}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(self.p(key), f"{_range(lo, hi)} (got {v})")
        return v

    def number(self, key: str, default: Any = _MISSING, lo: float | None = None, hi: float | None = None) -> Any:
        self._seen(key, "number", default, lo=lo, hi=hi)
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(self.p(key), f"must be a number, got {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):  # NaN passes every comparison: it would disable checks
            raise ConfigError(self.p(key), f"must be a finite number, got {v}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(self.p(key), f"{_range(lo, hi)} (got {v})")
        return float(v)

    def flag(self, key: str, default: Any = _MISSING) -> Any:
        self._seen(key, "true/false", default)
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise ConfigError(self.p(key), f"must be true or false, got {v!r}")
        return v

    def items(self, key: str, default: Any = _MISSING) -> Any:
        self._seen(key, "list", default)
        return self._list(key, default)

    def _list(self, key: str, default: Any) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, list):
            raise ConfigError(self.p(key), f"must be a list, got {type(v).__name__}")
        return v

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        """A list of non-empty strings; each bad item is named by its index."""
        self._seen(key, "list of strings", default)
        items = self._list(key, default)
        if items is default and default is not _MISSING:
            return items
        for i, v in enumerate(items):
            if not isinstance(v, str) or not v or "\0" in v:
                raise ConfigError(f"{self.p(key)}[{i}]", f"must be a non-empty string without NUL, got {v!r:.40}")
        return items

    def integers(self, key: str, lo: int, hi: int, default: Any = _MISSING) -> Any:
        """A list of integers from lo to hi; each bad item is named by its index."""
        self._seen(key, "list of integers", default, lo=lo, hi=hi)
        items = self._list(key, default)
        if items is default and default is not _MISSING:
            return items
        for i, v in enumerate(items):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{self.p(key)}[{i}]", f"must be an integer from {lo} to {hi} (got {v!r})")
        return items

    def sub(self, key: str, default: Any = _MISSING) -> Fields:
        self._seen(key, "mapping", {} if default is _MISSING else default)
        v = self.raw(key, {} if default is _MISSING else default)
        return Fields(v if v is not None else {}, self.p(key))

    MISSING = _MISSING  # the default of a required field, as the observer sees it

    def done(self) -> None:
        extra = [k for k in self._m if k not in self._used]
        if extra:
            raise ConfigError(self.p(f"{extra[0]}"), "is not a known key")


def _range(lo: float | None, hi: float | None) -> str:
    """What a bounded number must be, without naming a bound that does not exist ("between 0 and None")."""
    if lo is not None and hi is not None:
        return f"must be between {lo} and {hi}"
    return f"must be at least {lo}" if lo is not None else f"must be at most {hi}"
