"""C2SP tlog-policy (https://c2sp.org/tlog-policy): which logs, which witnesses, and the quorum of cosignatures a
checkpoint needs. Pure: parse the text strictly (errors name the line), then decide whether a set of witnesses that
cosigned satisfies the quorum.

    log <vkey> [<url>]
    witness <name> <vkey> [<url>]
    group <name> all|any|<k> <name>...
    quorum <name>|none
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qrng.asciinum import is_ascii_decimal

from .errors import FormatError
from .note import ALG_ECDSA, ALG_ED25519, ALG_MLDSA44_COSIGNATURE, COSIGNATURE_ALGS, Verifier

LOG_ALGS = (ALG_ED25519, ALG_ECDSA, ALG_MLDSA44_COSIGNATURE)

__all__ = ["Policy", "PolicyWitness", "load_policy", "parse_policy"]


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    key: Verifier
    url: str | None


@dataclass(frozen=True)
class Policy:
    logs: tuple[tuple[Verifier, str | None], ...]
    witnesses: dict[str, PolicyWitness]
    groups: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    quorum: str = "none"

    def satisfied(self, cosigned: set[str]) -> bool:
        """Whether the witnesses ``cosigned`` (policy names, from :meth:`names_of` keys) meet the quorum."""
        return self.quorum == "none" or self._met(self.quorum, cosigned)

    def _met(self, name: str, cosigned: set[str]) -> bool:
        if name in self.witnesses:
            return name in cosigned
        k, members = self.groups[name]
        return sum(self._met(m, cosigned) for m in members) >= k

    def witness_keys(self) -> list[Verifier]:
        return [w.key for w in self.witnesses.values()]

    def names_of(self, keys: Iterable[Verifier]) -> set[str]:
        """Policy names of the witnesses whose keys are among ``keys`` (the keys whose cosignatures verified).
        tlog-policy: "Both logs and witnesses are identified primarily by their public keys"; a key is matched by
        its name, key ID, type and public key together, never by its name alone (two witnesses may share one)."""
        have = set(keys)
        return {n for n, w in self.witnesses.items() if w.key in have}

    def met_by(self, keys: Iterable[Verifier]) -> bool:
        """Whether cosignatures by these keys (each verified) meet the quorum."""
        return self.satisfied(self.names_of(keys))


def parse_policy(text: str, where: str = "policy") -> Policy:
    logs: list[tuple[Verifier, str | None]] = []
    witnesses: dict[str, PolicyWitness] = {}
    groups: dict[str, tuple[int, tuple[str, ...]]] = {}
    quorum: str | None = None
    seen_keys: set[bytes] = set()
    member_of: dict[str, str] = {}
    for n, raw in enumerate(text.split("\n"), 1):
        at = f"{where}:{n}"
        if any(ord(c) < 0x20 and c != "\t" for c in raw) or "\x7f" in raw:
            raise FormatError(f"{at}: control character")
        line = raw.strip(" \t")
        if not line or line.startswith("#"):
            continue
        # tlog-policy: fields are separated by ASCII space and tab only (str.split() would also split on U+00A0,
        # U+2003 ...); octets with the high bit set are opaque parts of a field
        f = [x for x in line.replace("\t", " ").split(" ") if x]
        kind = f[0]
        if kind == "log":
            if len(f) not in (2, 3):
                raise FormatError(f"{at}: expected `log <vkey> [<url>]`")
            key = _key(f[1], at)
            if key.alg not in LOG_ALGS:  # tlog-checkpoint: Ed25519, ECDSA or ML-DSA-44; never a 0x04 cosigner key
                raise FormatError(f"{at}: a log key signs checkpoints (type 0x01, 0x02 or 0x06); this is type "
                                  f"{key.alg:#04x}")
            if key.public_key in seen_keys:
                raise FormatError(f"{at}: duplicate key")
            seen_keys.add(key.public_key)
            logs.append((key, f[2] if len(f) == 3 else None))
        elif kind == "witness":
            if len(f) not in (3, 4):
                raise FormatError(f"{at}: expected `witness <name> <vkey> [<url>]`")
            name = f[1]
            if name in witnesses or name in groups or name == "none":
                raise FormatError(f"{at}: name {name!r} is already defined (or reserved)")
            key = _key(f[2], at)
            if key.alg not in COSIGNATURE_ALGS:
                raise FormatError(f"{at}: witness {name} must have a cosignature (type 0x04) key (or ML-DSA-44, "
                                  "type 0x06)")
            if key.public_key in seen_keys:
                raise FormatError(f"{at}: duplicate key")
            seen_keys.add(key.public_key)
            witnesses[name] = PolicyWitness(name, key, f[3] if len(f) == 4 else None)
        elif kind == "group":
            if len(f) < 4:
                raise FormatError(f"{at}: expected `group <name> all|any|<k> <name>...`")
            name, k_text, members = f[1], f[2], tuple(f[3:])
            if name in witnesses or name in groups or name == "none":
                raise FormatError(f"{at}: name {name!r} is already defined (or reserved)")
            unknown = [m for m in members if m not in witnesses and m not in groups]
            if unknown:
                raise FormatError(f"{at}: {unknown[0]!r} is not defined on a line before")
            if len(set(members)) != len(members):
                raise FormatError(f"{at}: a member is listed twice")
            again = next((m for m in members if m in member_of), None)
            if again is not None:  # tlog-policy: "Each defined name can be listed as a group member at most once"
                raise FormatError(f"{at}: {again!r} is already a member of group {member_of[again]!r}")
            member_of.update({m: name for m in members})
            if k_text == "all":
                k = len(members)
            elif k_text == "any":
                k = 1
            elif is_ascii_decimal(k_text) and len(k_text) < 6 and 1 <= int(k_text) <= len(members):
                k = int(k_text)
            else:
                raise FormatError(f"{at}: threshold {k_text!r} must be all, any or 1..{len(members)}")
            groups[name] = (k, members)
        elif kind == "quorum":
            if len(f) != 2:
                raise FormatError(f"{at}: expected `quorum <name>`")
            if quorum is not None:
                raise FormatError(f"{at}: a second quorum line")
            if f[1] != "none" and f[1] not in witnesses and f[1] not in groups:
                raise FormatError(f"{at}: quorum {f[1]!r} is not defined on a line before")
            quorum = f[1]
        else:
            raise FormatError(f"{at}: unknown line {kind!r} (log, witness, group, quorum)")
    if quorum is None:
        raise FormatError(f"{where}: no quorum line (write `quorum none` for no witnesses)")
    return Policy(tuple(logs), witnesses, groups, quorum)


def load_policy(path: str | Path) -> Policy:
    """A policy file; errors name the file (and line). Octets with the high bit set are opaque, as the spec says:
    they are kept (surrogate-escaped), never a decoding error."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read the policy ({exc.strerror})") from None
    if len(data) > 1 << 20:
        raise FormatError(f"{path}: larger than 1 MiB; not a policy file")
    return parse_policy(data.decode("utf-8", "surrogateescape"), str(path))


def _key(text: str, at: str) -> Verifier:
    try:
        return Verifier.parse(text)
    except FormatError as exc:
        raise FormatError(f"{at}: {exc}") from None
