"""The wheel's build step (``make wheel``: ``python -m build --wheel --no-isolation``, after ``make native``).

pyproject.toml holds the metadata; this adds what a wheel needs beyond the Python files, built by the project's own
builders: the compiled kernels qrng._native with the LGPL gf2x build beside them (qrng/.libs/), and both PKCS#11
modules in qrng_pkcs11/lib/ (the in-process one finds its interpreter and site-packages from where it is
installed). The wheel is for this platform: CPython 3.11 on Debian 12 x86-64 (it links the system's libcrypto,
libdivsufsort and the build interpreter's libpython)."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution


class PlatformDistribution(Distribution):
    """Compiled parts inside: a platform wheel, never "py3-none-any"."""

    def has_ext_modules(self) -> bool:
        return True


class BuildWithNative(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # a checkout uses build/ and qrng/_native*.so made by `make native`
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # the builders are in this tree, not installed
        from qrng._native_build import build as build_native
        from qrng_pkcs11.build import build as build_module
        from qrng_pkcs11.build import build_client
        lib = Path(self.build_lib).resolve()
        build_native(force=True, dest_dir=lib / "qrng", wheel=True)
        build_module(force=True, relocatable_to=lib / "qrng_pkcs11" / "lib" / "libqrng-pkcs11.so")
        build_client(force=True, target=lib / "qrng_pkcs11" / "lib" / "libqrng-pkcs11-qrngd.so")


setup(distclass=PlatformDistribution, cmdclass={"build_py": BuildWithNative})
