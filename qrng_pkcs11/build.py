"""Build the two PKCS#11 modules (``python -m qrng_pkcs11.build [--force] [--qrngd]``).

Both are the C token core (csrc/token/: slot, sessions, login, objects, locking, the call log) over a backend:
build/libqrng-pkcs11.so over csrc/pkcs11/module.c (the entropy pipeline in an embedded Python, a cffi
embedding whose Python half is qrng_pkcs11/_boundary.py), build/libqrng-pkcs11-qrngd.so over
csrc/qrngd_client/ (C only). Generated from the one table in ckdefs.FUNCTIONS, so they cannot drift from it:

* ``qrng_pkcs11.h``: the PKCS#11 types, the return codes the C uses, the 68-slot function list and, for the
  in-process module, the Python entries ``py_backend_*`` (cffi ``extern "Python+C"``, so module.c can call them);
* ``qrng_pkcs11_stubs.c``: typed stubs of the functions the token does not implement
  (CKR_CRYPTOKI_NOT_INITIALIZED before C_Initialize, CKR_FUNCTION_NOT_SUPPORTED after;
  C_GetFunctionStatus / C_CancelFunction: CKR_FUNCTION_NOT_PARALLEL, 5.17) and the function list itself;
* ``qrng_ckconst.h``: every CK* constant of ckdefs as a C macro.

Every C file is compiled on its own with ``-Wall -Wextra -Werror``. A build is redone when a C file, the table
or the Python it embeds changes (a content hash), not when this script is edited.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from cffi import FFI

from . import ckdefs as ck

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc" / "pkcs11"
BUILD = ROOT / "build"
TARGET = BUILD / "libqrng-pkcs11.so"
HEADER = BUILD / "qrng-pkcs11.h"
WARNINGS = ("-Wall", "-Wextra", "-Werror")
TOKEN_SRC = ROOT / "csrc" / "token"
TOKEN_SOURCES = (TOKEN_SRC / "token.c", TOKEN_SRC / "objects.c", TOKEN_SRC / "calllog.c")
TOKEN_HEADERS = (TOKEN_SRC / "token.h", TOKEN_SRC / "internal.h")
# the functions the token core implements in C (both modules); the others are generated stubs
TOKEN_IN_C = frozenset({
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList", "C_GetSlotInfo",
    "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_WaitForSlotEvent", "C_OpenSession",
    "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo", "C_Login", "C_Logout", "C_FindObjectsInit",
    "C_FindObjects", "C_FindObjectsFinal", "C_GetAttributeValue", "C_GetObjectSize", "C_SeedRandom",
    "C_GenerateRandom"})
# the C codes module.c and the stubs return themselves
C_CODES = ("CKR_OK", "CKR_GENERAL_ERROR", "CKR_ARGUMENTS_BAD", "CKR_CANT_LOCK", "CKR_FUNCTION_NOT_SUPPORTED",
           "CKR_FUNCTION_NOT_PARALLEL", "CKR_CRYPTOKI_NOT_INITIALIZED", "CKR_CRYPTOKI_ALREADY_INITIALIZED",
           "CKR_BUFFER_TOO_SMALL", "CKF_OS_LOCKING_OK")


def _params(params: list[str]) -> str:
    return ", ".join(params) if params else "void"


def _names(params: list[str]) -> str:
    return ", ".join(p.split()[-1].lstrip("*") for p in params)


# (name, parameters) of every Python entry the in-process backend (csrc/pkcs11/module.c) calls: one per backend
# operation of csrc/token/token.h
CALLBACKS = (
    ("py_backend_init", "CK_RV *rv, int *fast"),
    ("py_backend_finalize", "void"),
    ("py_backend_info", "CK_RV *rv, int open, char *slot_description, size_t slot_size, char *label, size_t label_size, "
                        "char *model, size_t model_size, char *serial, size_t serial_size, int *flags"),
    ("py_backend_generate", "CK_RV *rv, unsigned char *out, CK_ULONG n, int *touched"),
    ("py_backend_seed", "CK_RV *rv, const unsigned char *in, CK_ULONG n"),
    ("py_backend_health", "char *out, size_t cap, size_t *len"),
    ("py_backend_certificate", "size_t index, unsigned char *out, size_t cap, size_t *len"),
)


def function_list_decl() -> str:
    lines = ["typedef struct CK_FUNCTION_LIST {\n  CK_VERSION version;"]
    lines += [f"  CK_RV (*{name})({_params(params)});" for name, params in ck.FUNCTIONS]
    lines.append("} CK_FUNCTION_LIST;")
    lines.append("typedef CK_FUNCTION_LIST *CK_FUNCTION_LIST_PTR;\ntypedef CK_FUNCTION_LIST_PTR *CK_FUNCTION_LIST_PTR_PTR;")
    lines.append("typedef struct CK_INTERFACE { CK_CHAR *pInterfaceName; CK_VOID_PTR pFunctionList; CK_FLAGS flags; } "
                 "CK_INTERFACE;\ntypedef CK_INTERFACE *CK_INTERFACE_PTR;\ntypedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;")
    return "\n".join(lines)


def header() -> str:
    """The public header of the module (installed as build/qrng-pkcs11.h for C consumers and tests)."""
    lines = ["#ifndef QRNG_PKCS11_H", "#define QRNG_PKCS11_H", ck.TYPES, function_list_decl()]
    lines += [f"CK_RV {name}({_params(params)});" for name, params in ck.FUNCTIONS]
    lines.append("CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);")
    lines.append("CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, "
                 "CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);")
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def internal_header(python: bool = True) -> str:
    """qrng_pkcs11.h as the C files see it: the public header plus what they share (``python``: the callbacks
    into the embedded interpreter; the qrngd module has none)."""
    lines = ["#ifndef QRNG_PKCS11_INTERNAL_H", "#define QRNG_PKCS11_INTERNAL_H", "#include <stddef.h>", header(),
             '#define QRNG_EXPORT __attribute__((visibility("default")))']
    lines += [f"#define {name} {getattr(ck, name):#x}UL" for name in C_CODES]
    if python:
        lines += [f"void {name}({params});" for name, params in CALLBACKS]
    lines.append("extern CK_FUNCTION_LIST qrng_function_list;")
    lines.append("extern volatile int qrng_initialized;")
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def stubs() -> str:
    """The functions the token core does not implement, as typed stubs, and the function list."""
    c = ['/* Generated by qrng_pkcs11/build.py from ckdefs.FUNCTIONS; do not edit. */', '#include "qrng_pkcs11.h"']
    for name, params in ck.FUNCTIONS:
        if name in TOKEN_IN_C:
            continue
        if name in ("C_GetFunctionStatus", "C_CancelFunction"):
            c.append(f"QRNG_EXPORT CK_RV {name}({_params(params)}) {{\n    (void)hSession;\n"
                     f"    return qrng_initialized ? CKR_FUNCTION_NOT_PARALLEL : CKR_CRYPTOKI_NOT_INITIALIZED;\n}}")
        else:
            casts = "".join(f"    (void){n};\n" for n in _names(params).split(", ") if n)
            c.append(f"QRNG_EXPORT CK_RV {name}({_params(params)}) {{\n{casts}"
                     f"    return qrng_initialized ? CKR_FUNCTION_NOT_SUPPORTED : CKR_CRYPTOKI_NOT_INITIALIZED;\n}}")
    entries = ",\n  ".join(name for name, _ in ck.FUNCTIONS)
    c.append(f"CK_FUNCTION_LIST qrng_function_list = {{ {{2, 40}},\n  {entries}\n}};")
    return "\n\n".join(c) + "\n"


def cdef() -> str:
    """The cdef: the types, the callbacks as extern "Python+C", and module.h's declarations."""
    out = [ck.TYPES]
    out += [f'extern "Python+C" void {name}({params});' for name, params in CALLBACKS]
    out += [line for line in (CSRC / "module.h").read_text().splitlines()
            if line and not line.startswith(("#", "/*", " "))]
    return "\n".join(out)


