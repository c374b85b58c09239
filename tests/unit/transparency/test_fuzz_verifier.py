"""The audit verifier on random mutations of a real signed log (issue 10): every mutation is detected (an
AuditError, never another exception) or provably harmless (it verifies to exactly the original's entries, latest
checkpoint and cosigners). Bounded in `make test`; QRNG_FUZZ_EXAMPLES runs longer."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transparency.errors import AuditError
from transparency.note import Verifier
from transparency.verify import verify_log

GOLDEN = Path(__file__).resolve().parents[2] / "system" / "transparency" / "golden"
LOG = (GOLDEN / "valid.log").read_bytes()
KEY = Verifier.parse((GOLDEN / "log.pub").read_text().strip())
WITNESS = Verifier.parse((GOLDEN / "witness.pub").read_text().strip())
ORIGINAL = verify_log(LOG, [KEY], [WITNESS], 1)
FUZZ = settings(max_examples=int(os.environ.get("QRNG_FUZZ_EXAMPLES", "300")), deadline=None,
                derandomize=os.environ.get("QRNG_FUZZ_RANDOM") is None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutation(draw) -> bytes:
    lines = LOG.split(b"\n")[:-1]
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["flip", "delete", "duplicate", "swap", "insert", "truncate", "splice"]))
        if action == "flip" and lines[i]:
            line = bytearray(lines[i])
            j = draw(st.integers(0, len(line) - 1))
            line[j] = draw(st.integers(0, 255))
            lines[i] = bytes(line)
        elif action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif action == "insert":
            lines.insert(i, draw(st.binary(max_size=80)))
        elif action == "truncate":
            lines = lines[:i]
        else:  # splice part of one line into another
            j = draw(st.integers(0, len(lines) - 1))
            cut = draw(st.integers(0, max(0, len(lines[j]) - 1)))
            lines[i] = lines[i][:cut] + lines[j][cut:]
    data = b"\n".join(lines) + (b"\n" if lines else b"")
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]  # a torn tail
    return data


@FUZZ
@given(data=mutation())
def test_every_mutation_is_detected_or_harmless(data: bytes) -> None:
    try:
        r = verify_log(data, [KEY], [WITNESS], 1)
    except AuditError:
        return
    assert (r.entries, r.latest.text(), tuple(r.cosigners)) == \
        (ORIGINAL.entries, ORIGINAL.latest.text(), tuple(ORIGINAL.cosigners)), "an accepted mutation changed the log"
