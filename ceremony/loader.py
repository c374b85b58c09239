"""The ceremony model's loaders bound to the registry of step types. The model (ceremony/model.py) names no step
type and imports no step module: the registry is passed to it here, which opens the import circle
model -> steps -> base -> model (issue 21)."""

from __future__ import annotations

from pathlib import Path

from . import model
from .model import Policy, Script, load_profile
from .steps import REGISTRY

__all__ = ["load_policy", "load_profile", "load_script"]


def load_script(path: str | Path, output: str | Path | None = None) -> Script:
    return model.load_script(path, output, registry=REGISTRY)


def load_policy(path: Path) -> Policy:
    return model.load_policy(path, registry=REGISTRY)
