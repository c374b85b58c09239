"""Serve a folder of C2SP tlog-tiles (``qrng audit publish``) with the headers the spec asks for: Python's static
file server (``http.server``), read-only, GET and HEAD only, with

* ``<prefix>/checkpoint``: ``Content-Type: text/plain; charset=utf-8``, and caching of a few seconds at most
  (tlog-tiles: "This endpoint is mutable, so its headers SHOULD prevent caching beyond a few seconds");
* ``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``: ``Content-Type: application/octet-stream``, cached for
  a long time when full (immutable), briefly when partial;
* the publisher's private state (``.publisher/``, dot files) and anything else: 404;
* at most 64 connections at once, each with a read timeout (qrng.httpbound).

Any static server that sets these headers serves the same log (nginx, a bucket, a CDN); docs/transparency.md has
the nginx lines. A plain ``python -m http.server`` serves ``checkpoint`` as ``application/octet-stream``."""

from __future__ import annotations

import posixpath
import urllib.parse
from http.server import SimpleHTTPRequestHandler
from typing import Any

from qrng.httpbound import BoundedHTTPServer

__all__ = ["TilesHandler", "headers_for", "serve"]

CHECKPOINT_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"


def headers_for(rel: str) -> dict[str, str] | None:
    """The headers for a path below the served folder (pure), or None: not a tiles resource (404). The folder
    may hold one log or several, each under its own prefix (``<prefix>/checkpoint``, ``<prefix>/tile/...``)."""
    parts = rel.split("/")
    if any(p.startswith(".") or not p for p in parts):
        return None
    if parts[-1] == "checkpoint":
        return {"Content-Type": CHECKPOINT_TYPE, "Cache-Control": "no-cache, max-age=5"}
    if "tile" not in parts or len(parts) - parts.index("tile") < 3:
        return None
    partial = any(p.endswith(".p") for p in parts)
    cache = "public, max-age=60" if partial else "public, max-age=31536000, immutable"
    return {"Content-Type": TILE_TYPE, "Cache-Control": cache}


class TilesHandler(SimpleHTTPRequestHandler):
    """http.server's static file handler, restricted to tiles and the checkpoint, with their headers."""

    server_version = "qrng-tiles"
    _headers: dict[str, str] | None = None

    def _route(self) -> bool:
        path = urllib.parse.urlsplit(self.path).path
        rel = posixpath.normpath(urllib.parse.unquote(path)).lstrip("/")
        self._headers = headers_for(rel)
        if self._headers is None:
            self.send_error(404, "not a tiles resource")
            return False
        return True

    def do_GET(self) -> None:
        if self._route():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._route():
            super().do_HEAD()

    def guess_type(self, path: Any) -> str:
        return (self._headers or {}).get("Content-Type", TILE_TYPE)

    def end_headers(self) -> None:
        if self._headers and "Cache-Control" in self._headers:
            self.send_header("Cache-Control", self._headers["Cache-Control"])
        super().end_headers()

    def list_directory(self, path: Any) -> None:
        self.send_error(404, "not a tiles resource")
        return None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


def serve(directory: str, host: str, port: int, ready: Any = None) -> None:
    """Serve ``directory`` on ``host:port`` until interrupted; ``ready(port)`` once listening."""
    import functools
    handler = functools.partial(TilesHandler, directory=directory)
    with BoundedHTTPServer((host, port), handler) as httpd:
        if ready is not None:
            ready(httpd.server_address[1])
        httpd.serve_forever(poll_interval=0.2)
