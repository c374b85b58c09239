"""Shared test fixtures: the project root and the reference data kept inside the repository (tests/vectors)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
VENV_BIN = ROOT / ".venv" / "bin"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """tests/vectors: CAVP DRBG files, SP 800-90B data sets with NIST's outputs, health-test cutoffs."""
    return VECTORS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Layer markers from the folder: tests/unit -> unit (pure), tests/system -> system (built parts, tools)."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "system"):
            item.add_marker(getattr(pytest.mark, parts[0]))
