"""qrngd: one daemon per entropy source, serving full-entropy seed material to every process on the host over a
Unix socket (docs/daemon-protocol.md). This package: the wire protocol (pure), the server, and the client."""
