#!/usr/bin/python3 -I
"""qrng (Debian package qrngd): the command and the daemon. The project's Python packages and their dependencies
are bundled in /usr/lib/qrngd/python; -I keeps PYTHONPATH and the user's site-packages out."""
import sys

sys.path.insert(0, "/usr/lib/qrngd/python")
from qrng_cli import main

sys.exit(main())
