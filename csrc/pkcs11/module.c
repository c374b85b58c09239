/* libqrng-pkcs11.so, hand-written part (PKCS#11 v2.40; see ../../docs/architecture.md).
 *
 * qrng_pkcs11.h (generated from qrng_pkcs11/ckdefs.py) declares the types, the function list and the
 * Python callbacks py_C_*; qrng_pkcs11_stubs.c (generated) holds the thin wrappers of the other functions.
 * Here:
 *   - the interpreter is started by the module (PyConfig with the venv's python as program_name, no signal
 *     handlers); libpython is promoted to RTLD_GLOBAL for hosts that dlopen with RTLD_LOCAL; the runtime
 *     Python version must equal the build's;
 *   - pthread_atfork keeps fork() safe, and a forked child never serves the parent's buffered bytes;
 *   - C_Initialize / C_Finalize (5.4) with OS locking or the application's mutex callbacks;
 *   - C_GenerateRandom (5.15): small requests come from a buffer that Python fills in bulk, each byte served
 *     once and zeroised as it goes; larger ones go to Python;
 *   - C_GetFunctionList and the v3.0 interface discovery live in interface.c (shared with the qrngd module).
 * Build-time values arrive as -D flags: QRNG_VENV_PYTHON, QRNG_LIBPYTHON, QRNG_BUILD_HEXVERSION. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qrng_pkcs11.h"
#include "module.h"

#define FAST_MAX 4096          /* requests up to this size are served from the buffer */
#define BUF_SIZE (1 << 16)     /* bytes of DRBG output per refill */
#define SESSION_BITS (1 << 20) /* session handles the fast path can check without Python */

volatile int qrng_initialized;

/* --- re-entrancy: a C_* call made on a thread that is already inside one of ours --------------------------
   Seen when OpenSSL's configuration (OPENSSL_CONF -> pkcs11-provider -> this module) is read by an OpenSSL that
   this module itself is initialising: the nested call would recurse into a half-imported Python module or
   deadlock on g_init_lock. It is refused with CKR_GENERAL_ERROR and said once on stderr. */
static __thread int t_depth;
static int g_reentry_said;

int qrng_enter(const char *fn) {
    if (t_depth > 0) {
        if (!__atomic_exchange_n(&g_reentry_said, 1, __ATOMIC_SEQ_CST))
            fprintf(stderr, "qrng-pkcs11: %s called from inside the module itself (an OpenSSL configuration "
                            "that loads this module again?); refused with CKR_GENERAL_ERROR\n", fn);
        return -1;
    }
    t_depth++;
    return 0;
}

void qrng_leave(void) { t_depth--; }
static int g_started_python;
static PyGILState_STATE g_fork_gil;

/* --- interpreter start-up (pitfalls 1-3 of the embedding notes) ---------------------------------- */
static pthread_once_t g_py_once = PTHREAD_ONCE_INIT;
static int g_py_ok;

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static volatile int g_starting_python;   /* this module is starting the interpreter (a C host) */
static int g_fork_held_init;             /* fork_prepare took g_init_lock */

