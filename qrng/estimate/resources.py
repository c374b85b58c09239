"""How much memory and time an SP 800-90B non-IID assessment needs, from the sample count alone (pure).

Models fitted to `make bench` measurements on this project's machines (bench/bench_estimate.py): the samples,
their bit string and its bucketed 64-bit windows (about 4 bytes per bit of a sample, conservatively), plus the
predictors' fixed context tables (about 160 MB); the time grows with the bits assessed. Highly repetitive bit
strings (a repeat of 64 bits or more) take the suffix-array path, about twice that."""

from __future__ import annotations

__all__ = ["memory_needed", "seconds_expected"]

BYTES_PER_BIT = 4.0
FIXED = 160 << 20
SECONDS_PER_BIT = 1.0e-6


def memory_needed(samples: int, bits_per_symbol: int) -> int:
    """Peak bytes for the non-IID track over ``samples`` samples of ``bits_per_symbol`` bits."""
    return int(samples * (1 + BYTES_PER_BIT * bits_per_symbol)) + FIXED


def seconds_expected(samples: int, bits_per_symbol: int) -> float:
    return 0.3 + SECONDS_PER_BIT * samples * bits_per_symbol
