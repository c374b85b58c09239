"""docs/ceremony-reference.md (issue 23, section 3) is read off the parsers: complete, and not stale."""

from __future__ import annotations

import pytest

from ceremony.reference import DOC, build


@pytest.fixture(scope="module")
def reference() -> tuple[str, list[str]]:
    return build()


def test_the_reference_is_complete_and_current(reference):
    text, missing = reference
    assert missing == [], missing  # every field the parsers read is described, and no description is of nothing
    assert DOC.read_text() == text, "docs/ceremony-reference.md is stale: run `qrng ceremony reference --write-docs`"


def test_the_reference_shows_what_the_parsers_accept(reference):
    """Spot checks against the parsers' own limits: a change there shows here."""
    from ceremony.steps.collect_entropy import MAX_SAMPLES
    text, _ = reference
    assert f"| `samples` | integer | required | 1 to {MAX_SAMPLES:,} |" in text
    assert "| `key.curve` | string | required | `P-256`, `P-384`, `P-521` |" in text
    assert "| `key.size` | integer | required | 2,048 to 8,192 |" in text
    assert "| `bytes` | integer | `48` | 1 to 4,096 |" in text
    assert "| `profiles.<name>.pin.source` | string | required | `prompt`, `file`, `env` |" in text
