"""Property-based fuzzing of every YAML loader (issue 10): the entropy configuration, ceremony scripts, profiles
and policies. Documents are made from the real examples with hostile changes (NaN and infinities, huge and
negative numbers, odd keys and types, path-like strings, deleted and added keys) and from raw byte mutations of
their text (non-UTF-8 included). Each must either load or fail with our ConfigError naming the file; no other
exception may ever escape.

Bounded in `make test` (QRNG_FUZZ_EXAMPLES, default 150 per loader); run longer with e.g.
QRNG_FUZZ_EXAMPLES=20000 make check.
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ceremony.loader import load_policy, load_profile, load_script
from qrng.config import load_config
from qrng.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("QRNG_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("QRNG_FUZZ_RANDOM") is None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**30), 2**63, -1, 0, 1e308, -0.0, True, False, None,
                     "", " ", "../../etc/passwd", "/etc/shadow", "a/b", ".hidden", "C:\\x", "\x00", "\u2028",
                     "é" * 300, "transcript.md", "audit.log", "*", "~", "$HOME", "{a}", "[1]", "1e400", ".nan",
                     [], {}, [None], {"x": 1}, {"<<": 1}]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: Any, base: Any) -> Any:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if not path:
            if action == "set":
                doc = draw(HOSTILE)
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        if not isinstance(parent, dict | list):
            continue
        key = path[-1]
        if action == "set":
            parent[key] = draw(HOSTILE)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=12), st.integers(), st.sampled_from(["<<", "?", ""])))] = \
                draw(HOSTILE)
        else:
            parent.append(draw(HOSTILE))
    return doc


def _dump(doc: Any) -> bytes:
    # NaN, infinities and huge integers are written the way YAML spells them
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode()


@st.composite
def byte_mutated(draw: Any, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(max_size=8))
        elif action == "delete" and data:
            del data[pos]
        elif action == "truncate":
            del data[pos:]
    return bytes(data)


def _must_load_or_name_the_file(path: Path, load: Callable[[Path], Any]) -> None:
    try:
        load(path)
    except ConfigError as exc:  # ScriptError is a ConfigError too
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
    except RecursionError:
        pytest.fail("a recursion error escaped")


def _loaders(tmp: Path) -> dict[str, tuple[Path, Callable[[Path], Any]]]:
    profiles = ROOT / "ceremonies" / "profiles.yaml"
    return {
        "entropy": (ROOT / "ceremonies" / "entropy-simulator.yaml", load_config),
        "script": (ROOT / "ceremonies" / "root-ca.yaml", load_script),
        "policy": (ROOT / "policies" / "rehearsal.yaml", load_policy),
        "profiles": (profiles, lambda p: load_profile(p, "rehearsal")),
    }


@pytest.mark.parametrize("kind", ["entropy", "script", "policy", "profiles"])
def test_structured_mutations(tmp_path: Path, kind: str) -> None:
    source, load = _loaders(tmp_path)[kind]
    base = yaml.safe_load(source.read_text())
    target = tmp_path / source.name

    @FUZZ
    @given(doc=mutated(base))
    def run(doc: Any) -> None:
        target.write_bytes(_dump(doc))
        _must_load_or_name_the_file(target, load)
    run()


@pytest.mark.parametrize("kind", ["entropy", "script", "policy", "profiles"])
def test_byte_mutations(tmp_path: Path, kind: str) -> None:
    source, load = _loaders(tmp_path)[kind]
    text = source.read_bytes()
    target = tmp_path / source.name

    @FUZZ
    @given(data=byte_mutated(text))
    def run(data: bytes) -> None:
        target.write_bytes(data)
        _must_load_or_name_the_file(target, load)
    run()


# --- regressions for what this fuzzer found ----------------------------------------------------------------
FOUND = [
    ("policy", lambda d: d["allowed_keys"][1].update(curves=[[], "P-384"]), "allowed_keys[1].curves[0]"),
    ("policy", lambda d: d["allowed_keys"][0].update(sizes=["3072"]), "allowed_keys[0].sizes[0]"),
    ("policy", lambda d: d.update(required_before_keygen=[{"a": 1}]), "required_before_keygen[0]"),
    ("policy", lambda d: d["certificates"].update({7: {"max_validity_days": 1}}), "certificates has a key"),
    ("entropy", lambda d: d["attestation"].update(certificate="dev\0ice.pem"), "attestation.certificate must not"),
    ("script", lambda d: d.update(policy="../policies/default\0.yaml"), "policy must not contain a NUL"),
]


@pytest.mark.parametrize("kind,change,phrase", FOUND)
def test_found_by_the_fuzzer(tmp_path: Path, kind: str, change: Callable[[Any], None], phrase: str) -> None:
    source, load = _loaders(tmp_path)[kind]
    doc = yaml.safe_load(source.read_text())
    change(doc)
    target = tmp_path / source.name
    target.write_bytes(_dump(doc))
    with pytest.raises(ConfigError, match=re.escape(phrase)) as exc:
        load(target)
    assert str(target) in str(exc.value)


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_configuration_files_refuse_fifos_devices_and_folders(tmp_path, kind):
    """Issue 20 (low): a FIFO given as a configuration blocked the reader for ever; a device was read as one."""
    import os
    import time

    from qrng.errors import ConfigError
    from qrng.yaml_input import read_text
    path = tmp_path / "qrng.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path = "/dev/zero"
    t = time.monotonic()
    with pytest.raises(ConfigError, match="not a regular file|cannot read"):
        read_text(path)
    assert time.monotonic() - t < 2
