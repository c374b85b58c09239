"""The printable transcript: every step, its parameters and outputs with SHA-256 fingerprints, also as
PGP word lists to read aloud, and sign-off lines for each witness. Markdown and HTML, from the log."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

__all__ = ["pgp_words", "render_html", "render_markdown"]

_WORDS: list[str] = []


def _load_words() -> list[str]:
    if not _WORDS:
        lines = [w for w in (Path(__file__).with_name("pgpwords.txt").read_text().splitlines()) if w and w[0] != "#"]
        if len(lines) != 512:
            raise RuntimeError("pgpwords.txt must hold 512 words")
        _WORDS.extend(lines)
    return _WORDS


def pgp_words(data: bytes) -> str:
    """Bytes at even positions take the even list, at odd positions the odd list (PGP word list)."""
    words = _load_words()
    return " ".join(words[b + (256 if i % 2 else 0)] for i, b in enumerate(data))


def _rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for e in entries:
        s = e["step"]
        if s not in steps:
            steps[s] = {"step": s, "events": [], "files": {}}
            order.append(s)
        steps[s]["events"].append(e)
        steps[s]["files"].update(e.get("files", {}))
    return [steps[s] for s in order]


def _summary(e: dict[str, Any]) -> str:
    data = {k: v for k, v in e.get("data", {}).items() if k not in ("template", "statement")}
    text = json.dumps(data, sort_keys=True)
    return text if len(text) < 300 else text[:297] + "..."


def render_markdown(meta: dict[str, Any], entries: list[dict[str, Any]], checkpoint: str,
                    witnesses: list[str]) -> str:
    out = [f"# Key ceremony transcript: {meta['ceremony']}", "",
           f"- Policy: {meta['policy']}", f"- Profile: {meta['profile']} ({meta['module']}, token {meta['token']})",
           f"- Entropy source: {meta['source']}", f"- Audit log origin: {meta['origin']}",
           f"- Log verifier key: `{meta['log_key']}`", ""]
    if meta.get("simulator"):
        out += ["> **Rehearsal with the QRNG SIMULATOR**: the entropy source is a software model, not a device.", ""]
    for row in _rows(entries):
        out += [f"## Step `{row['step']}`", ""]
        for e in row["events"]:
            out.append(f"- {e['time']} `{e['event']}` by {e['actor']}: {_summary(e)}")
        if row["files"]:
            out += ["", "| file | SHA-256 | PGP words (first 8 bytes) |", "|---|---|---|"]
            for name, digest in sorted(row["files"].items()):
                out.append(f"| {name} | `{digest}` | {pgp_words(bytes.fromhex(digest)[:8])} |")
        out += ["", "Operator initials: ________   Witness initials: ________", ""]
    out += ["## Log checkpoint at transcript time", "", "```", checkpoint.rstrip("\n"), "```", "",
            "## Witness sign-off", ""]
    for w in witnesses:
        out += [f"- {w}: signature ______________________  date ____________", ""]
    return "\n".join(out) + "\n"


def render_html(markdown: str, title: str) -> str:
    body = []
    in_code = False
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            body.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            body.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{html.escape(c.strip('`'))}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<p>&bull; {html.escape(line[2:])}</p>")
        elif line.startswith("> "):
            body.append(f"<p class='warn'>{html.escape(line[2:])}</p>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}td{border:1px solid #999;padding:2px 6px;"
             "font-family:monospace;font-size:85%}table{border-collapse:collapse}.warn{background:#fee;padding:6px}"
             "pre{background:#eee;padding:6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
