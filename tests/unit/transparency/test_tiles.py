"""C2SP tlog-tiles layout and proofs from tiles: pure. Paths as the spec writes them (its own example
x001/x234/067), hostile paths refused, entry bundles round-trip, and every proof a TiledTree builds from tiles equals
the in-memory tree's for sizes around tile and level boundaries."""

from __future__ import annotations

import hashlib

import pytest

from transparency.errors import FormatError
from transparency.merkle import TreeLevels, leaf_hash, verify_consistency, verify_inclusion
from transparency.tiles import (
    MAX_ENTRY,
    TiledTree,
    bundle,
    entry_path,
    parse_bundle,
    parse_tile_path,
    tile_hashes,
    tile_path,
    tiles_for,
)


@pytest.mark.parametrize("level,index,width,path", [
    (0, 1234067, 256, "tile/0/x001/x234/067"),      # the spec's example
    (0, 0, 256, "tile/0/000"), (1, 5, 7, "tile/1/005.p/7"), (2, 1000, 256, "tile/2/x001/000"),
    (0, 999, 255, "tile/0/999.p/255"),
])
def test_tile_paths(level, index, width, path):
    assert tile_path(level, index, width) == path
    assert parse_tile_path(path) == (str(level), index, width)


def test_entry_paths():
    assert entry_path(1234067) == "tile/entries/x001/x234/067"
    assert entry_path(0, 3) == "tile/entries/000.p/3"
    assert parse_tile_path("tile/entries/x001/000.p/9") == ("entries", 1000, 9)


@pytest.mark.parametrize("path", ["tile/0/1", "tile/0/0001", "tile/0/x1/000", "tile/00/000", "tile/0/000.p/0",
                                  "tile/0/000.p/256", "tile/0/000.p/07", "tile/-1/000", "tiles/0/000", "tile/0",
                                  "tile/0/../../etc/passwd", "tile/0/000/", "tile/a/000"])
def test_hostile_paths_are_refused(path):
    with pytest.raises(FormatError):
        parse_tile_path(path)


