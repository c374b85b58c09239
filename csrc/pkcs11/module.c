/* libqrng-pkcs11.so's backend (csrc/token/token.h): the PKCS#11 module in-process, the entropy pipeline in an
 * embedded Python (see ../../docs/architecture.md). The token itself (slot, sessions, login, objects, locking,
 * the call log) is the C token core in csrc/token/, the same as the daemon-mode module's; here:
 *   - the interpreter is started by the module (PyConfig with the venv's python as program_name, no signal
 *     handlers); libpython is promoted to RTLD_GLOBAL for hosts that dlopen with RTLD_LOCAL; the runtime
 *     Python version must equal the build's;
 *   - one Python entry per backend operation (qrng_pkcs11/_boundary.py: py_backend_*), each writing its CK_RV;
 *   - fork(): in a C host the core holds its locks, then this takes the GIL (lock order: init, token, GIL); a
 *     Python host's os.fork() handles the interpreter itself and holds the GIL, so nothing is taken there;
 *   - C_GenerateRandom (5.15): small requests come from a buffer that Python fills in bulk, each byte served
 *     once and zeroised as it goes; larger ones go to Python. Every backend call is made under the token lock,
 *     so the buffer needs no lock of its own.
 * Build-time values arrive as -D flags: QRNG_LIBPYTHON, QRNG_BUILD_HEXVERSION and, for the checkout's build,
 * QRNG_VENV_PYTHON, QRNG_SITE_PACKAGES, QRNG_SOURCE_ROOT; a wheel's build (QRNG_RELOCATABLE, QRNG_BASE_PYTHON)
 * finds its interpreter and site-packages from where the module itself lies (relocated_paths). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "qrng_pkcs11.h"
#include "qrng_ckconst.h"
#include "token.h"
#include "module.h"

#define FAST_MAX 4096          /* requests up to this size are served from the buffer */
#define BUF_SIZE (1 << 16)     /* bytes of DRBG output per refill */
#define MAX_CERTS 4
#define MAX_CERT_SIZE (64 * 1024)

static int g_started_python;
static PyGILState_STATE g_fork_gil;

/* --- interpreter start-up (pitfalls 1-3 of the embedding notes) ---------------------------------- */
static pthread_once_t g_py_once = PTHREAD_ONCE_INIT;
static int g_py_ok;

static volatile int g_starting_python;   /* this module is starting the interpreter (a C host) */

/* the interpreter to start (its program name decides sys.prefix: a virtual environment's python finds its
   pyvenv.cfg), and the folders sys.path needs beyond the standard library */
static char g_program[PATH_MAX], g_site[PATH_MAX], g_root[PATH_MAX];

#ifdef QRNG_RELOCATABLE
/* installed from a wheel: this file is SITE/qrng_pkcs11/lib/libqrng-pkcs11.so; a virtual environment is
   SITE/../../.. when it holds pyvenv.cfg, and its python is bin/python3 there; otherwise the base interpreter */
static int find_paths(void) {
    Dl_info info;
    char self[PATH_MAX], venv[PATH_MAX + 32];
    if (!dladdr((void *)find_paths, &info) || !info.dli_fname || !realpath(info.dli_fname, self)) return -1;
    for (int up = 0; up < 3; up++) {           /* the file, lib/, qrng_pkcs11/ */
        char *slash = strrchr(self, '/');
        if (!slash || slash == self) return -1;
        *slash = '\0';
    }
    snprintf(g_site, sizeof g_site, "%s", self);
    snprintf(venv, sizeof venv, "%s/../../../pyvenv.cfg", g_site);
    if (access(venv, R_OK) == 0) snprintf(g_program, sizeof g_program, "%.*s/../../../bin/python3", PATH_MAX - 32, g_site);
    else snprintf(g_program, sizeof g_program, "%s", QRNG_BASE_PYTHON);
    g_root[0] = '\0';
    return 0;
}
#else
static int find_paths(void) {
    snprintf(g_program, sizeof g_program, "%s", QRNG_VENV_PYTHON);
    snprintf(g_site, sizeof g_site, "%s", QRNG_SITE_PACKAGES);
    snprintf(g_root, sizeof g_root, "%s", QRNG_SOURCE_ROOT);
    return 0;
}
#endif

/* sys.path gains the site-packages folder and the project's source folder (a checkout's build) at its end, where
   the site module would have put them (after PYTHONPATH and the standard library) */
