"""Merkle tree hashing and proofs exactly as RFC 9162 section 2.1 defines them. Pure: bytes and ints.

* 2.1.1: MTH({}) = SHA-256(), leaf = SHA-256(0x00 || d), node = SHA-256(0x01 || left || right), split at
  the largest power of two strictly below n.
* 2.1.3: inclusion proofs (generation 2.1.3.1, verification 2.1.3.2).
* 2.1.4: consistency proofs (generation 2.1.4.1, verification 2.1.4.2).

:class:`TreeLevels` keeps every aligned perfect subtree hash so proofs over a large log cost O(log^2 n).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .errors import ProofError

__all__ = ["EMPTY_ROOT", "CompactRange", "TreeLevels", "leaf_hash", "node_hash", "root_from_leaves",
           "verify_consistency", "verify_inclusion"]

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (2.1.1), by the compact-range fold."""
    if not hashes:
        return EMPTY_ROOT
    cr = CompactRange()
    for h in hashes:
        cr.append(h)
    return cr.root()


class CompactRange:
    """Perfect subtrees covering [0, n): appending is amortised O(1) hashes, root() is O(log n)."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, h: bytes) -> None:
        self._stack.append(h)
        self.size += 1
        n = self.size
        while not n & 1:
            r = self._stack.pop()
            self._stack[-1] = _sha256(b"\x01" + self._stack[-1] + r).digest()
            n >>= 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h


class TreeLevels:
    """All aligned perfect subtree hashes of a tree of n leaves; subtree hashes and proofs on demand."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.size = len(leaf_hashes)
        levels = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            prev = levels[-1]
            levels.append([_sha256(b"\x01" + prev[i] + prev[i + 1]).digest() for i in range(0, len(prev) - 1, 2)])
        self.levels = levels

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC 9162's recursions visit."""
        if end <= start:
            return EMPTY_ROOT
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:  # an aligned perfect subtree: stored
            return self.stored(n.bit_length() - 1, start // n)
        k = _split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def stored(self, height: int, index: int) -> bytes:
        """The hash of the perfect subtree of 2^height leaves starting at leaf index * 2^height."""
        return self.levels[height][index]

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"tree has {self.size} leaves, not {size}")
        return self.subtree(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(m, D[n]) of 2.1.3.1."""
        if not 0 <= index < size <= self.size:
            raise ValueError(f"index {index} is not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n <= 1:
            return []
        k = _split(n)
        if m < k:
            return self._path(m, start, start + k) + [self.subtree(start + k, end)]
        return self._path(m - k, start + k, end) + [self.subtree(start, start + k)]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """PROOF(m, D[n]) of 2.1.4.1."""
        if not 0 < first <= second <= self.size:
            raise ValueError(f"no consistency proof from {first} to {second} in a tree of {self.size}")
        if first == second:
            return []
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [self.subtree(start, end)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, start, start + k, b) + [self.subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.subtree(start, start + k)]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """2.1.3.2. Raises ProofError; returns None when the leaf hash is included at index in the tree."""
    if index >= size:
        raise ProofError(f"index {index} is beyond the tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof too short: {len(proof)} hashes")
    if r != root:
        raise ProofError(f"inclusion proof for index {index} does not lead to the root", r, root)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """2.1.4.2. Raises ProofError unless the tree of size ``second`` extends the tree of size ``first``."""
    if first > second:
        raise ProofError(f"tree shrank from {first} to {second} leaves")
    if first == second:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError(f"two different roots for tree size {first}", second_root, first_root)
        return
    if first == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if first & (first - 1) == 0:
        path = [first_root] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != first_root:
        raise ProofError(f"consistency proof does not reproduce the size-{first} root", fr, first_root)
    if sr != second_root:
        raise ProofError(f"consistency proof does not reproduce the size-{second} root", sr, second_root)
