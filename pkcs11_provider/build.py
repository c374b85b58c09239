"""Build build/libqrng-pkcs11.so with cffi's embedding API (``python -m pkcs11_provider.build``).

The C side, generated from the one table in ckdefs.FUNCTIONS:
* ``C_GetFunctionList`` / ``C_GetInterfaceList`` / ``C_GetInterface`` in plain C (they work before Python starts);
* typed stubs for unimplemented functions: CKR_CRYPTOKI_NOT_INITIALIZED before C_Initialize,
  CKR_FUNCTION_NOT_SUPPORTED after; C_GetFunctionStatus / C_CancelFunction: CKR_FUNCTION_NOT_PARALLEL;
* wrappers for implemented functions: ``rv = CKR_GENERAL_ERROR`` first, then the ``extern "Python"``
  function writes the real code, so an exception can never become CKR_OK;
* the interpreter is started here (PyConfig with the venv's python as program_name, no signal handlers),
  libpython is promoted to RTLD_GLOBAL for consumers that dlopen with RTLD_LOCAL, the runtime Python
  version is checked against the build's, and pthread_atfork keeps fork() safe;
* C_GenerateRandom's fast path serves small requests from a buffer that Python fills in bulk; bytes are
  zeroised as they are served, on C_Finalize and in a forked child.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from cffi import FFI

from . import ckdefs as ck

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
TARGET = BUILD / "libqrng-pkcs11.so"
HEADER = BUILD / "qrng-pkcs11.h"
FAST_MAX = 4096
BUF_SIZE = 1 << 16
SESSION_BITS = 1 << 20


def _params(params: list[str]) -> str:
    return ", ".join(params) if params else "void"


def _names(params: list[str]) -> str:
    return ", ".join(p.split()[-1].lstrip("*") for p in params)


def header() -> str:
    lines = ["#ifndef QRNG_PKCS11_H", "#define QRNG_PKCS11_H", ck.TYPES]
    lines.append("typedef struct CK_FUNCTION_LIST {\n  CK_VERSION version;")
    for name, params in ck.FUNCTIONS:
        lines.append(f"  CK_RV (*{name})({_params(params)});")
    lines.append("} CK_FUNCTION_LIST;")
    lines.append("typedef CK_FUNCTION_LIST *CK_FUNCTION_LIST_PTR;\ntypedef CK_FUNCTION_LIST_PTR *CK_FUNCTION_LIST_PTR_PTR;")
    lines.append("typedef struct CK_INTERFACE { CK_CHAR *pInterfaceName; CK_VOID_PTR pFunctionList; CK_FLAGS flags; } "
                 "CK_INTERFACE;\ntypedef CK_INTERFACE *CK_INTERFACE_PTR;\ntypedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;")
    for name, params in ck.FUNCTIONS:
        lines.append(f"CK_RV {name}({_params(params)});")
    lines.append("CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount);")
    lines.append("CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, "
                 "CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags);")
    lines.append("#endif")
    return "\n".join(lines) + "\n"


def cdef() -> str:
    out = [ck.TYPES]
    out.append('extern "Python" void py_C_Initialize(CK_RV *rv, CK_VOID_PTR pInitArgs);')
    out.append('extern "Python" void py_refill(CK_RV *rv, unsigned char *buf, CK_ULONG len);')
    for name, params in ck.FUNCTIONS:
        if name in ck.IMPLEMENTED:
            out.append(f'extern "Python" void py_{name}(CK_RV *rv, {_params(params)});')
    out.append("void qrng_session_mark(CK_ULONG handle, int open);")
    out.append("void qrng_fast_configure(int enabled);")
    out.append("void qrng_buffer_clear(void);")
    out.append("int qrng_started_python(void);")
    return "\n".join(out)


def csource(venv_python: str, libpython: str) -> str:
    c: list[str] = [r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#define EXPORT __attribute__((visibility("default")))
"""]
    c.append(header().replace("CK_RV C_", "EXPORT CK_RV C_"))
    c.append(f"""
#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR {ck.CKR_GENERAL_ERROR:#x}UL
#define CKR_ARGUMENTS_BAD {ck.CKR_ARGUMENTS_BAD:#x}UL
#define CKR_CANT_LOCK {ck.CKR_CANT_LOCK:#x}UL
#define CKR_FUNCTION_NOT_SUPPORTED {ck.CKR_FUNCTION_NOT_SUPPORTED:#x}UL
#define CKR_FUNCTION_NOT_PARALLEL {ck.CKR_FUNCTION_NOT_PARALLEL:#x}UL
#define CKR_SESSION_HANDLE_INVALID {ck.CKR_SESSION_HANDLE_INVALID:#x}UL
#define CKR_CRYPTOKI_NOT_INITIALIZED {ck.CKR_CRYPTOKI_NOT_INITIALIZED:#x}UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED {ck.CKR_CRYPTOKI_ALREADY_INITIALIZED:#x}UL
#define CKR_BUFFER_TOO_SMALL {ck.CKR_BUFFER_TOO_SMALL:#x}UL
#define CKF_OS_LOCKING_OK {ck.CKF_OS_LOCKING_OK:#x}UL
#define QRNG_VENV_PYTHON "{venv_python}"
#define QRNG_LIBPYTHON "{libpython}"
#define QRNG_BUILD_HEXVERSION {sys.hexversion:#x}UL
#define FAST_MAX {FAST_MAX}
#define BUF_SIZE {BUF_SIZE}
#define SESSION_BITS {SESSION_BITS}
""")
    # forward declarations of the Python callbacks (cffi emits their bodies later)
    c.append("static void py_C_Initialize(CK_RV *rv, CK_VOID_PTR pInitArgs);")
    c.append("static void py_refill(CK_RV *rv, unsigned char *buf, CK_ULONG len);")
    for name, params in ck.FUNCTIONS:
        if name in ck.IMPLEMENTED:
            c.append(f"static void py_{name}(CK_RV *rv, {_params(params)});")
    c.append(r"""
static volatile int g_initialized;
static int g_started_python;
static PyGILState_STATE g_fork_gil;

/* --- interpreter start-up (pitfalls 1-3 of the embedding notes) ---------------------------------- */
static pthread_once_t g_py_once = PTHREAD_ONCE_INIT;
static int g_py_ok;

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void start_python(void) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (Py_IsInitialized()) { g_py_ok = 1; return; }      /* the host is Python: cffi reuses it */
    if (!dlopen(QRNG_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        dlopen(QRNG_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL);
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    config.user_site_directory = 0;
    config.buffered_stdio = 0;
    PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, QRNG_VENV_PYTHON);
    if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        fprintf(stderr, "qrng-pkcs11: cannot start Python (%s)\n", st.err_msg ? st.err_msg : "?");
        return;
    }
    if ((unsigned long)Py_Version != QRNG_BUILD_HEXVERSION) {
        fprintf(stderr, "qrng-pkcs11: built for Python %#lx but runs on %#lx; refusing\n",
                QRNG_BUILD_HEXVERSION, (unsigned long)Py_Version);
        PyEval_SaveThread();
        return;
    }
    g_started_python = 1;
    PyEval_SaveThread();                                   /* release the GIL: any thread may enter */
    g_py_ok = 1;
}

static int ensure_python(void) {
    pthread_once(&g_py_once, start_python);
    return g_py_ok ? 0 : -1;
}

int qrng_started_python(void) { return g_started_python; }

/* --- locking: OS mutexes, or the application's (v2.40 5.4 C_Initialize cases 1-4) ---------------- */
static CK_C_INITIALIZE_ARGS g_args;
static int g_app_mutex;
static void *g_app_buf_mutex;
static pthread_mutex_t g_buf_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;

static void buf_lock(void) {
    if (g_app_mutex) g_args.LockMutex(g_app_buf_mutex); else pthread_mutex_lock(&g_buf_lock);
}
static void buf_unlock(void) {
    if (g_app_mutex) g_args.UnlockMutex(g_app_buf_mutex); else pthread_mutex_unlock(&g_buf_lock);
}

/* --- the fast path: a buffer of DRBG output, each byte served once ------------------------------ */
static unsigned char g_buf[BUF_SIZE];
static size_t g_off, g_len;
static int g_fast;
static unsigned char g_sessions[SESSION_BITS / 8];

static void buffer_wipe(void) {
    memset(g_buf, 0, sizeof g_buf);
    __asm__ __volatile__("" ::: "memory");
    g_off = g_len = 0;
}
void qrng_buffer_clear(void) { buf_lock(); buffer_wipe(); buf_unlock(); }
void qrng_fast_configure(int enabled) { buf_lock(); g_fast = enabled; buffer_wipe(); buf_unlock(); }
void qrng_session_mark(CK_ULONG h, int open) {
    if (h >= SESSION_BITS) return;
    if (open) __atomic_or_fetch(&g_sessions[h / 8], (unsigned char)(1u << (h % 8)), __ATOMIC_SEQ_CST);
    else __atomic_and_fetch(&g_sessions[h / 8], (unsigned char)~(1u << (h % 8)), __ATOMIC_SEQ_CST);
}
static int session_open(CK_ULONG h) {
    return h < SESSION_BITS && (__atomic_load_n(&g_sessions[h / 8], __ATOMIC_SEQ_CST) >> (h % 8)) & 1;
}

/* --- fork safety (pitfalls 6 and 7) ---------------------------------------------------------------- */
static void fork_prepare(void) {
    if (!g_started_python) return;      /* a Python host's os.fork() handles the interpreter itself */
    buf_lock();                         /* same order as the refill path: buffer, then GIL */
    g_fork_gil = PyGILState_Ensure();
    PyOS_BeforeFork();
}
static void fork_parent(void) {
    if (!g_started_python) return;
    PyOS_AfterFork_Parent();
    PyGILState_Release(g_fork_gil);
    buf_unlock();
}
static void fork_child(void) {
    if (g_started_python) {
        PyOS_AfterFork_Child();         /* runs os.register_at_fork hooks: the DRBG is dropped */
        PyGILState_Release(g_fork_gil);
    }
    if (!g_app_mutex) pthread_mutex_init(&g_buf_lock, NULL);
    else if (g_started_python) g_args.UnlockMutex(g_app_buf_mutex);
    buffer_wipe();                      /* never serve the parent's buffered bytes */
}

/* --- general purpose (v2.40 5.4) --------------------------------------------------------------------- */
EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs) {
    CK_RV rv = CKR_GENERAL_ERROR;
    pthread_mutex_lock(&g_init_lock);
    if (g_initialized) { pthread_mutex_unlock(&g_init_lock); return CKR_CRYPTOKI_ALREADY_INITIALIZED; }
    memset(&g_args, 0, sizeof g_args);
    g_app_mutex = 0;
    if (pInitArgs) {
        CK_C_INITIALIZE_ARGS *a = (CK_C_INITIALIZE_ARGS *)pInitArgs;
        int given = !!a->CreateMutex + !!a->DestroyMutex + !!a->LockMutex + !!a->UnlockMutex;
        if (given != 0 && given != 4) { pthread_mutex_unlock(&g_init_lock); return CKR_ARGUMENTS_BAD; }
        g_args = *a;                    /* pReserved may carry NSS / p11-kit module parameters: tolerated */
        if (given == 4 && !(a->flags & CKF_OS_LOCKING_OK)) {
            if (a->CreateMutex(&g_app_buf_mutex) != CKR_OK) { pthread_mutex_unlock(&g_init_lock); return CKR_CANT_LOCK; }
            g_app_mutex = 1;
        }
    }
    if (ensure_python() != 0) { pthread_mutex_unlock(&g_init_lock); return CKR_GENERAL_ERROR; }
    py_C_Initialize(&rv, pInitArgs);
    if (rv == CKR_OK) g_initialized = 1;
    else if (g_app_mutex) { g_args.DestroyMutex(g_app_buf_mutex); g_app_mutex = 0; }
    pthread_mutex_unlock(&g_init_lock);
    return rv;
}

EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved) {
    CK_RV rv = CKR_GENERAL_ERROR;
    if (pReserved) return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&g_init_lock);
    if (!g_initialized) { pthread_mutex_unlock(&g_init_lock); return CKR_CRYPTOKI_NOT_INITIALIZED; }
    qrng_buffer_clear();
    py_C_Finalize(&rv, pReserved);
    if (rv == CKR_OK) {
        g_initialized = 0;
        g_fast = 0;
        memset(g_sessions, 0, sizeof g_sessions);
        if (g_app_mutex) { g_args.DestroyMutex(g_app_buf_mutex); g_app_mutex = 0; }
    }
    pthread_mutex_unlock(&g_init_lock);
    return rv;
}

/* --- random number generation (v2.40 5.15) ------------------------------------------------------- */
EXPORT CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen) {
    CK_RV rv = CKR_GENERAL_ERROR;
    if (!g_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pRandomData && ulRandomLen) return CKR_ARGUMENTS_BAD;
    if (g_fast && ulRandomLen <= FAST_MAX && session_open(hSession)) {
        buf_lock();
        if (g_fast) {
            if (g_len < ulRandomLen) {
                buffer_wipe();
                py_refill(&rv, g_buf, BUF_SIZE);
                if (rv != CKR_OK) { buffer_wipe(); buf_unlock(); return rv; }
                g_len = BUF_SIZE;
            }
            memcpy(pRandomData, g_buf + g_off, ulRandomLen);
            memset(g_buf + g_off, 0, ulRandomLen);
            g_off += ulRandomLen;
            g_len -= ulRandomLen;
            buf_unlock();
            return CKR_OK;
        }
        buf_unlock();
    }
    py_C_GenerateRandom(&rv, hSession, pRandomData, ulRandomLen);
    return rv;
}
""")
    # wrappers for the remaining implemented functions
    for name, params in ck.FUNCTIONS:
        if name in ("C_Finalize", "C_GenerateRandom", "C_Initialize"):
            continue
        if name in ck.IMPLEMENTED:
            c.append(f"EXPORT CK_RV {name}({_params(params)}) {{\n    CK_RV rv = CKR_GENERAL_ERROR;\n"
                     f"    if (!g_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;\n"
                     f"    py_{name}(&rv, {_names(params)});\n    return rv;\n}}")
        elif name in ("C_GetFunctionStatus", "C_CancelFunction"):
            c.append(f"EXPORT CK_RV {name}({_params(params)}) {{\n    (void)hSession;\n"
                     f"    return g_initialized ? CKR_FUNCTION_NOT_PARALLEL : CKR_CRYPTOKI_NOT_INITIALIZED;\n}}")
        elif name != "C_GetFunctionList":
            casts = "".join(f"    (void){n};\n" for n in _names(params).split(", ") if n)
            c.append(f"EXPORT CK_RV {name}({_params(params)}) {{\n{casts}"
                     f"    return g_initialized ? CKR_FUNCTION_NOT_SUPPORTED : CKR_CRYPTOKI_NOT_INITIALIZED;\n}}")
    entries = ",\n  ".join(name for name, _ in ck.FUNCTIONS)
    c.append(f"""
static CK_FUNCTION_LIST g_function_list = {{ {{2, 40}},
  {entries}
}};

EXPORT CK_RV C_GetFunctionList(void *ppFunctionList) {{
    if (!ppFunctionList) return CKR_ARGUMENTS_BAD;
    *(CK_FUNCTION_LIST **)ppFunctionList = &g_function_list;
    return CKR_OK;
}}

/* PKCS#11 v3.0 interface discovery: one interface, "PKCS 11" version 2.40, pointing at the list above. */
static CK_INTERFACE g_interface = {{ (CK_CHAR *)"PKCS 11", &g_function_list, 0 }};

EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount) {{
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    if (!pInterfacesList) {{ *pulCount = 1; return CKR_OK; }}
    if (*pulCount < 1) {{ *pulCount = 1; return CKR_BUFFER_TOO_SMALL; }}
    pInterfacesList[0] = g_interface;
    *pulCount = 1;
    return CKR_OK;
}}

EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                            CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags) {{
    if (!ppInterface) return CKR_ARGUMENTS_BAD;
    if (pInterfaceName && strcmp((const char *)pInterfaceName, "PKCS 11") != 0) return CKR_ARGUMENTS_BAD;
    if (pVersion && (pVersion->major != 2 || pVersion->minor != 40)) return CKR_ARGUMENTS_BAD;
    if (flags & ~g_interface.flags) return CKR_ARGUMENTS_BAD;
    *ppInterface = &g_interface;
    return CKR_OK;
}}
""")
    return "\n".join(c)


