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