static void start_python(void) {
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    if (Py_IsInitialized()) { g_py_ok = 1; return; }      /* the host is Python: cffi reuses it */
    g_starting_python = 1;
    if (!dlopen(QRNG_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        dlopen(QRNG_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL);
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    config.user_site_directory = 0;
    /* the host's C stdio is the host's: never set its buffering (with configure_c_stdio and buffered_stdio = 0,
       Python made the host's stdout unbuffered, and `openssl rand -hex 4000000` to a terminal 20x slower) */
    config.configure_c_stdio = 0;
    PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, QRNG_VENV_PYTHON);
    if (!PyStatus_Exception(st)) st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        fprintf(stderr, "qrng-pkcs11: cannot start Python (%s)\n", st.err_msg ? st.err_msg : "?");
        return;
    }
    if ((unsigned long)Py_Version != QRNG_BUILD_HEXVERSION) {
        fprintf(stderr, "qrng-pkcs11: built for Python %#lx but runs on %#lx; refusing\n",
                (unsigned long)QRNG_BUILD_HEXVERSION, (unsigned long)Py_Version);
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
static __thread int t_holds_buf;  /* this thread holds the buffer's lock (in a refill, which calls Python) */
void qrng_buffer_clear(void) {
    if (t_holds_buf) { buffer_wipe(); return; }  /* called back from Python during a refill: already locked */
    buf_lock(); buffer_wipe(); buf_unlock();
}
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
    /* A Python host's os.fork() handles the interpreter itself, and holds the GIL: a thread of ours inside
       C_Initialize may be waiting for it, so the init lock must not be taken there. */
    g_fork_held_init = 0;
    if (Py_IsInitialized() && !g_starting_python && !g_started_python) return;
    /* A C host: lock order everywhere is init, buffer, GIL. Holding the init lock means no C_Initialize (with
       the interpreter half started) or C_Finalize is half done in the child (found by the ABI fuzzer). */
    pthread_mutex_lock(&g_init_lock);
    g_fork_held_init = 1;
    if (!g_started_python) return;
    buf_lock();
    g_fork_gil = PyGILState_Ensure();
    PyOS_BeforeFork();
}
static void fork_parent(void) {
    if (!g_fork_held_init) return;
    if (g_started_python) {
        PyOS_AfterFork_Parent();
        PyGILState_Release(g_fork_gil);
        buf_unlock();
    }
    pthread_mutex_unlock(&g_init_lock);
}
static void fork_child(void) {
    if (g_fork_held_init && g_started_python) {
        PyOS_AfterFork_Child();         /* runs os.register_at_fork hooks: the DRBG is dropped */
        /* Keep this thread's state and only release the GIL: it is now the interpreter's only thread state, and
           deleting it (PyGILState_Release of a state made by the Ensure in fork_prepare) leaves CPython 3.11
           unable to make another ("init_threadstate: thread state already initialized"; found by the ABI
           fuzzer's fork-during-init scenario). */
        if (g_fork_gil == PyGILState_UNLOCKED) PyEval_SaveThread();
        else PyGILState_Release(g_fork_gil);
    }
    if (!g_app_mutex) pthread_mutex_init(&g_buf_lock, NULL);
    else if (g_fork_held_init && g_started_python) g_args.UnlockMutex(g_app_buf_mutex);
    pthread_mutex_init(&g_init_lock, NULL);
    t_depth = 0;                        /* the forking thread is not inside one of our calls in the child */
    buffer_wipe();                      /* never serve the parent's buffered bytes */
}

/* --- general purpose (v2.40 5.4) --------------------------------------------------------------------- */
static CK_RV initialize(CK_VOID_PTR pInitArgs);

QRNG_EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs) {
    CK_RV rv = CKR_GENERAL_ERROR;
    if (qrng_enter("C_Initialize")) return CKR_GENERAL_ERROR;   /* before the lock: a nested call would deadlock */
    rv = initialize(pInitArgs);
    qrng_leave();
    return rv;
}

static CK_RV initialize(CK_VOID_PTR pInitArgs) {
    CK_RV rv = CKR_GENERAL_ERROR;
    pthread_mutex_lock(&g_init_lock);
    if (qrng_initialized) { pthread_mutex_unlock(&g_init_lock); return CKR_CRYPTOKI_ALREADY_INITIALIZED; }
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
    if (rv == CKR_OK) qrng_initialized = 1;
    else if (g_app_mutex) { g_args.DestroyMutex(g_app_buf_mutex); g_app_mutex = 0; }
    pthread_mutex_unlock(&g_init_lock);
    return rv;
}

QRNG_EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved) {
    CK_RV rv = CKR_GENERAL_ERROR;
    if (pReserved) return CKR_ARGUMENTS_BAD;
    if (qrng_enter("C_Finalize")) return CKR_GENERAL_ERROR;
    pthread_mutex_lock(&g_init_lock);
    if (!qrng_initialized) { pthread_mutex_unlock(&g_init_lock); qrng_leave(); return CKR_CRYPTOKI_NOT_INITIALIZED; }
    qrng_buffer_clear();
    py_C_Finalize(&rv, pReserved);
    if (rv == CKR_OK) {
        qrng_initialized = 0;
        g_fast = 0;
        memset(g_sessions, 0, sizeof g_sessions);
        if (g_app_mutex) { g_args.DestroyMutex(g_app_buf_mutex); g_app_mutex = 0; }
    }
    pthread_mutex_unlock(&g_init_lock);
    qrng_leave();
    return rv;
}

