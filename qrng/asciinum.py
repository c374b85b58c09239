"""ASCII decimal numbers, as C2SP and the project's wire formats mean them. ``str.isdigit`` is also true for '²'
and Arabic-Indic digits, and ``int()`` accepts those and '+', '_' and spaces: neither may decide what a size,
index, threshold or port is. Pure, and imports nothing, so that every edge can use it."""

from __future__ import annotations

__all__ = ["is_ascii_decimal", "parse_ascii_decimal"]


def is_ascii_decimal(text: str, leading_zeros: bool = False) -> bool:
    """ASCII digits only, no sign, no spaces, and no leading zero unless ``leading_zeros``."""
    if not text or not all("0" <= c <= "9" for c in text):
        return False
    return leading_zeros or len(text) == 1 or text[0] != "0"


def parse_ascii_decimal(text: str, what: str, leading_zeros: bool = False, max_digits: int = 20) -> int:
    """The value of an ASCII decimal; ValueError naming ``what`` otherwise (never a traceback from ``int``)."""
    if len(text) > max_digits or not is_ascii_decimal(text, leading_zeros):
        raise ValueError(f"{what} {text[:24]!r} is not an ASCII decimal"
                         + ("" if leading_zeros else " without leading zeros"))
    return int(text)
