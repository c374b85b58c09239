/* The call log and the re-entry guard of the token core (see token.h).
 *
 * Call log: with QRNG_PKCS11_LOG=FILE in the environment (read once; ignored for setuid programs), one line per
 * call: "HH:MM:SS pid=N C_Name -> CKR_X[ detail]", written line-buffered and appended, so a consumer's use of
 * the token can be shown after the fact (which calls, which codes, where the bytes came from).
 *
 * Re-entry: a C_* call made on a thread that is already inside one of ours is refused with CKR_GENERAL_ERROR and
 * said once on stderr. Seen when OpenSSL's configuration (OPENSSL_CONF -> pkcs11-provider -> this module) is
 * read by an OpenSSL that this module itself is initialising: the nested call would deadlock on the module's own
 * locks. */
#define _GNU_SOURCE             /* secure_getenv */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "qrng_pkcs11.h"
#include "qrng_ckconst.h"
#include "token.h"

static __thread int t_depth;
static int g_reentry_said;

int qrng_enter(const char *fn) {
    if (t_depth > 0) {
        if (!__atomic_exchange_n(&g_reentry_said, 1, __ATOMIC_SEQ_CST))
            fprintf(stderr, "%s: %s called from inside the module itself (an OpenSSL configuration that loads this "
                            "module again?); refused with CKR_GENERAL_ERROR\n", qrng_module_backend.module_name, fn);
        return -1;
    }
    t_depth++;
    return 0;
}

void qrng_leave(void) { t_depth--; }

const char *qrng_rv_name(CK_RV rv) {
    switch (rv) {
#define NAME(c) case c: return #c
    NAME(CKR_OK); NAME(CKR_HOST_MEMORY); NAME(CKR_SLOT_ID_INVALID); NAME(CKR_GENERAL_ERROR);
    NAME(CKR_ARGUMENTS_BAD); NAME(CKR_CANT_LOCK); NAME(CKR_ATTRIBUTE_TYPE_INVALID); NAME(CKR_DEVICE_ERROR);
    NAME(CKR_DEVICE_REMOVED); NAME(CKR_FUNCTION_NOT_SUPPORTED); NAME(CKR_MECHANISM_INVALID);
    NAME(CKR_OBJECT_HANDLE_INVALID); NAME(CKR_OPERATION_ACTIVE); NAME(CKR_OPERATION_NOT_INITIALIZED);
    NAME(CKR_SESSION_COUNT); NAME(CKR_SESSION_HANDLE_INVALID); NAME(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    NAME(CKR_SESSION_READ_ONLY_EXISTS); NAME(CKR_SESSION_READ_WRITE_SO_EXISTS); NAME(CKR_TOKEN_NOT_PRESENT);
    NAME(CKR_USER_ALREADY_LOGGED_IN); NAME(CKR_USER_NOT_LOGGED_IN); NAME(CKR_USER_TYPE_INVALID);
    NAME(CKR_USER_ANOTHER_ALREADY_LOGGED_IN); NAME(CKR_BUFFER_TOO_SMALL); NAME(CKR_CRYPTOKI_NOT_INITIALIZED);
    NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED); NAME(CKR_NO_EVENT);
#undef NAME
    default: return NULL;
    }
}

static FILE *g_log;
static pthread_once_t g_log_once = PTHREAD_ONCE_INIT;

static void log_open(void) {
    const char *path = secure_getenv("QRNG_PKCS11_LOG");
    if (!path || !*path) return;
    g_log = fopen(path, "ae");
    if (g_log) setvbuf(g_log, NULL, _IOLBF, 0);
}

CK_RV qrng_log_call(const char *fn, CK_RV rv, const char *detail) {
    pthread_once(&g_log_once, log_open);
    if (!g_log) return rv;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char code[24];
    const char *name = qrng_rv_name(rv);
    if (!name) { snprintf(code, sizeof code, "%#lx", (unsigned long)rv); name = code; }
    fprintf(g_log, "%02d:%02d:%02d pid=%ld %s -> %s%s%s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, (long)getpid(), fn,
            name, detail && *detail ? " " : "", detail ? detail : "");
    return rv;
}