/* --- random number generation (v2.40 5.15) ------------------------------------------------------- */
static CK_RV generate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen);

/* --- the call log (QRNG_PKCS11_LOG=FILE): the Python half writes a line per call it answers; the calls answered
   here without it (served from the buffer, refused before Python is entered) are written here, in the same
   format, so the log shows every C_GenerateRandom ------------------------------------------------------------ */
static FILE *g_log;
static pthread_once_t g_log_once = PTHREAD_ONCE_INIT;
static __thread int t_python_logged;

static void log_open(void) {
    const char *path = secure_getenv("QRNG_PKCS11_LOG");
    if (!path || !*path) return;
    g_log = fopen(path, "ae");
    if (g_log) setvbuf(g_log, NULL, _IOLBF, 0);
}

static const char *rv_name(CK_RV rv) {
    switch (rv) {
    case CKR_OK: return "CKR_OK";
    case CKR_ARGUMENTS_BAD: return "CKR_ARGUMENTS_BAD";
    case CKR_CRYPTOKI_NOT_INITIALIZED: return "CKR_CRYPTOKI_NOT_INITIALIZED";
    case 0x30UL: return "CKR_DEVICE_ERROR";
    case 0x32UL: return "CKR_DEVICE_REMOVED";
    case 0xB3UL: return "CKR_SESSION_HANDLE_INVALID";
    case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
    default: return NULL;
    }
}

static void log_generate(CK_RV rv, CK_ULONG n, const char *how) {
    pthread_once(&g_log_once, log_open);
    if (!g_log) return;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    const char *name = rv_name(rv);
    if (name)
        fprintf(g_log, "%02d:%02d:%02d pid=%ld C_GenerateRandom -> %s %lu bytes, %s\n", tm.tm_hour, tm.tm_min,
                tm.tm_sec, (long)getpid(), name, (unsigned long)n, how);
    else
        fprintf(g_log, "%02d:%02d:%02d pid=%ld C_GenerateRandom -> %#lx %lu bytes, %s\n", tm.tm_hour, tm.tm_min,
                tm.tm_sec, (long)getpid(), (unsigned long)rv, (unsigned long)n, how);
}

QRNG_EXPORT CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen) {
    CK_RV rv = CKR_GENERAL_ERROR;
    if (!qrng_initialized) rv = CKR_CRYPTOKI_NOT_INITIALIZED;
    else if (!pRandomData && ulRandomLen) rv = CKR_ARGUMENTS_BAD;
    else if (qrng_enter("C_GenerateRandom")) rv = CKR_GENERAL_ERROR;
    else {
        t_python_logged = 0;
        rv = generate(hSession, pRandomData, ulRandomLen);
        qrng_leave();
        if (!t_python_logged) log_generate(rv, ulRandomLen, rv == CKR_OK ? "served from the module's buffer"
                                                                          : "refill of the module's buffer failed");
        return rv;
    }
    log_generate(rv, ulRandomLen, "refused before the Python half");
    return rv;
}

static CK_RV generate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen) {
    CK_RV rv = CKR_GENERAL_ERROR;
    if (g_fast && ulRandomLen && ulRandomLen <= FAST_MAX && session_open(hSession)) {  /* 0 bytes: no memcpy(NULL) */
        buf_lock();
        if (g_fast) {
            if (g_len < ulRandomLen) {
                buffer_wipe();
                t_holds_buf = 1;
                py_refill(&rv, g_buf, BUF_SIZE);
                t_holds_buf = 0;
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
    /* a failure after generation began leaves the buffer zeroed; one before it leaves the buffer untouched
       (the Python half decides, since only it knows where the request failed) */
    py_C_GenerateRandom(&rv, hSession, pRandomData, ulRandomLen);
    t_python_logged = 1;  /* the Python half wrote this call's line */
    return rv;
}
