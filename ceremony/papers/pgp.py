"""The PGP word list (Juola and Zimmermann, 1995): bytes read aloud as words, the even list at even positions and
the odd list at odd positions, so a swapped or dropped byte is heard. Used for digests on paper."""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["pgp_words"]


@cache
def _words() -> tuple[str, ...]:
    lines = [w for w in Path(__file__).with_name("pgpwords.txt").read_text().splitlines() if w and w[0] != "#"]
    if len(lines) != 512:
        raise RuntimeError("pgpwords.txt must hold 512 words")
    return tuple(lines)


def pgp_words(data: bytes) -> str:
    """Bytes at even positions take the even list, at odd positions the odd list (PGP word list)."""
    words = _words()
    return " ".join(words[b + (256 if i % 2 else 0)] for i, b in enumerate(data))
