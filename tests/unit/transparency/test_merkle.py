"""RFC 9162 2.1 hashing and proofs: published Certificate Transparency vectors, and a slow reference
implementation written straight from the RFC's recursive definitions, cross-checked on every tree size."""

from __future__ import annotations

import hashlib
import random

import pytest

from transparency.errors import ProofError
from transparency.merkle import (
    EMPTY_ROOT,
    CompactRange,
    TreeLevels,
    leaf_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f"]]
ROOTS = ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
INCLUSION = [  # (index, size, proof) from the CT reference tests
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
CONSISTENCY = [(2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                       "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"])]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_published_roots(size):
    hashes = [leaf_hash(x) for x in LEAVES[:size]]
    assert root_from_leaves(hashes).hex() == ROOTS[size]
    if size:
        assert TreeLevels(hashes).root().hex() == ROOTS[size]


@pytest.mark.parametrize("index,size,proof", INCLUSION)
def test_published_inclusion_proofs(index, size, proof):
    tree = TreeLevels([leaf_hash(x) for x in LEAVES])
    assert [h.hex() for h in tree.inclusion_proof(index, size)] == proof
    verify_inclusion(index, size, leaf_hash(LEAVES[index]), [bytes.fromhex(p) for p in proof],
                     bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize("first,second,proof", CONSISTENCY)
def test_published_consistency_proofs(first, second, proof):
    tree = TreeLevels([leaf_hash(x) for x in LEAVES])
    assert [h.hex() for h in tree.consistency_proof(first, second)] == proof
    verify_consistency(first, second, bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second]),
                       [bytes.fromhex(p) for p in proof])


# --- slow reference, straight from RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1 ------------------------------------------
def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def _data(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() for i in range(n)]


def test_every_small_tree_against_reference():
    for n in range(1, 65):
        d = _data(n)
        tree = TreeLevels([leaf_hash(x) for x in d])
        root = ref_mth(d)
        assert tree.root() == root
        for m in range(n):
            path = tree.inclusion_proof(m, n)
            assert path == ref_path(m, d)
            verify_inclusion(m, n, leaf_hash(d[m]), path, root)
        for first in range(1, n + 1):
            proof = tree.consistency_proof(first, n)
            assert proof == (ref_subproof(first, d, True) if first < n else [])
            verify_consistency(first, n, ref_mth(d[:first]), root, proof)


def test_random_large_trees_against_reference():
    rng = random.Random(9162)
    for n in rng.sample(range(65, 400), 12):
        d = _data(n)
        tree = TreeLevels([leaf_hash(x) for x in d])
        assert tree.root() == ref_mth(d)
        cr = CompactRange()
        for x in d:
            cr.append(leaf_hash(x))
        assert cr.root() == tree.root()
        for m in rng.sample(range(n), 5):
            assert tree.inclusion_proof(m, n) == ref_path(m, d)
        for first in rng.sample(range(1, n), 5):
            assert tree.consistency_proof(first, n) == ref_subproof(first, d, True)


def test_empty_tree():
    assert root_from_leaves([]) == EMPTY_ROOT == CompactRange().root()


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


def test_inclusion_proof_rejects_every_mangling():
    d = _data(13)
    tree = TreeLevels([leaf_hash(x) for x in d])
    root, leaf, proof = tree.root(), leaf_hash(d[6]), tree.inclusion_proof(6, 13)
    bad_cases = [
        # (a size with the same path shape verifies the same way: the signed checkpoint fixes the size)
        (5, 13, leaf, proof, root), (7, 13, leaf, proof, root), (6, 7, leaf, proof, root),
        (6, 100, leaf, proof, root), (6, 13, _flip(leaf), proof, root), (6, 13, leaf, proof[:-1], root),
        (6, 13, leaf, proof + [root], root), (6, 13, leaf, [_flip(proof[0])] + proof[1:], root),
        (6, 13, leaf, proof, _flip(root)), (13, 13, leaf, proof, root),
    ]
    for case in bad_cases:
        with pytest.raises(ProofError):
            verify_inclusion(*case)


def test_consistency_proof_rejects_every_mangling():
    d = _data(21)
    tree = TreeLevels([leaf_hash(x) for x in d])
    r7, r21, proof = tree.root(7), tree.root(21), tree.consistency_proof(7, 21)
    bad_cases = [
        (6, 21, r7, r21, proof), (7, 33, r7, r21, proof), (7, 21, _flip(r7), r21, proof),
        (7, 21, r7, _flip(r21), proof), (7, 21, r7, r21, proof[:-1]), (7, 21, r7, r21, proof + [r7]),
        (7, 21, r7, r21, []), (21, 7, r21, r7, proof), (7, 7, r7, r21, []),
    ]
    for case in bad_cases:
        with pytest.raises(ProofError):
            verify_consistency(*case)
