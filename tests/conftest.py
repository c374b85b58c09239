"""Shared test fixtures: paths to the project root and to the reference vectors in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("QRNG_SHARED", ROOT.parent / "shared"))
VENV_BIN = ROOT / ".venv" / "bin"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "vectors").is_dir():
        pytest.fail(f"reference vectors not found at {SHARED} (set QRNG_SHARED)")
    return SHARED