def test_bundles_round_trip_and_refuse_what_does_not_fit():
    entries = [b"", b"x", b"{\"kind\":\"entry\"}", bytes(MAX_ENTRY)]
    data = bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:4] == b"\x00\x01"
    assert parse_bundle(data, 4) == entries
    with pytest.raises(FormatError, match="does not fit"):
        bundle([bytes(MAX_ENTRY + 1)])
    with pytest.raises(FormatError, match="3 entries, 4 expected"):
        parse_bundle(bundle(entries[:3]), 4)
    with pytest.raises(FormatError, match="truncated"):
        parse_bundle(data[:-1], 4)


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537, 70000])
def test_proofs_from_tiles_equal_the_trees(size):
    leaves = [leaf_hash(hashlib.sha256(i.to_bytes(4, "big")).digest()) for i in range(size)]
    tree = TreeLevels(leaves)
    store = {(lv, ix): tile_hashes(tree, lv, ix, w) for lv, ix, w in tiles_for(size)}
    tiled = TiledTree(size, lambda lv, ix, w: store[(lv, ix)])
    assert tiled.root() == tree.root()
    for i in {0, size // 3, size // 2, size - 1}:
        proof = tiled.inclusion_proof(i, size)
        assert proof == tree.inclusion_proof(i, size)
        verify_inclusion(i, size, leaves[i], proof, tree.root())
    for m in {1, size // 2, size - 1} - {0}:
        proof = tiled.consistency_proof(m, size)
        assert proof == tree.consistency_proof(m, size)
        verify_consistency(m, size, tree.root(m), tree.root(), proof)
    assert tiled.tiles_read <= 2 * (len(f"{size:b}") // 8 + 2) + 2


def test_a_short_tile_is_refused():
    tiled = TiledTree(300, lambda lv, ix, w: bytes(32 * w - 1))
    with pytest.raises(FormatError, match="bytes, .* expected"):
        tiled.root()


def test_republishing_picks_up_cosignatures_collected_since(tmp_path):
    """Regression (issue 19): a witness that answered after the log was published never reached the served
    checkpoint, because a publish with no new entry returned before writing it."""
    from transparency.log import AuditLog
    from transparency.note import ALG_COSIGNATURE_V1, Checkpoint, cosign, generate_ed25519, load_ed25519_signer
    from transparency.tilesio import TileSource, publish, verify_tiles
    priv, _ = generate_ed25519("tiles.example/log")
    signer = load_ed25519_signer(priv)
    log = AuditLog(tmp_path / "audit.log", signer.name, signer)
    for i in range(300):
        log.append("step", "operator", "event", data={"i": i})
    log.checkpoint()
    publish(tmp_path / "audit.log", tmp_path / "tiles")
    wpriv, _ = generate_ed25519("witness.example/late")
    w = load_ed25519_signer(wpriv, ALG_COSIGNATURE_V1)
    log.add_cosignature(log.size, cosign(Checkpoint(signer.name, log.size, log.root()).text(), w, 1_700_000_000))
    log.close()
    assert "witness.example/late" not in (tmp_path / "tiles" / "checkpoint").read_text()
    r = publish(tmp_path / "audit.log", tmp_path / "tiles")
    assert r.new_entries == 0 and "witness.example/late" in (tmp_path / "tiles" / "checkpoint").read_text()
    v = verify_tiles(TileSource(str(tmp_path / "tiles")), [signer.verifier], [w.verifier], 1)
    assert [k.name for k in v.cosigners] == ["witness.example/late"]


def test_one_verification_uses_one_checkpoint(tmp_path):
    """Issue 20: a server that changes its checkpoint between two fetches of one verification cannot have one copy
    checked and another used: a TileSource fetches the checkpoint once."""
    from transparency.tilesio import TileSource
    (tmp_path / "checkpoint").write_bytes(b"first")
    src = TileSource(str(tmp_path))
    assert src.get("checkpoint") == b"first"
    (tmp_path / "checkpoint").write_bytes(b"second")
    assert src.get("checkpoint") == b"first" and src.fetches == 1


def test_a_malformed_served_checkpoint_is_a_failed_verification(tmp_path):
    """Issue 20 (low): a malformed checkpoint from the server was a usage error (exit 2); it is exit 1."""
    from transparency.errors import TamperedError
    from transparency.note import generate_ed25519, load_ed25519_signer
    from transparency.tilesio import TileSource, verify_tiles
    (tmp_path / "checkpoint").write_bytes(b"not a note")
    signer = load_ed25519_signer(generate_ed25519("tiles.example/log")[0])
    with pytest.raises(TamperedError, match="malformed"):
        verify_tiles(TileSource(str(tmp_path)), [signer.verifier])


def test_the_tiles_client_has_an_overall_deadline(tmp_path):
    from transparency.errors import TileUnavailable
    from transparency.tilesio import TileSource
    (tmp_path / "checkpoint").write_bytes(b"x")
    src = TileSource(str(tmp_path), deadline_s=0.0)
    with pytest.raises(TileUnavailable, match="overall deadline"):
        src.get("checkpoint")


def test_verifiers_take_any_fetch_function_and_read_the_checkpoint_once(tmp_path):
    """Issue 21: verification from tiles reads through a ``fetch(path) -> bytes`` function (as tessera and tuf do),
    not a concrete source class: a dict of the published files verifies the same, and within one verification the
    checkpoint is read once whatever the function returns on a second call."""
    from transparency.log import AuditLog
    from transparency.note import ALG_COSIGNATURE_V1, Checkpoint, cosign, generate_ed25519, load_ed25519_signer
    from transparency.tilesio import prove_from_tiles, publish, verify_tiles
    signer = load_ed25519_signer(generate_ed25519("tiles.example/log")[0])
    w = load_ed25519_signer(generate_ed25519("witness.example/w")[0], ALG_COSIGNATURE_V1)
    with AuditLog(tmp_path / "audit.log", signer.name, signer) as log:
        for i in range(300):
            log.append("step", "operator", "event", data={"i": i})
        log.checkpoint()
        log.add_cosignature(log.size, cosign(Checkpoint(signer.name, log.size, log.root()).text(), w, 1_700_000_000))
    publish(tmp_path / "audit.log", tmp_path / "tiles")
    files = {str(p.relative_to(tmp_path / "tiles")): p.read_bytes()
             for p in (tmp_path / "tiles").rglob("*") if p.is_file() and ".publisher" not in p.parts}
    asked: list[str] = []

    def fetch(rel: str) -> bytes:
        asked.append(rel)
        return files[rel] if asked.count("checkpoint") < 2 or rel != "checkpoint" else b"a different checkpoint"

    v = verify_tiles(fetch, [signer.verifier], [w.verifier], 1)
    assert v.entries > 0 and asked.count("checkpoint") == 1 and v.fetches == len(asked)
    entry, proof, _, one = prove_from_tiles(lambda rel: files[rel], 0, [signer.verifier], [w.verifier], 1)
    assert one.checkpoint == v.checkpoint and entry == v.entry_bytes[0]