static int add_paths(void) {
    PyObject *path = PySys_GetObject("path");             /* borrowed */
    const char *dirs[] = { g_site, g_root };
    for (size_t i = 0; path && i < sizeof dirs / sizeof dirs[0]; i++) {
        if (!dirs[i][0]) continue;
        PyObject *s = PyUnicode_DecodeFSDefault(dirs[i]);
        if (!s || PyList_Append(path, s) != 0) { Py_XDECREF(s); PyErr_Clear(); return -1; }
        Py_DECREF(s);
    }
    return path ? 0 : -1;
}

static void start_python(void) {
    if (Py_IsInitialized()) { g_py_ok = 1; return; }      /* the host is Python: cffi reuses it */
    if (find_paths() != 0) {
        fprintf(stderr, "qrng-pkcs11: cannot find the Python installation this module belongs to\n");
        return;
    }
    g_starting_python = 1;
    if (!dlopen(QRNG_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
        dlopen(QRNG_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL);
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    config.user_site_directory = 0;
    /* no site module: its .pth processing (the editable install's finder) took a third of the cold start; the two
       folders it would have added come from find_paths instead (add_paths) */
    config.site_import = 0;
    /* the host's C stdio is the host's: never set its buffering (with configure_c_stdio and buffered_stdio = 0,
       Python made the host's stdout unbuffered, and `openssl rand -hex 4000000` to a terminal 20x slower) */
    config.configure_c_stdio = 0;
    PyStatus st = PyConfig_SetBytesString(&config, &config.program_name, g_program);
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
    if (add_paths() != 0) {
        fprintf(stderr, "qrng-pkcs11: cannot set Python's module path\n");
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


/* --- the fast path: a buffer of DRBG output, each byte served once (under the token lock) ----------------------- */
static unsigned char g_buf[BUF_SIZE];
static size_t g_off, g_len;
static int g_fast;

static void buffer_wipe(void) {
    OPENSSL_cleanse(g_buf, sizeof g_buf);
    g_off = g_len = 0;
}
/* called by Python (under the token lock) when buffered output must not be served: a failure, a new source */
void qrng_buffer_clear(void) { buffer_wipe(); }

/* --- fork (token.h: the core calls these with its locks held, in a C host) -------------------------------------- */
static int host_managed(void) { return Py_IsInitialized() && !g_starting_python && !g_started_python; }

static int g_fork_gil_held;
static void py_fork_prepare(void) {
    g_fork_gil_held = g_started_python;
    if (!g_fork_gil_held) return;
    g_fork_gil = PyGILState_Ensure();
    PyOS_BeforeFork();
}
static void py_fork_parent(void) {
    if (!g_fork_gil_held) return;
    PyOS_AfterFork_Parent();
    PyGILState_Release(g_fork_gil);
}
static void py_fork_child(void) {
    if (g_fork_gil_held) {
        PyOS_AfterFork_Child();         /* runs os.register_at_fork hooks: the DRBG is dropped */
        /* Keep this thread's state and only release the GIL: it is now the interpreter's only thread state, and
           deleting it (PyGILState_Release of a state made by the Ensure in fork_prepare) leaves CPython 3.11
           unable to make another ("init_threadstate: thread state already initialized"; found by the ABI
           fuzzer's fork-during-init scenario). */
        if (g_fork_gil == PyGILState_UNLOCKED) PyEval_SaveThread();
        else PyGILState_Release(g_fork_gil);
        g_fork_gil_held = 0;
    }
    buffer_wipe();                      /* never serve the parent's buffered bytes */
}

/* --- waiting for the token lock in a Python host: the GIL is let go meanwhile -------------------------------------
   A Python host may call the module holding the GIL (PyKCS11 does) while another of its threads holds the token
   lock inside a backend call that waits for the GIL: without this, both wait forever (found by a threaded
   PyKCS11 consumer). */
static void *py_wait_begin(void) {
    return g_py_ok && PyGILState_Check() ? (void *)PyEval_SaveThread() : NULL;
}
static void py_wait_end(void *state) {
    if (state) PyEval_RestoreThread((PyThreadState *)state);
}

/* --- the backend operations: one Python entry each ------------------------------------------------------------ */
static unsigned char *g_certs[MAX_CERTS];
static size_t g_cert_len[MAX_CERTS];

static void drop_certificates(void) {
    for (int i = 0; i < MAX_CERTS; i++) { free(g_certs[i]); g_certs[i] = NULL; g_cert_len[i] = 0; }
}

static CK_RV py_init(void) {
    if (ensure_python() != 0) return CKR_GENERAL_ERROR;
    CK_RV rv = CKR_GENERAL_ERROR;
    int fast = 0;
    buffer_wipe();
    py_backend_init(&rv, &fast);
    g_fast = rv == CKR_OK && fast;
    drop_certificates();
    for (size_t i = 0; rv == CKR_OK && i < MAX_CERTS; i++) {
        size_t len = 0;
        unsigned char *der = malloc(MAX_CERT_SIZE);
        if (!der) { rv = CKR_HOST_MEMORY; break; }
        py_backend_certificate(i, der, MAX_CERT_SIZE, &len);
        if (!len || len > MAX_CERT_SIZE) { free(der); break; }
        g_certs[i] = der;
        g_cert_len[i] = len;
    }
    return rv;
}

static void py_finalize(void) {
    buffer_wipe();
    g_fast = 0;
    drop_certificates();
    py_backend_finalize();
}

static const unsigned char *py_certificate(size_t i, size_t *len) {
    if (i >= MAX_CERTS || !g_certs[i]) return NULL;
    *len = g_cert_len[i];
    return g_certs[i];
}

static CK_RV describe(qrng_token_desc *d, int open) {
    CK_RV rv = CKR_GENERAL_ERROR;
    int flags = 0;
    py_backend_info(&rv, open, d->slot_description, sizeof d->slot_description, d->label, sizeof d->label,
                    d->model, sizeof d->model, d->serial, sizeof d->serial, &flags);
    d->error_state = !!(flags & 1);
    d->absent = !!(flags & 2);
    d->hardware = !!(flags & 4);
    return rv;
}
static CK_RV py_info(qrng_token_desc *d) { return describe(d, 1); }
static CK_RV py_slot_info(qrng_token_desc *d) { return describe(d, 0); }
static CK_RV py_present(void) {
    qrng_token_desc d;
    memset(&d, 0, sizeof d);
    CK_RV rv = describe(&d, 1);
    return rv == CKR_OK && d.absent ? CKR_TOKEN_NOT_PRESENT : rv;
}

static CK_RV py_generate(unsigned char *out, CK_ULONG n, int *touched, const char **how) {
    CK_RV rv = CKR_GENERAL_ERROR;
    if (!g_fast || n > FAST_MAX) {
        *how = "from the pipeline";
        py_backend_generate(&rv, out, n, touched);
        return rv;
    }
    *how = "served from the module's buffer";
    if (g_len < n) {
        int filled = 0;
        buffer_wipe();
        py_backend_generate(&rv, g_buf, BUF_SIZE, &filled);
        if (rv != CKR_OK) { buffer_wipe(); *how = "refill of the module's buffer failed"; return rv; }
        g_len = BUF_SIZE;
    }
    memcpy(out, g_buf + g_off, n);
    *touched = 1;
    OPENSSL_cleanse(g_buf + g_off, n);
    g_off += n;
    g_len -= n;
    return CKR_OK;
}

static CK_RV py_seed(const unsigned char *in, CK_ULONG n) {
    CK_RV rv = CKR_GENERAL_ERROR;
    py_backend_seed(&rv, in, n);
    buffer_wipe();                      /* bytes buffered before the seed are not served after it */
    return rv;
}

static char *py_health(size_t *len) {
    size_t cap = 4096;
    for (int tries = 0; tries < 4; tries++) {
        char *out = malloc(cap);
        if (!out) return NULL;
        size_t need = 0;
        py_backend_health(out, cap, &need);
        if (need <= cap) { *len = need; return out; }
        free(out);
        cap = need;                     /* the report grew: ask again with room for it */
    }
    return NULL;
}

const qrng_backend qrng_module_backend = {
    .library_description = "qrng-ceremony QRNG PKCS#11",
    .module_name = "qrng-pkcs11",
    .max_sessions = 4096,
    .init = py_init,
    .finalize = py_finalize,
    .info = py_info,
    .slot_info = py_slot_info,
    .present = py_present,
    .generate = py_generate,
    .seed = py_seed,
    .health = py_health,
    .certificate = py_certificate,
    .fork_prepare = py_fork_prepare,
    .fork_parent = py_fork_parent,
    .fork_child = py_fork_child,
    .fork_host_managed = host_managed,
    .wait_begin = py_wait_begin,
    .wait_end = py_wait_end,
};
