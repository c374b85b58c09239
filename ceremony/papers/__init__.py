"""Ceremony papers that people read, initial and sign.

* the **run sheet** (:mod:`.sheet`), printed before the ceremony from the same plan the engine runs: one page per
  phase, one row per step (who acts, what the operator says and does, what the screen will show and what to
  compare it with, a time column and initials boxes), the script and policy digests with their PGP words on the
  cover, and a sign-off page;
* the **transcript** (:mod:`.record`), rendered after the ceremony from its verified log only: cover with the
  final cosigned checkpoint, a summary of keys, certificates, CRLs and entropy, one plain-language section per
  step, charts, and the sign-off page;
* the **auditor's report** (:mod:`.report`) of ``qrng ceremony verify --report``: each check, how it was made,
  and its result.

The models are pure frozen dataclasses; :mod:`.charts` draws with matplotlib (SVG) and :mod:`.render` fills the
jinja2 templates and prints PDF through WeasyPrint. Rendering never changes what the log says.
"""

from .pgp import pgp_words

__all__ = ["pgp_words"]
