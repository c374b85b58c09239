"""qrngd: one daemon per entropy source, serving full-entropy seed material to every process on the host over a
Unix socket (docs/daemon-protocol.md). This package: the wire protocol (protocol.py, pure), the configuration
(config.py), a source and its pool (pool.py), the daemon's state and answers (state.py), the Unix transport
(unix.py) and mutual TLS (tls.py), run(config) (run.py), readiness for systemd (sdnotify.py), the client, the
metrics, the raw-sample ring, the kernel feed, the event log and the history. The C module that serves consumers
from it is csrc/token/ with csrc/qrngd_client/."""
