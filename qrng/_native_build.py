"""Builds qrng._native from the C files in csrc/ (``python -m qrng._native_build [--force] [--config C]``).

The C sources are compiled on their own with ``-Wall -Wextra -Werror`` and linked into a small cffi extension
whose declarations (the cdef) are the headers themselves. Two configurations:

* ``fft``: against the LGPL, PCLMULQDQ build of gf2x in build/gf2x (scripts/build_gf2x.sh) with its FFT
  interface: Toeplitz plans cache the seed's transform and each block is a middle product.
* ``system``: against the system libgf2x, full carry-less product per block (the fallback).

``auto`` picks ``fft`` when build/gf2x has it. The build is redone when a C file, a header, the configuration or
the library changes (a content hash), not when this script is edited.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = ("toeplitz.c", "ctr_drbg.c", "conditioning.c", "sp80090b_predictors.c", "sp80090b_iid.c", "sp80090b_tuples.c")
HEADERS = ("toeplitz.h", "ctr_drbg.h", "conditioning.h", "sp80090b_predictors.h", "sp80090b_iid.h", "sp80090b_tuples.h")
WARNINGS = ("-Wall", "-Wextra", "-Werror")
GF2X_LOCAL = ROOT / "build" / "gf2x"


@dataclass(frozen=True)
class Config:
    """How the kernels are compiled and linked."""

    name: str
    defines: tuple[str, ...]
    include_dirs: tuple[str, ...]
    library_dirs: tuple[str, ...]
    libraries: tuple[str, ...]
    extra_flags: tuple[str, ...] = ()


def config(name: str = "auto") -> Config:
    has_fft = (GF2X_LOCAL / "lib" / "libgf2x-fft.so").exists() and (GF2X_LOCAL / "lib" / "libgf2x.so").exists()
    if name == "auto":
        name = "fft" if has_fft else "system"
    if name == "fft":
        if not has_fft:
            raise SystemExit("native build: build/gf2x has no FFT library; run scripts/build_gf2x.sh first")
        local = str(GF2X_LOCAL)
        # gf2x's FFT header declares array parameters that GCC 12 flags; the unused-macro keeps its statics quiet
        return Config("fft", ("QRNG_GF2X_FFT", "GF2X_MAYBE_UNUSED=__attribute__((unused))"),
                      (f"{local}/include",), (f"{local}/lib",), ("gf2x-fft", "gf2x", "crypto", "divsufsort", "m"),
                      ("-Wno-array-parameter",))
    if name == "system":
        return Config("system", (), (), (), ("gf2x", "crypto", "divsufsort", "m"))
    raise SystemExit(f"native build: unknown configuration {name!r} (auto, fft, system)")


def cdef_from_headers() -> str:
    """The cdef is the headers: comments and preprocessor lines removed, declarations kept as written."""
    text = "\n".join((CSRC / h).read_text() for h in HEADERS)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _fingerprint(cfg: Config) -> str:
    h = hashlib.sha256(json.dumps(cfg.__dict__, sort_keys=True).encode())
    for name in SOURCES + HEADERS:
        h.update(name.encode() + b"\0" + (CSRC / name).read_bytes())
    for d in cfg.library_dirs:
        for lib in sorted(Path(d).glob("libgf2x*.so")):
            h.update(lib.name.encode() + lib.read_bytes()[:4096] + str(lib.stat().st_size).encode())
    h.update(sys.version.encode())
    return h.hexdigest()


def _compile(cfg: Config, objdir: Path) -> list[str]:
    objdir.mkdir(parents=True, exist_ok=True)
    objects = []
    cc = sysconfig.get_config_var("CC") or "cc"
    for name in SOURCES:
        obj = objdir / (name[:-2] + ".o")
        cmd = [*cc.split(), "-c", "-O2", "-fPIC", *WARNINGS, *cfg.extra_flags,
               *(f"-D{d}" for d in cfg.defines), f"-I{CSRC}", *(f"-I{d}" for d in cfg.include_dirs),
               str(CSRC / name), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"native build ({cfg.name}): {name} failed to compile\n{r.stderr}")
        objects.append(str(obj))
    return objects


def build(force: bool = False, name: str = "auto", dest_dir: Path | None = None, wheel: bool = False) -> Path:
    """Build qrng._native in configuration ``name`` into ``dest_dir`` (default: the qrng package). ``wheel``: the
    gf2x libraries are copied beside it into ``dest_dir/.libs`` and found there ($ORIGIN), not in build/gf2x."""
    cfg = config(name)
    dest_dir = dest_dir or ROOT / "qrng"
    work = ROOT / "build" / "native" / cfg.name if dest_dir == ROOT / "qrng" else \
        ROOT / "build" / "wheel-native" / cfg.name if wheel else dest_dir / "work"
    stamp = work / "stamp"
    fp = _fingerprint(cfg)
    existing = sorted(dest_dir.glob("_native.*.so"))
    if existing and not force and stamp.exists() and stamp.read_text() == fp:
        return existing[0]
    objects = _compile(cfg, work / "obj")
    ffi = FFI()
    ffi.cdef(cdef_from_headers())
    ffi.set_source("qrng._native", "".join(f'#include "{h}"\n' for h in HEADERS),
                   include_dirs=[str(CSRC), *cfg.include_dirs], library_dirs=list(cfg.library_dirs),
                   libraries=list(cfg.libraries), extra_objects=objects, extra_compile_args=["-O2"],
                   extra_link_args=["-Wl,-rpath,$ORIGIN/.libs"] if wheel else
                   [f"-Wl,-rpath,{d}" for d in cfg.library_dirs])
    built = Path(ffi.compile(tmpdir=str(work / "cffi"), target=None, verbose=False))
    dest = dest_dir / built.name
    for old in existing:
        old.unlink()
    tmp = dest.with_suffix(".so.tmp")
    shutil.copyfile(built, tmp)
    tmp.replace(dest)
    if wheel:
        libs = dest_dir / ".libs"
        libs.mkdir(exist_ok=True)
        for d in cfg.library_dirs:  # the SONAMEs the extension asks for (libgf2x.so.3, libgf2x-fft.so.3)
            for lib in Path(d).glob("libgf2x*.so.[0-9]"):
                shutil.copyfile(lib.resolve(), libs / lib.name)
                # libtool's RUNPATH names the build folder: beside each other, they find each other ($ORIGIN)
                if shutil.which("chrpath") and subprocess.run(["chrpath", "-l", str(libs / lib.name)],
                                                              capture_output=True).returncode == 0:
                    subprocess.run(["chrpath", "-r", "$ORIGIN", str(libs / lib.name)], check=True,
                                   capture_output=True)
        if cfg.name == "fft":  # the LGPL's terms travel with the library (source: Debian's gf2x source package)
            shutil.copyfile("/usr/share/common-licenses/LGPL-2.1", libs / "LICENSE.gf2x")
            (libs / "README.gf2x").write_text(
                "libgf2x.so.3 and libgf2x-fft.so.3: gf2x, LGPL-2.1+ (LICENSE.gf2x), built by scripts/build_gf2x.sh of "
                "qrng-ceremony from Debian 12's gf2x source package (`apt-get source gf2x`) with its "
                "toom-gpl-placeholder.c in place of toom-gpl.c, the LGPL configuration.\n")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fp)
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qrng._native_build", description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild even when nothing changed")
    p.add_argument("--config", default="auto", choices=("auto", "fft", "system"),
                   help="fft: LGPL PCLMULQDQ gf2x with its FFT interface; system: the system libgf2x; auto: fft "
                        "when built")
    p.add_argument("--dest", type=Path, help="write the extension here instead of into the qrng package (tests)")
    a = p.parse_args(argv)
    print(build(force=a.force, name=a.config, dest_dir=a.dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
