"""Strict YAML at the edge: duplicate keys are errors, and typed getters quote the YAML path.

Used by the entropy-core config and by ceremony scripts and policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["Fields", "load_yaml", "load_yaml_text"]


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError("", f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_text(text: str, origin: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError("", f"{origin}: {str(exc).strip()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError("", f"{origin}: {where}malformed YAML ({getattr(exc, 'problem', exc)})") from None


def load_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"{p}: cannot read ({exc.strerror})") from None
    return load_yaml_text(text, str(p))


_MISSING = object()


class Fields:
    """A mapping read field by field; :meth:`done` rejects keys nobody asked for."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(path or "<root>", f"must be a mapping, got {type(value).__name__}")
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
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, str):
            raise ConfigError(self.p(key), f"must be a string, got {type(v).__name__}")
        if choices is not None and v not in choices:
            raise ConfigError(self.p(key), f"must be one of {', '.join(choices)} (got {v!r})")
        return v

    def integer(self, key: str, default: Any = _MISSING, lo: int | None = None, hi: int | None = None) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(self.p(key), f"must be an integer, got {type(v).__name__}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(self.p(key), f"must be between {lo} and {hi} (got {v})")
        return v

    def number(self, key: str, default: Any = _MISSING, lo: float | None = None, hi: float | None = None) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(self.p(key), f"must be a number, got {type(v).__name__}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(self.p(key), f"must be between {lo} and {hi} (got {v})")
        return float(v)

    def flag(self, key: str, default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise ConfigError(self.p(key), f"must be true or false, got {v!r}")
        return v

    def items(self, key: str, default: Any = _MISSING) -> Any:
        v = self.raw(key, default)
        if v is default and default is not _MISSING:
            return v
        if not isinstance(v, list):
            raise ConfigError(self.p(key), f"must be a list, got {type(v).__name__}")
        return v

    def sub(self, key: str, default: Any = _MISSING) -> Fields:
        v = self.raw(key, {} if default is _MISSING else default)
        return Fields(v if v is not None else {}, self.p(key))

    def done(self) -> None:
        extra = [k for k in self._m if k not in self._used]
        if extra:
            raise ConfigError(self.p(f"{extra[0]}"), "is not a known key")
