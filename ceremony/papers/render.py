"""Papers to HTML (jinja2, print CSS) and to PDF (WeasyPrint). The HTML is self-contained: styles and the SVG
charts are inline, so the file can be opened, printed or archived on its own. The format follows the file name:
``.html`` or ``.pdf``; anything else is refused before any work."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qrng.errors import UsageError

from .record import Transcript
from .report import AuditReport
from .sheet import RunSheet

__all__ = ["FORMATS", "PaperError", "check_format", "render", "render_html"]

FORMATS = (".html", ".pdf")
_TEMPLATES = Path(__file__).with_name("templates")


class PaperError(UsageError):
    """A paper cannot be made: unknown format, or the renderer is missing (names which and how to get it)."""


def check_format(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise PaperError(f"{what} {path}: the file name must end in .html or .pdf (the format follows it)")
    return suffix


def _env() -> Any:
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["thousands"] = lambda n: f"{n:,}"
    return env


def render_html(doc: RunSheet | Transcript | AuditReport, version: str = "") -> str:
    from markupsafe import Markup

    from .charts import estimator_svg, health_svg
    css = (_TEMPLATES / "print.css").read_text()
    if isinstance(doc, RunSheet):
        template, title = "sheet.html.j2", f"Run sheet: {doc.ceremony}"
        extra: dict[str, Any] = {}
    elif isinstance(doc, Transcript):
        template, title = "transcript.html.j2", f"Transcript: {doc.ceremony}"
        extra = {"estimator_charts": [(c, Markup(estimator_svg(c))) for c in doc.estimators],
                 "health_charts": [(c, Markup(health_svg(c))) for c in doc.health]}
    else:
        template, title = "report.html.j2", f"Auditor's report: {doc.ceremony}"
        extra = {}
    html: str = _env().get_template(template).render(doc=doc, title=title, css=Markup(css), version=version, **extra)
    return html


def render(doc: RunSheet | Transcript | AuditReport, suffix: str, version: str = "") -> bytes:
    """The paper as the bytes of an HTML or PDF file."""
    html = render_html(doc, version)
    if suffix == ".html":
        return html.encode()
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango libraries WeasyPrint loads are missing
        raise PaperError(f"PDF needs WeasyPrint and Pango ({exc}); `make provision` installs them, "
                         "or write .html") from None
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    pdf: bytes = weasyprint.HTML(string=html, base_url=str(_TEMPLATES)).write_pdf()
    return pdf