INIT_CODE = """
import _qrng_pkcs11
from pkcs11_provider import _boundary
_boundary.install(_qrng_pkcs11.ffi, _qrng_pkcs11.lib)
"""


def build(force: bool = False) -> Path:
    sources = [Path(__file__).parent / n for n in ("build.py", "ckdefs.py")]
    if TARGET.exists() and not force and TARGET.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return TARGET
    BUILD.mkdir(parents=True, exist_ok=True)
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    venv_python = str(Path(sys.prefix) / "bin" / "python3")
    ffi = FFI()
    ffi.cdef(cdef())
    ffi.embedding_init_code(INIT_CODE)
    ffi.set_source(
        "_qrng_pkcs11", csource(venv_python, ldlibrary),
        extra_compile_args=["-O2", "-fvisibility=hidden", "-Wall", "-Wno-unused-function"],
        extra_link_args=["-Wl,-z,nodelete", f"-Wl,--enable-new-dtags,-rpath,{libdir}", "-lpthread", "-ldl"],
    )
    tmp = BUILD / "pkcs11"
    out = Path(ffi.compile(tmpdir=str(tmp), target="libqrng-pkcs11.*", verbose=False))
    shutil.copy2(out, TARGET.with_suffix(".so.tmp"))
    os.replace(TARGET.with_suffix(".so.tmp"), TARGET)
    HEADER.write_text(header())
    return TARGET


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