INIT_CODE = """
import _qrng_pkcs11
from qrng_pkcs11 import _boundary
_boundary.install(_qrng_pkcs11.ffi, _qrng_pkcs11.lib)
"""


def _defines(relocatable: bool = False) -> list[str]:
    """The checkout's build names this venv and source folder; a wheel's (``relocatable``) finds its own."""
    libpython = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    common = [f'-DQRNG_LIBPYTHON="{libpython}"', f"-DQRNG_BUILD_HEXVERSION={sys.hexversion:#x}UL"]
    if relocatable:
        base = getattr(sys, "_base_executable", sys.executable)
        return [*common, "-DQRNG_RELOCATABLE", f'-DQRNG_BASE_PYTHON="{base}"']
    venv_python = str(Path(sys.prefix) / "bin" / "python3")
    return [*common, f'-DQRNG_VENV_PYTHON="{venv_python}"', f'-DQRNG_SOURCE_ROOT="{ROOT}"',
            f'-DQRNG_SITE_PACKAGES="{sysconfig.get_paths()["purelib"]}"']


def _fingerprint(generated: dict[str, str], relocatable: bool = False) -> str:
    h = hashlib.sha256()
    for path in (CSRC / "module.c", CSRC / "module.h", CSRC / "interface.c", *TOKEN_SOURCES, *TOKEN_HEADERS):
        h.update(path.read_bytes())
    for name, text in sorted(generated.items()):
        h.update(name.encode() + text.encode())
    h.update(cdef().encode() + INIT_CODE.encode() + " ".join(_defines(relocatable)).encode())
    return h.hexdigest()


