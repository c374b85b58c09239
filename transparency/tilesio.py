"""Tiles on disk and over HTTP (the edge of transparency/tiles.py).

* :func:`publish`: write (or bring up to date) the static C2SP tlog-tiles layout of a JSON-lines audit log in a
  folder any web server can serve: hash tiles, entry bundles, then the ``checkpoint`` (the log's latest signed
  checkpoint with its cosignatures), replaced atomically last. Full tiles are immutable: written once, never
  rewritten. An update is O(new entries): the publisher keeps its compact range (the perfect subtrees covering
  the published tree) and the byte offset of the next entry in ``DIR/.publisher/state.json`` (not a tile), and
  refuses a log whose new checkpoint does not extend the published tree (the log was rewritten: a fork).
* :class:`TileSource`: tiles from a folder or an http(s) URL, counted, with the read time (what `bench/` measures).
* :func:`verify_tiles` (everything: every entry and tile against the signed checkpoint) and :func:`prove_from_tiles`
  (one entry's inclusion from O(log n) tiles), both raising AuditError subclasses, never returning False.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qrng.atomic import atomic_write

from .errors import FormatError, ProofError, SignatureError, TamperedError, TileUnavailable
from .merkle import CompactRange, TreeLevels, leaf_hash, node_hash, verify_consistency, verify_inclusion
from .note import Checkpoint, Verifier, parse_note, verify_note
from .records import CHECKPOINT, COSIGNATURE, ENTRY
from .tiles import HEIGHT, MAX_ENTRY, WIDTH, TiledTree, bundle, entry_path, parse_bundle, tile_path
from .verify import distinct_keys

__all__ = ["Fetch", "PublishResult", "TileSource", "TilesVerified", "prove_from_tiles", "publish", "served_bundle",
           "verify_tiles"]

STATE = ".publisher/state.json"


@dataclass(frozen=True)
class PublishResult:
    size: int
    new_entries: int
    tiles_written: int
    bundles_written: int
    seconds: float


def _write_once(path: Path, data: bytes, immutable: bool) -> bool:
    """Write ``path`` atomically; an existing full tile must hold the same bytes (it never changes)."""
    if path.exists():
        if immutable:
            if path.read_bytes() != data:
                raise TamperedError(f"{path}: a full tile already published differs from the log (the log was "
                                    "rewritten, or the folder was changed)")
            return False
        if path.read_bytes() == data:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    # tiles and bundles are rebuilt from the fsync'd log: no fsync each; the checkpoint (written last) is durable
    atomic_write(path, data, overwrite=True, durable=not immutable)
    return True


def _records(data: bytes) -> tuple[list[bytes], str | None, list[str], int, int]:
    """The entry lines of ``data`` (the log from the first unpublished record), the last checkpoint note after
    them with its cosignature lines, the number of entries before that checkpoint, and the offset in ``data``
    just after the last of those entries."""
    entries: list[bytes] = []
    note: str | None = None
    cosig: list[str] = []
    covered = covered_end = 0
    pos = end_of_entries = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise FormatError(f"torn last record at byte {pos} (an interrupted write); publish after it is recovered")
        line = data[pos:nl]
        try:
            rec = json.loads(line)
        except ValueError:
            raise TamperedError(f"the log's record at byte {pos} is not JSON") from None
        if rec.get("kind") == ENTRY:
            entries.append(line)
            end_of_entries = nl + 1
        elif rec.get("kind") == CHECKPOINT:
            note, cosig, covered, covered_end = rec["note"], [], len(entries), end_of_entries
        elif rec.get("kind") == COSIGNATURE:
            cosig.append(rec["line"])
        pos = nl + 1
    return entries, note, cosig, covered, covered_end


def publish(log: Path, out: Path) -> PublishResult:
    """Publish (or update) ``log`` as tiles in ``out``; see the module docstring. One publisher at a time per
    folder (a lock beside the state): a second run at once is refused, never interleaved."""
    from qrng.lockfile import hold
    (out / STATE).parent.mkdir(parents=True, exist_ok=True)
    with hold(out / ".publisher" / "lock", f"tiles folder {out}"):
        return _publish(log, out)


def _load_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"size": 0, "offset": 0, "range": [], "edges": {}}
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        hashes = [*state["range"], *(h for v in state["edges"].values() for h in v)]
        if state["size"]:
            hashes.append(state["last_leaf"])
        if int(state["size"]) < 0 or int(state["offset"]) < 0 or any(int(k) < 0 for k in state["edges"]) \
                or any(len(bytes.fromhex(h)) != 32 for h in hashes):
            raise ValueError("out of range")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"{path}: the publisher's state is damaged ({type(exc).__name__}); publish into an "
                          "empty folder to start again") from None
    return state


def _publish(log: Path, out: Path) -> PublishResult:
    t0 = time.perf_counter()
    state_path = out / STATE
    state = _load_state(state_path)
    off = int(state["offset"])
    data = _unpublished(log, state)
    entries, note, cosig, covered, covered_end = _records(data)
    if note is None and state["size"] == 0:
        raise FormatError(f"{log}: no signed checkpoint to publish")
    if note is None:
        return PublishResult(state["size"], 0, 0, 0, time.perf_counter() - t0)
    if covered == 0:  # no new entry: cosignatures collected since the last publish still reach the checkpoint
        _republish_checkpoint(out, state, note, cosig)
        return PublishResult(state["size"], 0, 0, 0, time.perf_counter() - t0)
    cp = Checkpoint.parse(parse_note(note)[0])  # the publisher checks its own log's tree, not its signature
    old = int(state["size"])
    new = entries[:covered]
    if cp.size != old + len(new):
        raise FormatError(f"the log's latest checkpoint is for size {cp.size}, but {old} entries were published "
                          f"and {len(new)} follow: republish into an empty folder")
    too_long = next((i for i, e in enumerate(new) if len(e) > MAX_ENTRY), None)
    if too_long is not None:  # before anything is written
        raise FormatError(f"entry {old + too_long} is {len(new[too_long])} bytes: it does not fit an entry bundle "
                          f"(C2SP tlog-tiles: at most {MAX_ENTRY}); nothing was published")
    rng = CompactRange()
    rng.size, rng._stack = old, [bytes.fromhex(h) for h in state["range"]]  # noqa: SLF001 - restored state
    # the right edge of every level: the hashes of its partial tile (the published tiles hold them)
    edges: dict[int, list[bytes]] = {int(k): [bytes.fromhex(h) for h in v] for k, v in state["edges"].items()}
    hashes = [leaf_hash(e) for e in new]
    for h in hashes:
        rng.append(h)
    if rng.root() != cp.root:
        raise TamperedError(f"the checkpoint for size {cp.size} does not extend the published tree of size {old} "
                            "(the log was rewritten: a fork); nothing was published", index=old)
    bundles = _write_bundles(out, old, new)
    tiles = _write_tiles(out, old, hashes, edges)
    cp_text = note + "".join(s if s.endswith("\n") else s + "\n" for s in cosig)
    new_off = off + covered_end
    new_state = {"size": cp.size, "offset": new_off, "last_leaf": leaf_hash(new[-1]).hex(), "range":
                 [h.hex() for h in rng._stack], "edges": {str(k): [h.hex() for h in v] for k, v in edges.items()}}  # noqa: SLF001
    state_path.parent.mkdir(parents=True, exist_ok=True)
    _write_once(out / "checkpoint", cp_text.encode(), immutable=False)  # last: readers see a complete tree
    atomic_write(state_path, json.dumps(new_state).encode(), overwrite=True)
    return PublishResult(cp.size, len(new), tiles, bundles, time.perf_counter() - t0)


def _unpublished(log: Path, state: dict[str, Any]) -> bytes:
    """The log's bytes after the published entries (only those are read: O(new entries)), once the published
    prefix is found still there, byte for byte where it ends; a rewritten log raises TamperedError."""
    off = int(state["offset"])
    window = max(0, off - 2 * (MAX_ENTRY + 64))  # holds the last published entry line (at most MAX_ENTRY bytes)
    with open(log, "rb") as f:
        f.seek(window)
        before = f.read(off - window)
        data = f.read()
    if off:
        start = before.rfind(b"\n", 0, len(before) - 1) + 1
        if len(before) != off - window or before[-1:] != b"\n" \
                or leaf_hash(before[start:-1]).hex() != state["last_leaf"]:
            raise TamperedError(f"{log} no longer holds the {state['size']} entries published from it (the log was "
                                "rewritten: a fork); nothing was published", index=state["size"])
    return data


def _write_bundles(out: Path, old: int, new: list[bytes]) -> int:
    """Entry bundles (C2SP tlog-tiles): the partial last bundle of the published tree is completed, then new ones
    follow. Returns how many files were written."""
    written = 0
    first_bundle = old // WIDTH
    prior = parse_bundle(_read(out / entry_path(first_bundle, old % WIDTH)), old % WIDTH) if old % WIDTH else []
    pending = prior + new
    for k in range(0, len(pending), WIDTH):
        chunk = pending[k:k + WIDTH]
        idx = first_bundle + k // WIDTH
        written += _write_once(out / entry_path(idx, len(chunk)), bundle(chunk), immutable=len(chunk) == WIDTH)
    return written


def _write_tiles(out: Path, old: int, hashes: list[bytes], edges: dict[int, list[bytes]]) -> int:
    """Hash tiles, level by level: the new hashes at height 8L extend the level's right edge (``edges``, updated
    in place); every 256 make a full tile, whose subtree root is the next level's new hash. Returns how many
    files were written."""
    written = 0
    level, fresh, count_before = 0, hashes, old
    while True:
        first = count_before // WIDTH
        pending = edges.get(level, []) + fresh
        ups: list[bytes] = []
        for k in range(0, len(pending), WIDTH):
            chunk = pending[k:k + WIDTH]
            written += _write_once(out / tile_path(level, first + k // WIDTH, len(chunk)), b"".join(chunk),
                                   immutable=len(chunk) == WIDTH)
            if len(chunk) == WIDTH:
                ups.append(_perfect_root(chunk))
        rest = len(pending) % WIDTH
        edges[level] = pending[len(pending) - rest:] if rest else []
        if count_before + len(fresh) < WIDTH:
            return written
        level, fresh, count_before = level + 1, ups, count_before // WIDTH


def _republish_checkpoint(out: Path, state: dict[str, Any], note: str, cosig: list[str]) -> None:
    """The published tree's checkpoint again, with every cosignature the log now holds for it (a witness that
    answered after the last publish). Only a checkpoint of the published tree itself is written."""
    cp = Checkpoint.parse(parse_note(note)[0])
    rng = CompactRange()
    rng.size, rng._stack = int(state["size"]), [bytes.fromhex(h) for h in state["range"]]  # noqa: SLF001
    if cp.size != rng.size or rng.root() != cp.root:
        raise TamperedError(f"the log's latest checkpoint (size {cp.size}) is not the published tree's "
                            f"(size {rng.size}); nothing was published", index=min(cp.size, rng.size))
    _write_once(out / "checkpoint", (note + "".join(s if s.endswith("\n") else s + "\n" for s in cosig)).encode(),
                immutable=False)


def _perfect_root(hashes: list[bytes]) -> bytes:
    level = hashes
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _read(path: Path) -> bytes:
    return path.read_bytes()


MAX_FETCH = 1 << 24  # no tile, bundle or checkpoint comes near 16 MiB (a bundle: 256 entries of <= 64 KiB)


def _decode(body: bytes, encoding: str, where: str) -> bytes:
    """The body of an HTTP answer in ``Content-Encoding`` identity or gzip, bounded (a gzip bomb is refused)."""
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise TileUnavailable(f"{where}: Content-Encoding {encoding[:32]!r} (only gzip and identity are read)")
    import zlib
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, MAX_FETCH + 1)
    except zlib.error as exc:
        raise TamperedError(f"{where}: a gzip body that does not decompress ({exc})") from None
    if len(out) > MAX_FETCH or d.unconsumed_tail:
        raise TileUnavailable(f"{where}: decompresses to more than {MAX_FETCH} bytes")
    if not d.eof:
        raise TamperedError(f"{where}: a truncated gzip body")
    return out


class TileSource:
    """Tiles from a folder or an http(s):// URL prefix (a plain static server). Counts fetches and time."""

    def __init__(self, where: str, timeout: float = 10.0, deadline_s: float = 600.0) -> None:
        self.where = where.rstrip("/")
        self.http = urllib.parse.urlparse(where).scheme in ("http", "https")
        self.timeout = timeout
        # an overall deadline: a server that answers each fetch just in time cannot hold a verification for ever
        self.deadline = time.monotonic() + deadline_s
        self.fetches = 0
        self.seconds = 0.0
        self._checkpoint: bytes | None = None

    def get(self, rel: str) -> bytes:
        """The bytes at ``rel``. The checkpoint (the one mutable resource) is fetched once per TileSource: every
        use in one verification (its origin, the keys bound to its names, the verification itself, the state
        saved) is of the same bytes, never a second answer a server could change in between (issue 20)."""
        if rel == "checkpoint":
            if self._checkpoint is None:
                self._checkpoint = self._fetch(rel)
            return self._checkpoint
        return self._fetch(rel)

    def _fetch(self, rel: str) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TileUnavailable(f"{self.where}: the verification ran out of time (overall deadline) before "
                                  f"{rel} was fetched")
        t = time.perf_counter()
        self.fetches += 1
        try:
            if self.http:
                # C2SP tlog-tiles: clients SHOULD send "Accept-Encoding: gzip, identity", and logs MAY answer with
                # "Content-Encoding: gzip" with no negotiation at all, so a gzip answer is decoded either way
                req = urllib.request.Request(f"{self.where}/{rel}", headers={"Accept-Encoding": "gzip, identity"})
                with urllib.request.urlopen(req, timeout=min(self.timeout, left)) as r:
                    out: bytes = r.read(MAX_FETCH + 1)
                    encoding = (r.headers.get("Content-Encoding") or "identity").strip().lower()
                if len(out) > MAX_FETCH:
                    raise TileUnavailable(f"{self.where}/{rel}: larger than {MAX_FETCH} bytes")
                return _decode(out, encoding, f"{self.where}/{rel}")
            return (Path(self.where) / rel).read_bytes()
        except urllib.error.HTTPError as exc:
            raise TileUnavailable(f"{self.where}/{rel}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TileUnavailable(f"{self.where}/{rel}: {getattr(exc, 'reason', None) or exc}") from None
        finally:
            self.seconds += time.perf_counter() - t

    def __call__(self, rel: str) -> bytes:
        """A TileSource is a :data:`Fetch`: pass it (or any ``fetch(path) -> bytes``) to the verifiers."""
        return self.get(rel)


Fetch = Callable[[str], bytes]
"""How verification reads a log's tiles: the bytes at a C2SP tlog-tiles path ("checkpoint", "tile/0/x001/234",
"tile/entries/000"), or TileUnavailable. A folder, a static HTTP server (:class:`TileSource`), a mirror, a cache or a
test's dict all fit; the verifiers name no transport."""


class _Fetches:
    """One verification's use of a :data:`Fetch`: counts fetches and time, and reads the checkpoint once (every
    use of it in one verification is of the same bytes, whatever the fetch function does)."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self.fetches = 0
        self.seconds = 0.0
        self._checkpoint: bytes | None = None

    def get(self, rel: str) -> bytes:
        if rel == "checkpoint" and self._checkpoint is not None:
            return self._checkpoint
        t = time.perf_counter()
        self.fetches += 1
        try:
            out = self._fetch(rel)
        finally:
            self.seconds += time.perf_counter() - t
        if rel == "checkpoint":
            self._checkpoint = out
        return out

    def tile(self, level: int, index: int, width: int) -> bytes:
        return self.get(tile_path(level, index, width))


def served_bundle(src: _Fetches, index: int, width: int) -> list[bytes]:
    """An entry bundle as served; a malformed one is a tampered log (exit 1), not a usage error."""
    path = entry_path(index, width)
    try:
        return parse_bundle(src.get(path), width)
    except FormatError as exc:
        raise TamperedError(f"{path}: {exc}", index=index * WIDTH) from None


def _checkpoint(src: _Fetches, keys: list[Verifier], witnesses: list[Verifier], quorum: int,
                origin: str | None) -> tuple[Checkpoint, str, tuple[Verifier, ...]]:
    try:
        note = src.get("checkpoint").decode("utf-8")  # signed-note: notes MUST be valid UTF-8
    except UnicodeDecodeError:
        raise TamperedError("the served checkpoint is not valid UTF-8 (c2sp.org/signed-note)") from None
    try:
        text, _ = verify_note(note, keys)
        cp = Checkpoint.parse(text)
    except FormatError as exc:  # what a server serves is never a usage error of ours: a failed verification
        raise TamperedError(f"the served checkpoint is malformed: {exc}") from None
    if origin is not None and cp.origin != origin:
        raise TamperedError(f"the checkpoint is for origin {cp.origin!r}, not {origin!r}")
    cosigners: tuple[Verifier, ...] = ()
    ids = {(w.name, w.key_id) for w in witnesses}
    if any((s.name, s.key_id) in ids for s in parse_note(note)[1]):
        try:
            _, ok = verify_note(note, witnesses)
        except SignatureError as exc:  # a cosignature by a witness key given that does not verify
            raise TamperedError(f"the checkpoint (size {cp.size}): {exc}") from None
        cosigners = tuple(distinct_keys(ok))
    if len(cosigners) < quorum:
        raise TamperedError(f"the checkpoint (size {cp.size}) has {len(cosigners)} of the {quorum} required witness "
                            "cosignatures")
    return cp, note, cosigners


def _against_saved(tree: TreeLevels, cp: Checkpoint, saved: Checkpoint | None) -> None:
    """The auditor's memory: never accept a rolled-back or forked log (an RFC 9162 2.1.4 consistency proof from
    the tiles, verified against both signed roots)."""
    if saved is None:
        return
    if saved.origin != cp.origin:
        raise TamperedError(f"saved state is for origin {saved.origin!r}, the log is {cp.origin!r}")
    if cp.size < saved.size:
        raise TamperedError(f"rolled back: this auditor verified tree size {saved.size} before, the served "
                            f"checkpoint is for {cp.size}", index=cp.size)
    if saved.size == 0:
        return
    try:
        verify_consistency(saved.size, cp.size, saved.root, cp.root,
                           tree.consistency_proof(saved.size, cp.size) if saved.size < cp.size else [])
    except ProofError as exc:
        raise TamperedError(f"fork: the served tree is not consistent with the size-{saved.size} tree this "
                            f"auditor verified before ({exc})") from None


@dataclass(frozen=True)
class TilesVerified:
    checkpoint: Checkpoint
    note: str
    cosigners: tuple[Verifier, ...]
    entries: int
    fetches: int
    seconds: float
    entry_bytes: tuple[bytes, ...] = ()  # the verified entries (verify_tiles), for what the log itself records


def verify_tiles(fetch: Fetch, keys: list[Verifier], witnesses: list[Verifier] | None = None, quorum: int = 0,
                 origin: str | None = None, saved: Checkpoint | None = None) -> TilesVerified:
    """Everything: the signed checkpoint, every entry bundle (entries numbered and chained as in the JSON log),
    every hash tile equal to what the entries give, the root, and consistency with a saved checkpoint."""
    src = _Fetches(fetch)
    cp, note, cosigners = _checkpoint(src, keys, witnesses or [], quorum, origin)
    entries: list[bytes] = []
    for i in range(-(-cp.size // WIDTH)):
        width = min(WIDTH, cp.size - i * WIDTH)
        entries += served_bundle(src, i, width)
    prev = ""
    for i, e in enumerate(entries):
        rec = json.loads(e)
        if rec.get("kind") != ENTRY or rec.get("seq") != i or rec.get("prev") != prev:
            raise TamperedError(f"entry {i} in the bundles is not the log's entry {i} (changed, moved or deleted)",
                                index=i)
        prev = leaf_hash(e).hex()
    tree = TreeLevels([leaf_hash(e) for e in entries])
    if tree.root(cp.size) != cp.root:
        raise TamperedError(f"the entries do not give the checkpoint's root (size {cp.size})")
    level, count = 0, cp.size
    while count > 0:
        for index in range(-(-count // WIDTH)):
            width = min(WIDTH, count - index * WIDTH)
            want = b"".join(tree.stored(level * HEIGHT, index * WIDTH + k) for k in range(width))
            if src.tile(level, index, width) != want:
                raise TamperedError(f"{tile_path(level, index, width)} differs from the hashes of the entries "
                                    "(a tampered tile)", index=index * WIDTH << (level * HEIGHT))
        if count < WIDTH:
            break
        level, count = level + 1, count >> HEIGHT
    _against_saved(tree, cp, saved)
    return TilesVerified(cp, note, cosigners, len(entries), src.fetches, src.seconds, tuple(entries))


def prove_from_tiles(fetch: Fetch, index: int, keys: list[Verifier], witnesses: list[Verifier] | None = None,
                     quorum: int = 0, origin: str | None = None,
                     saved: Checkpoint | None = None) -> tuple[bytes, list[bytes], str, TilesVerified]:
    """One entry's bytes and inclusion proof from O(log n) tiles, verified against the signed checkpoint (and
    consistency with a saved checkpoint); raises unless everything verifies."""
    src = _Fetches(fetch)
    cp, note, cosigners = _checkpoint(src, keys, witnesses or [], quorum, origin)
    if not 0 <= index < cp.size:
        raise FormatError(f"entry {index} is not in the tree of size {cp.size}")
    tree = TiledTree(cp.size, src.tile)
    b, k = divmod(index, WIDTH)
    width = min(WIDTH, cp.size - b * WIDTH)
    entry = served_bundle(src, b, width)[k]
    try:
        proof = tree.inclusion_proof(index, cp.size)
    except FormatError as exc:
        raise TamperedError(f"a served tile is malformed: {exc}", index=index) from None
    try:
        verify_inclusion(index, cp.size, leaf_hash(entry), proof, cp.root)
    except ProofError as exc:
        raise TamperedError(f"entry {index} from the tiles does not verify against the signed checkpoint: {exc} "
                            "(a tampered tile or entry bundle)", index=index) from None
    _against_saved(tree, cp, saved)
    return entry, proof, note, TilesVerified(cp, note, cosigners, 1, src.fetches, src.seconds)
