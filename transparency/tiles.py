"""The audit log as C2SP tlog-tiles (https://c2sp.org/tlog-tiles): pure layout and tree logic, no I/O.

* A hash tile ``tile/<L>/<N>[.p/<W>]`` lists W (1..256) consecutive hashes at tree height 8L, starting at node
  N*256 of that height: at level 0 the RFC 9162 leaf hashes, at level L the roots of the perfect subtrees of
  2^(8L) leaves. N is written in 3-digit groups, all but the last prefixed ``x`` (1234067 -> ``x001/x234/067``).
  A full tile (256 hashes, 8,192 bytes) never changes; a partial one ``.p/W`` is the right edge of one tree size.
* An entry bundle ``tile/entries/<N>[.p/<W>]`` holds entries N*256 .. N*256+W-1, each a big-endian uint16 length
  then the entry's bytes (so an entry is at most 65,535 bytes; the publisher refuses longer ones).
* ``checkpoint`` is the signed note (C2SP tlog-checkpoint) with its witness cosignatures.

:class:`TiledTree` answers RFC 9162 inclusion and consistency proofs from a tile reader, touching O(log n) tiles,
and hashes every tile it reads against the hashes above it only through the proof it is used in: a proof built
from a tampered tile does not verify against the signed root, so no tile is ever trusted unverified."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator

from qrng.asciinum import is_ascii_decimal

from .errors import FormatError
from .merkle import TreeLevels, node_hash

__all__ = ["HEIGHT", "MAX_ENTRY", "WIDTH", "TiledTree", "bundle", "entry_path", "parse_bundle", "parse_tile_path",
           "tile_hashes", "tile_path", "tiles_for"]

HEIGHT = 8
WIDTH = 1 << HEIGHT   # hashes (or entries) in a full tile
MAX_ENTRY = 0xFFFF


def _index(n: int) -> str:
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int, index: int, width: int = WIDTH) -> str:
    if not 1 <= width <= WIDTH:
        raise ValueError(f"tile width {width}")
    return f"tile/{level}/{_index(index)}" + (f".p/{width}" if width < WIDTH else "")


def entry_path(index: int, width: int = WIDTH) -> str:
    if not 1 <= width <= WIDTH:
        raise ValueError(f"bundle width {width}")
    return f"tile/entries/{_index(index)}" + (f".p/{width}" if width < WIDTH else "")


def parse_tile_path(path: str) -> tuple[str, int, int]:
    """(level or "entries", index, width) of a tile path; FormatError for anything else (a hostile name)."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise FormatError(f"{path!r} is not a tile path")
    level, rest = parts[1], parts[2:]
    width = WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not is_ascii_decimal(rest[-1]) or not 1 <= int(rest[-1]) < WIDTH:
            raise FormatError(f"{path!r}: bad partial width")
        width = int(rest[-1])
        rest = rest[:-2] + [rest[-2][:-2]]
    if any(len(g) != 4 or g[0] != "x" or not is_ascii_decimal(g[1:], True) for g in rest[:-1]) \
            or len(rest[-1]) != 3 or not is_ascii_decimal(rest[-1], True):
        raise FormatError(f"{path!r}: bad tile index")
    if level != "entries" and (not is_ascii_decimal(level) or int(level) > 63):  # tlog-tiles: 0 to 63
        raise FormatError(f"{path!r}: bad tile level")
    index = int("".join(g.lstrip("x") for g in rest))
    return level, index, width


def tiles_for(size: int) -> Iterator[tuple[int, int, int]]:
    """(level, index, width) of every hash tile of a tree of ``size`` leaves."""
    level = 0
    count = size
    while count > 0:
        for index in range(-(-count // WIDTH)):
            yield level, index, min(WIDTH, count - index * WIDTH)
        if count < WIDTH:
            break
        level += 1
        count >>= HEIGHT


def tile_hashes(tree: TreeLevels, level: int, index: int, width: int) -> bytes:
    """The bytes of a hash tile, from a tree held in memory."""
    h = level * HEIGHT
    return b"".join(tree.stored(h, index * WIDTH + k) for k in range(width))


def bundle(entries: Iterable[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise FormatError(f"an entry of {len(e)} bytes does not fit an entry bundle (at most {MAX_ENTRY})")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def parse_bundle(data: bytes, width: int) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise FormatError("entry bundle: truncated length")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise FormatError("entry bundle: truncated entry")
        out.append(data[pos:pos + n])
        pos += n
    if len(out) != width:
        raise FormatError(f"entry bundle: {len(out)} entries, {width} expected")
    return out


class TiledTree(TreeLevels):
    """A tree of ``size`` leaves whose stored hashes come from tiles: ``read(level, index, width)`` returns a
    hash tile's bytes. Proofs (inclusion_proof, consistency_proof, root) are TreeLevels' own."""

    def __init__(self, size: int, read: Callable[[int, int, int], bytes]) -> None:
        self.size = size
        self._read = read
        self._tiles: dict[tuple[int, int], bytes] = {}

    def _tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._tiles:
            count = self.size >> (level * HEIGHT)
            width = min(WIDTH, count - index * WIDTH)
            data = self._read(level, index, width)
            if len(data) != 32 * width:
                raise FormatError(f"{tile_path(level, index, width)}: {len(data)} bytes, {32 * width} expected")
            self._tiles[key] = data
        return self._tiles[key]

    def stored(self, height: int, index: int) -> bytes:
        level, rem = divmod(height, HEIGHT)
        if rem == 0:
            t = self._tile(level, index // WIDTH)
            k = index % WIDTH
            return t[32 * k:32 * k + 32]
        # a node between tile levels: the perfect subtree over 2^rem hashes of the tile below
        return node_hash(self.stored(height - 1, 2 * index), self.stored(height - 1, 2 * index + 1))

    @property
    def tiles_read(self) -> int:
        return len(self._tiles)