SANITIZERS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g")


def build(force: bool = False, sanitize: bool = False, relocatable_to: Path | None = None) -> Path:
    """Build the module; ``sanitize`` builds a variant with AddressSanitizer and UBSan in build/asan/ (for the
    ABI fuzzer; it must be loaded by a host built with the same sanitizers); ``relocatable_to``: the wheel's
    build, written there (it must end up as SITE/qrng_pkcs11/lib/libqrng-pkcs11.so)."""
    generated = {"qrng_pkcs11.h": internal_header(), "qrng_pkcs11_stubs.c": stubs(),
                 "qrng_ckconst.h": constants_header()}
    relocatable = relocatable_to is not None
    work = BUILD / ("asan" if sanitize else "wheel-pkcs11" if relocatable else "pkcs11")
    target = BUILD / "asan" / "libqrng-pkcs11.so" if sanitize else relocatable_to or TARGET
    gen = work / "gen"
    stamp = work / "stamp"
    extra = SANITIZERS if sanitize else ()
    fp = _fingerprint(generated, relocatable) + ("+sanitize" if sanitize else "")
    if target.exists() and not force and stamp.exists() and stamp.read_text() == fp:
        return target
    gen.mkdir(parents=True, exist_ok=True)
    for name, text in generated.items():
        (gen / name).write_text(text)
    objects = []
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    for src in (CSRC / "module.c", CSRC / "interface.c", *TOKEN_SOURCES, gen / "qrng_pkcs11_stubs.c"):
        obj = gen / (src.stem + ".o")
        cmd = [*cc, "-c", "-O2", "-fPIC", "-fvisibility=hidden", *WARNINGS, *extra, *_defines(relocatable), f"-I{gen}",
               f"-I{CSRC}",
               f"-I{TOKEN_SRC}", f"-I{sysconfig.get_paths()['include']}", str(src), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"PKCS#11 module: {src.name} failed to compile\n{r.stderr}")
        objects.append(str(obj))
    ffi = FFI()
    ffi.cdef(cdef())
    ffi.embedding_init_code(INIT_CODE)
    ffi.set_source(
        "_qrng_pkcs11", '#include "qrng_pkcs11.h"\n#include "module.h"\n',
        include_dirs=[str(gen), str(CSRC)], extra_objects=objects,
        extra_compile_args=["-O2", "-fvisibility=hidden", *extra],
        extra_link_args=["-Wl,-z,nodelete", f"-Wl,--enable-new-dtags,-rpath,{sysconfig.get_config_var('LIBDIR')}",
                         "-lcrypto", "-lpthread", "-ldl", *extra],
    )
    out = Path(ffi.compile(tmpdir=str(work), target="libqrng-pkcs11.*", verbose=False))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(out, target.with_suffix(".so.tmp"))
    os.replace(target.with_suffix(".so.tmp"), target)
    if not sanitize and not relocatable:
        HEADER.write_text(header())
    stamp.write_text(fp)
    return target


# --- libqrng-pkcs11-qrngd.so: the module in daemon mode, C only (no Python in the consumer's process) --------------
CLIENT_SRC = ROOT / "csrc" / "qrngd_client"
CLIENT_TARGET = BUILD / "libqrng-pkcs11-qrngd.so"
def constants_header() -> str:
    """Every CK* constant of ckdefs as a C macro (the qrngd module's C uses them by name)."""
    names = sorted(n for n in dir(ck) if n.startswith("CK") and isinstance(getattr(ck, n), int))
    lines = ["/* Generated by qrng_pkcs11/build.py from ckdefs; do not edit. */", "#ifndef QRNG_CKCONST_H",
             "#define QRNG_CKCONST_H"]
    lines += [f"#define {n} {getattr(ck, n):#x}UL" for n in names if n not in C_CODES]
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def protocol_header() -> str:
    """The qrngd wire protocol's constants for the C module, from their one source (qrngd/protocol.py)."""
    from qrngd import protocol as proto
    lines = ["/* Generated by qrng_pkcs11/build.py from qrngd/protocol.py; do not edit. */",
             "#ifndef QRNGD_PROTOCOL_H", "#define QRNGD_PROTOCOL_H",
             f"#define QRNGD_MAGIC0 '{proto.MAGIC[:1].decode()}'", f"#define QRNGD_MAGIC1 '{proto.MAGIC[1:].decode()}'",
             f"#define QRNGD_PROTOCOL_VERSION {proto.VERSION}", f"#define QRNGD_MAX_PAYLOAD {proto.MAX_PAYLOAD}u",
             f"#define QRNGD_MAX_SEED {proto.MAX_SEED}u", f'#define QRNGD_DEFAULT_SOCKET "{proto.DEFAULT_SOCKET}"']
    lines += [f"#define QRNGD_{name} {value}" for name, value in sorted(vars(proto.OP).items())
              if name.isupper() and isinstance(value, int)]
    statuses = {("STATUS_VERSION" if name == "VERSION" else name): value  # VERSION is also the protocol's own
                for name, value in vars(proto.STATUS).items() if name.isupper() and isinstance(value, int)}
    lines += [f"#define QRNGD_{name} {value}" for name, value in sorted(statuses.items())]
    lines.append("#endif")
    return "\n".join(lines) + "\n"


CLIENT_SOURCES = (*TOKEN_SOURCES, CLIENT_SRC / "backend.c", CLIENT_SRC / "conn.c", CLIENT_SRC / "config.c",
                  ROOT / "csrc" / "ctr_drbg.c", CSRC / "interface.c")


def build_client(force: bool = False, sanitize: bool = False, target: Path | None = None) -> Path:
    """Build build/libqrng-pkcs11-qrngd.so (``sanitize``: build/asan/libqrng-pkcs11-qrngd.so with ASan + UBSan;
    ``target``: there instead, for a wheel)."""
    generated = {"qrng_pkcs11.h": internal_header(python=False), "qrng_ckconst.h": constants_header(),
                 "qrngd_protocol.h": protocol_header(),
                 "qrng_pkcs11_stubs.c": stubs()}
    work = BUILD / ("asan-qrngd" if sanitize else "qrngd")
    target = BUILD / "asan" / CLIENT_TARGET.name if sanitize else target or CLIENT_TARGET
    gen, stamp = work / "gen", work / "stamp"
    h = hashlib.sha256()
    for src in CLIENT_SOURCES:
        h.update(src.read_bytes())
    for header in (CLIENT_SRC / "conn.h", CLIENT_SRC / "config.h", *TOKEN_HEADERS):
        h.update(header.read_bytes())
    h.update((ROOT / "csrc" / "ctr_drbg.h").read_bytes())
    for name, text in sorted(generated.items()):
        h.update(name.encode() + text.encode())
    extra = SANITIZERS if sanitize else ()
    fp = h.hexdigest() + ("+sanitize" if sanitize else "")
    if target.exists() and not force and stamp.exists() and stamp.read_text() == fp:
        return target
    gen.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    for name, text in generated.items():
        (gen / name).write_text(text)
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    tmp = target.with_suffix(".so.tmp")
    cmd = [*cc, "-O2", "-fPIC", "-shared", "-fvisibility=hidden", *WARNINGS, *extra, f"-I{gen}", f"-I{CLIENT_SRC}",
           f"-I{TOKEN_SRC}", f"-I{ROOT / 'csrc'}", *map(str, CLIENT_SOURCES), str(gen / "qrng_pkcs11_stubs.c"), "-o",
           str(tmp),
           "-Wl,-z,nodelete", "-Wl,-z,defs", "-lcrypto", "-lpthread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"PKCS#11 qrngd module failed to build\n{r.stderr}")
    os.replace(tmp, target)
    stamp.write_text(fp)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qrng_pkcs11.build", description="Build build/libqrng-pkcs11.so.")
    p.add_argument("--force", action="store_true", help="rebuild even when no input changed")
    p.add_argument("--sanitize", action="store_true",
                   help="build the AddressSanitizer + UBSan variant into build/asan/ (for the ABI fuzzer)")
    p.add_argument("--qrngd", action="store_true",
                   help="build build/libqrng-pkcs11-qrngd.so, the module in daemon mode (C only), instead")
    a = p.parse_args(argv)
    print((build_client if a.qrngd else build)(force=a.force, sanitize=a.sanitize))
    return 0


if __name__ == "__main__":
    sys.exit(main())
