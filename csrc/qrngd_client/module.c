/* libqrng-pkcs11-qrngd.so: the PKCS#11 module in daemon mode, in C only (PKCS#11 v2.40).
 *
 * qrngd owns the entropy source, its health tests and the extractor; this module never starts Python, numpy or
 * the pipeline in the consumer's process. It keeps its own SP 800-90A CTR_DRBG (AES-256, no df; csrc/ctr_drbg.c),
 * instantiated from 48 bytes of the daemon's seed material and reseeded from it at least every reseed_ms
 * (100 ms by default) and on every request with prediction resistance. Each reseed is also the health check:
 * a daemon that is down or unhealthy stops this process's output within reseed_ms (fail closed:
 * CKR_DEVICE_ERROR and CKF_ERROR_STATE, the DRBG wiped), unless the configuration names a fallback, and then
 * the token label, model and health object say that it fell back. It recovers by itself when the daemon is back.
 *
 * One token in slot 0 with one public object: the health report (CKO_DATA "qrng health report", JSON).
 * Locking (5.4): OS mutexes, or the application's one mutex; fork-safe (the child drops the DRBG and the
 * connection, never serving the parent's state). Generated beside it: qrng_pkcs11.h, the constants and the
 * stubs of the functions a random-number token does not support (pkcs11_provider/build.py). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "qrng_pkcs11.h"
#include "qrng_ckconst.h"
#include "config.h"
#include "conn.h"
#include "ctr_drbg.h"

#define SEEDLEN 48                 /* CTR_DRBG AES-256 seedlen (SP 800-90A Table 3) */
#define MAX_REQUEST 65536u         /* bytes per DRBG request (2^19 bits, Table 3) */
#define MAX_SESSIONS 4096
#define HEALTH_OBJECT 1
#define HEALTH_MAX 70000
#define NOBODY (-1)                /* g.login when no user is logged in (CKU_SO is 0) */
#define HANG_QUIET_MS 5000         /* after the daemon hung (no answer within timeout_ms), it is asked again only
                                      after this long: meanwhile every call fails closed (or falls back) at once */

volatile int qrng_initialized;

typedef struct {
    int open, rw, finding, find_pos;
    char *health;                  /* the health report as this session last read it (size query, then value) */
    size_t health_len;
} session_t;

static struct {
    qrngd_config cfg;
    qrngd_conn conn;
    unsigned char drbg[SEEDLEN];   /* Key || V */
    int have_drbg;
    long long seeded_ms;           /* monotonic time of the last seed from the daemon (or the fallback) */
    unsigned long long reseeds, bytes_out, fallback_seeds;
    unsigned long long unreported;  /* fallback seeds the daemon has not been told about (FALLBACK, op 4) */
    int failed;                    /* the daemon could not serve at the last attempt */
    long long quiet_until;         /* after a hang (no answer in time): no call waits on the daemon before this */
    int fallback_active;           /* ... and the configured fallback served instead */
    char error[320];
    int login;                     /* NOBODY, or CKU_SO / CKU_USER for the whole application (5.5) */
    session_t sessions[MAX_SESSIONS];
} g;

/* --- locking (v2.40 5.4 C_Initialize cases 1-4) ---------------------------------------------------------- */
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static CK_C_INITIALIZE_ARGS g_args;
static void *g_app_mutex;

static void lock(void) { if (g_app_mutex) g_args.LockMutex(g_app_mutex); else pthread_mutex_lock(&g_lock); }
static void unlock(void) { if (g_app_mutex) g_args.UnlockMutex(g_app_mutex); else pthread_mutex_unlock(&g_lock); }

static void wipe(void *p, size_t n) { OPENSSL_cleanse(p, n); }

static void drop_drbg(void) {
    wipe(g.drbg, sizeof g.drbg);
    g.have_drbg = 0;
}

/* --- fork safety: the child never serves the parent's DRBG state, nor shares its connection ------------- */
static void fork_prepare(void) { pthread_mutex_lock(&g_init_lock); if (!g_app_mutex) pthread_mutex_lock(&g_lock); }
static void fork_parent(void) { if (!g_app_mutex) pthread_mutex_unlock(&g_lock); pthread_mutex_unlock(&g_init_lock); }
static void fork_child(void) {
    drop_drbg();
    qrngd_close(&g.conn);
    if (!g_app_mutex) pthread_mutex_init(&g_lock, NULL);
    pthread_mutex_init(&g_init_lock, NULL);
}
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- seeding: the daemon, or the named fallback ---------------------------------------------------------- */
static int os_random(unsigned char *out, size_t n) {
    for (size_t done = 0; done < n;) {
        ssize_t k = getrandom(out + done, n - done, 0);
        if (k < 0) return -1;
        done += (size_t)k;
    }
    return 0;
}

/* 48 bytes of seed into out: 0, or -1 (g.error says why; the DRBG is wiped) */
static int get_seed(unsigned char *out) {
    char err[sizeof g.error];
    int r;
    if (now_ms() < g.quiet_until) {
        /* the daemon hung at the last attempt: fail (or fall back) at once instead of making every caller, and
           C_GetTokenInfo, wait timeout_ms under the module's lock; it is asked again after HANG_QUIET_MS */
        snprintf(err, sizeof err, "%s", g.error[0] ? g.error : "qrngd did not answer in time");
        r = -1;
    } else {
        r = qrngd_seed(&g.conn, out, SEEDLEN, err, sizeof err);
        if (r != 0 && g.conn.timed_out) g.quiet_until = now_ms() + HANG_QUIET_MS;
    }
    if (r == 0) {
        g.failed = g.fallback_active = 0;
        g.error[0] = 0;
        if (g.unreported) {       /* the daemon is back: tell it (its metrics and audit log) that we fell back */
            uint32_t n = g.unreported > 0xffffffffu ? 0xffffffffu : (uint32_t)g.unreported;
            unsigned char req[4] = { (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                                     (unsigned char)(n >> 24) };
            unsigned char resp[64];
            uint32_t got = 0;
            int status = -1;
            if (qrngd_request(&g.conn, QRNGD_FALLBACK, req, 4, resp, sizeof resp, &got, &status, err, sizeof err) == 0
                && status == QRNGD_OK)
                g.unreported = 0;
        }
        return 0;
    }
    g.failed = 1;
    snprintf(g.error, sizeof g.error, "%s", err);
    if (g.cfg.fallback == FALLBACK_OS && os_random(out, SEEDLEN) == 0) {
        g.fallback_active = 1;
        g.fallback_seeds++;
        g.unreported++;
        return 0;
    }
    g.fallback_active = 0;
    drop_drbg();
    return -1;
}

/* the DRBG, instantiated (10.2.1.3.1) or reseeded (10.2.1.4.1) from the daemon when it is missing, older
   than reseed_ms, or prediction resistance is asked for: 0, or -1 (fail closed) */
static int fresh_drbg(int prediction_resistance) {
    if (g.have_drbg && !prediction_resistance && now_ms() - g.seeded_ms < g.cfg.reseed_ms) return 0;
    unsigned char seed[SEEDLEN], pers[SEEDLEN];
    if (get_seed(seed)) return -1;
    if (!g.have_drbg) {
        /* personalization string: SHA-384 of a label, the pid and 16 bytes of the OS (distinct per process) */
        unsigned char in[64];
        unsigned int plen = 0;
        pid_t pid = getpid();
        memset(in, 0, sizeof in);
        memcpy(in, "qrngd client module", 19);
        memcpy(in + 24, &pid, sizeof pid);
        if (os_random(in + 32, 16) || EVP_Digest(in, sizeof in, pers, &plen, EVP_sha384(), NULL) != 1) {
            wipe(seed, sizeof seed);
            snprintf(g.error, sizeof g.error, "cannot make the DRBG's personalization string");
            g.failed = 1;
            return -1;
        }
        for (int i = 0; i < SEEDLEN; i++) seed[i] ^= pers[i];
        memset(g.drbg, 0, sizeof g.drbg);
    }
    int r = qrng_ctr_drbg_update(g.drbg, seed);
    wipe(seed, sizeof seed);
    if (r) { drop_drbg(); g.failed = 1; snprintf(g.error, sizeof g.error, "DRBG update failed"); return -1; }
    g.have_drbg = 1;
    g.seeded_ms = now_ms();
    g.reseeds++;
    return 0;
}

/* --- general purpose (5.4) ---------------------------------------------------------------------------------- */
static void program_name(char *out, size_t n) {
    char comm[32] = "";
    FILE *f = fopen("/proc/self/comm", "r");
    if (f) {
        if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
        fclose(f);
    }
    comm[strcspn(comm, "\n")] = 0;
    for (char *p = comm; *p; p++) if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) *p = '_';
    snprintf(out, n, "pkcs11:%s", comm[0] ? comm : "unknown");
}

QRNG_EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs) {
    pthread_once(&g_atfork_once, install_atfork);
    pthread_mutex_lock(&g_init_lock);
    if (qrng_initialized) { pthread_mutex_unlock(&g_init_lock); return CKR_CRYPTOKI_ALREADY_INITIALIZED; }
    memset(&g_args, 0, sizeof g_args);
    g_app_mutex = NULL;
    if (pInitArgs) {
        CK_C_INITIALIZE_ARGS *a = (CK_C_INITIALIZE_ARGS *)pInitArgs;
        int given = !!a->CreateMutex + !!a->DestroyMutex + !!a->LockMutex + !!a->UnlockMutex;
        if (given != 0 && given != 4) { pthread_mutex_unlock(&g_init_lock); return CKR_ARGUMENTS_BAD; }
        g_args = *a;                  /* pReserved may carry NSS / p11-kit module parameters: tolerated */
        if (given == 4 && !(a->flags & CKF_OS_LOCKING_OK) && a->CreateMutex(&g_app_mutex) != CKR_OK) {
            g_app_mutex = NULL;
            pthread_mutex_unlock(&g_init_lock);
            return CKR_CANT_LOCK;
        }
    }
    char err[512];
    qrngd_config cfg;
    if (qrngd_config_load(&cfg, err, sizeof err)) {
        fprintf(stderr, "qrng-pkcs11-qrngd: configuration: %s\n", err);
        if (g_app_mutex) { g_args.DestroyMutex(g_app_mutex); g_app_mutex = NULL; }
        pthread_mutex_unlock(&g_init_lock);
        return CKR_GENERAL_ERROR;
    }
    memset(&g, 0, sizeof g);
    g.cfg = cfg;
    g.conn.fd = -1;
    g.conn.timeout_ms = 2000;
    g.login = NOBODY;
    snprintf(g.conn.path, sizeof g.conn.path, "%s", cfg.socket);
    program_name(g.conn.name, sizeof g.conn.name);
    qrng_initialized = 1;
    pthread_mutex_unlock(&g_init_lock);
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved) {
    if (pReserved) return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&g_init_lock);
    if (!qrng_initialized) { pthread_mutex_unlock(&g_init_lock); return CKR_CRYPTOKI_NOT_INITIALIZED; }
    lock();
    if (g.unreported)  /* a short-lived consumer that fell back leaves a trace even if qrngd never heard of it */
        fprintf(stderr, "qrng-pkcs11-qrngd: %llu seed(s) came from the named fallback (os) while qrngd could not "
                        "serve, and could not be reported to it: %s\n", g.unreported, g.error);
    drop_drbg();
    qrngd_close(&g.conn);
    for (int i = 0; i < MAX_SESSIONS; i++) free(g.sessions[i].health);
    memset(g.sessions, 0, sizeof g.sessions);
    qrng_initialized = 0;
    unlock();
    if (g_app_mutex) { g_args.DestroyMutex(g_app_mutex); g_app_mutex = NULL; }
    pthread_mutex_unlock(&g_init_lock);
    return CKR_OK;
}

static void padded(CK_UTF8CHAR *dst, const char *text, size_t size) {
    size_t n = strlen(text);
    memset(dst, ' ', size);
    memcpy(dst, text, n < size ? n : size);
}

QRNG_EXPORT CK_RV C_GetInfo(CK_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    memset(pInfo, 0, sizeof *pInfo);
    pInfo->cryptokiVersion.major = 2;
    pInfo->cryptokiVersion.minor = 40;
    padded(pInfo->manufacturerID, "qrng-ceremony", 32);
    padded(pInfo->libraryDescription, "qrng-ceremony qrngd client", 32);
    pInfo->libraryVersion.major = 0;
    pInfo->libraryVersion.minor = 1;
    return CKR_OK;
}

/* --- slot and token (5.5) ---------------------------------------------------------------------------------- */
QRNG_EXPORT CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
    (void)tokenPresent;               /* the token is always present: it is this process's client of qrngd */
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    if (!pSlotList) { *pulCount = 1; return CKR_OK; }
    if (*pulCount < 1) { *pulCount = 1; return CKR_BUFFER_TOO_SMALL; }
    pSlotList[0] = 0;
    *pulCount = 1;
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    char desc[160];
    snprintf(desc, sizeof desc, "qrngd at %s", g.cfg.socket);
    padded(pInfo->slotDescription, desc, 64);
    padded(pInfo->manufacturerID, "qrng-ceremony", 32);
    pInfo->flags = CKF_TOKEN_PRESENT;
    pInfo->hardwareVersion.major = 1; pInfo->hardwareVersion.minor = 0;
    pInfo->firmwareVersion.major = 0; pInfo->firmwareVersion.minor = 1;
    return CKR_OK;
}

static int session_count(int rw_only) {
    int n = 0;
    for (int i = 0; i < MAX_SESSIONS; i++) n += g.sessions[i].open && (!rw_only || g.sessions[i].rw);
    return n;
}

QRNG_EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    lock();
    fresh_drbg(0);                    /* the flags below say how the daemon is now (at most reseed_ms old) */
    const char *label = g.fallback_active ? "qrng via qrngd (FALLBACK: os)" :
                        g.conn.simulator ? "qrng via qrngd (SIMULATOR)" : "qrng via qrngd";
    const char *model = g.fallback_active ? "QRNGD FALLBACK" : g.conn.simulator ? "QRNGD SIMULATOR" : "QRNGD";
    padded(pInfo->label, label, 32);
    padded(pInfo->manufacturerID, "qrng-ceremony", 32);
    padded(pInfo->model, model, 16);
    padded(pInfo->serialNumber, "qrngd", 16);
    pInfo->flags = CKF_RNG | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED |
                   (g.failed && !g.fallback_active ? CKF_ERROR_STATE : 0);
    pInfo->ulMaxSessionCount = MAX_SESSIONS;
    pInfo->ulSessionCount = (CK_ULONG)session_count(0);
    pInfo->ulMaxRwSessionCount = MAX_SESSIONS;
    pInfo->ulRwSessionCount = (CK_ULONG)session_count(1);
    pInfo->ulMaxPinLen = 64;
    pInfo->ulMinPinLen = 0;
    pInfo->ulTotalPublicMemory = pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulTotalPrivateMemory = pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->hardwareVersion.major = 1; pInfo->hardwareVersion.minor = 0;
    pInfo->firmwareVersion.major = 0; pInfo->firmwareVersion.minor = 1;
    memset(pInfo->utcTime, ' ', 16);
    unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount) {
    (void)pMechanismList;             /* a random-number token: no mechanisms */
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    *pulCount = 0;
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo) {
    (void)type;
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    return CKR_MECHANISM_INVALID;
}

QRNG_EXPORT CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved) {
    (void)pSlot; (void)pReserved;
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    return (flags & CKF_DONT_BLOCK) ? CKR_NO_EVENT : CKR_FUNCTION_NOT_SUPPORTED;
}

/* --- sessions (5.6) and login (5.5: no PIN protects this token; logging in is accepted) ------------------- */
static session_t *session(CK_SESSION_HANDLE h) {
    if (h < 1 || h > MAX_SESSIONS || !g.sessions[h - 1].open) return NULL;
    return &g.sessions[h - 1];
}

QRNG_EXPORT CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                                CK_SESSION_HANDLE_PTR phSession) {
    (void)pApplication; (void)Notify;
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!phSession) return CKR_ARGUMENTS_BAD;
    if (!(flags & CKF_SERIAL_SESSION)) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    lock();
    if (!(flags & CKF_RW_SESSION) && g.login == (int)CKU_SO) { unlock(); return CKR_SESSION_READ_WRITE_SO_EXISTS; }
    for (int i = 0; i < MAX_SESSIONS; i++) {
        if (!g.sessions[i].open) {
            memset(&g.sessions[i], 0, sizeof g.sessions[i]);
            g.sessions[i].open = 1;
            g.sessions[i].rw = !!(flags & CKF_RW_SESSION);
            *phSession = (CK_SESSION_HANDLE)(i + 1);
            unlock();
            return CKR_OK;
        }
    }
    unlock();
    return CKR_SESSION_COUNT;
}

static void close_one(session_t *s) {
    free(s->health);
    memset(s, 0, sizeof *s);
}

QRNG_EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE hSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    lock();
    session_t *s = session(hSession);
    if (!s) { unlock(); return CKR_SESSION_HANDLE_INVALID; }
    close_one(s);
    if (!session_count(0)) g.login = NOBODY;   /* closing the last session logs the application out (5.6) */
    unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID slotID) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    lock();
    for (int i = 0; i < MAX_SESSIONS; i++) if (g.sessions[i].open) close_one(&g.sessions[i]);
    g.login = NOBODY;
    unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    lock();
    session_t *s = session(hSession);
    if (!s) { unlock(); return CKR_SESSION_HANDLE_INVALID; }
    pInfo->slotID = 0;
    if (g.login == (int)CKU_SO) pInfo->state = CKS_RW_SO_FUNCTIONS;
    else if (g.login == (int)CKU_USER) pInfo->state = s->rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    else pInfo->state = s->rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
    pInfo->flags = CKF_SERIAL_SESSION | (s->rw ? CKF_RW_SESSION : 0);
    pInfo->ulDeviceError = 0;
    unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
    (void)pPin;
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    lock();
    CK_RV rv = CKR_OK;
    if (!session(hSession)) rv = CKR_SESSION_HANDLE_INVALID;
    else if (userType != CKU_SO && userType != CKU_USER && userType != CKU_CONTEXT_SPECIFIC) rv = CKR_USER_TYPE_INVALID;
    else if (userType == CKU_CONTEXT_SPECIFIC) rv = CKR_OPERATION_NOT_INITIALIZED;
    else if (pPin && ulPinLen > 64) rv = CKR_ARGUMENTS_BAD;
    else if (g.login == (int)userType) rv = CKR_USER_ALREADY_LOGGED_IN;
    else if (g.login != NOBODY) rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    else if (userType == CKU_SO) {
        for (int i = 0; i < MAX_SESSIONS; i++) if (g.sessions[i].open && !g.sessions[i].rw) rv = CKR_SESSION_READ_ONLY_EXISTS;
    }
    if (rv == CKR_OK) g.login = (int)userType;
    unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_Logout(CK_SESSION_HANDLE hSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    lock();
    CK_RV rv = !session(hSession) ? CKR_SESSION_HANDLE_INVALID : g.login == NOBODY ? CKR_USER_NOT_LOGGED_IN : CKR_OK;
    if (rv == CKR_OK) g.login = NOBODY;
    unlock();
    return rv;
}

/* --- the health object (5.7) ------------------------------------------------------------------------------- */
static size_t json_str(char *out, size_t cap, const char *s) {
    size_t k = 0;
    if (k < cap) out[k++] = '"';
    for (; *s && k + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[k++] = '\\'; out[k++] = (char)c; }
        else if (c < 0x20 || c >= 0x7f) k += (size_t)snprintf(out + k, cap - k, "\\u%04x", c);
        else out[k++] = (char)c;
    }
    if (k < cap) out[k++] = '"';
    return k;
}

/* whether the daemon's text is one JSON object and nothing else: braces balance outside strings and close only
   at its last byte. The daemon's answer is spliced into the health object as its "daemon" member; text that
   closed the object early (`}, "state": "operational", ...`) would override the module's own fields. */
static int single_object(const unsigned char *s, uint32_t n) {
    int depth = 0, in_str = 0, esc = 0;
    if (n < 2 || s[0] != '{') return 0;
    for (uint32_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') return 0;
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (--depth < 0) return 0;
            if (depth == 0 && i != n - 1) return 0;
        }
    }
    return depth == 0 && !in_str;
}

/* the report as JSON (malloc'd): this process's DRBG and seeding, and the daemon's own STATUS answer */
static char *health_report(size_t *len) {
    char *out = malloc(HEALTH_MAX);
    if (!out) return NULL;
    fresh_drbg(0);
    const char *state = g.fallback_active ? "fallback" : g.failed ? "failed" : "operational";
    size_t k = (size_t)snprintf(out, HEALTH_MAX, "{\"mode\": \"daemon\", \"module\": \"libqrng-pkcs11-qrngd\", "
                                "\"state\": \"%s\", \"socket\": ", state);
    k += json_str(out + k, HEALTH_MAX - k, g.cfg.socket);
    k += (size_t)snprintf(out + k, HEALTH_MAX - k, ", \"error\": ");
    if (g.error[0] && g.failed) k += json_str(out + k, HEALTH_MAX - k, g.error);
    else k += (size_t)snprintf(out + k, HEALTH_MAX - k, "null");
    double age = g.have_drbg ? (double)(now_ms() - g.seeded_ms) / 1000.0 : -1.0;
    k += (size_t)snprintf(out + k, HEALTH_MAX - k, ", \"fallback\": \"%s\", \"fell_back\": %s, \"fallback_seeds\": %llu, "
                          "\"reseeds\": %llu, \"bytes_out\": %llu, \"seed_age_s\": %.3f, \"simulator\": %s, \"daemon\": ",
                          g.cfg.fallback == FALLBACK_OS ? "os" : "none", g.fallback_active ? "true" : "false",
                          g.fallback_seeds, g.reseeds, g.bytes_out, age, g.conn.simulator ? "true" : "false");
    unsigned char resp[60000];
    uint32_t n = 0;
    int status = 0;
    char err[320];
    /* after a hang the daemon is not asked again before quiet_until, for the health object either */
    int asked = now_ms() >= g.quiet_until;
    int answered = asked &&
        qrngd_request(&g.conn, QRNGD_STATUS, NULL, 0, resp, sizeof resp, &n, &status, err, sizeof err) == 0;
    if (asked && !answered && g.conn.timed_out) g.quiet_until = now_ms() + HANG_QUIET_MS;
    if (answered && status == QRNGD_OK && single_object(resp, n) && k + n + 2 < HEALTH_MAX) {
        memcpy(out + k, resp, n);
        k += n;
    } else {
        k += (size_t)snprintf(out + k, HEALTH_MAX - k, "{\"state\": \"unreachable\"}");
    }
    k += (size_t)snprintf(out + k, HEALTH_MAX - k, "}");
    *len = k;
    return out;
}

typedef struct { CK_ATTRIBUTE_TYPE type; const void *value; CK_ULONG len; } attr_t;

static const CK_ULONG k_data = CKO_DATA;      /* CK_OBJECT_CLASS */
static const CK_BBOOL k_true = 1, k_false = 0;

/* the health object's attributes; CKA_VALUE comes from the session's snapshot */
static int health_attr(CK_ATTRIBUTE_TYPE t, const session_t *s, attr_t *a) {
    static const char label[] = "qrng health report", app[] = "qrng-ceremony";
    a->type = t;
    switch (t) {
    case CKA_CLASS: a->value = &k_data; a->len = sizeof k_data; return 0;
    case CKA_TOKEN: a->value = &k_true; a->len = 1; return 0;
    case CKA_PRIVATE: case CKA_MODIFIABLE: a->value = &k_false; a->len = 1; return 0;
    case CKA_LABEL: a->value = label; a->len = sizeof label - 1; return 0;
    case CKA_APPLICATION: a->value = app; a->len = sizeof app - 1; return 0;
    case CKA_OBJECT_ID: a->value = ""; a->len = 0; return 0;
    case CKA_VALUE: a->value = s->health; a->len = (CK_ULONG)s->health_len; return 0;
    default: return -1;
    }
}

static CK_RV snapshot(session_t *s) {
    char *h = NULL;
    size_t n = 0;
    if (!(h = health_report(&n))) return CKR_HOST_MEMORY;
    free(s->health);
    s->health = h;
    s->health_len = n;
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pTemplate && ulCount) return CKR_ARGUMENTS_BAD;
    lock();
    session_t *s = session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : s->finding ? CKR_OPERATION_ACTIVE : CKR_OK;
    if (rv == CKR_OK && !s->health) rv = snapshot(s);
    if (rv == CKR_OK) {
        int match = 1;
        for (CK_ULONG i = 0; i < ulCount && match; i++) {
            attr_t a;
            if (health_attr(pTemplate[i].type, s, &a) || a.len != pTemplate[i].ulValueLen ||
                (a.len && (!pTemplate[i].pValue || memcmp(a.value, pTemplate[i].pValue, a.len))))
                match = 0;
        }
        s->finding = 1;
        s->find_pos = match ? 0 : 1;      /* one object: position 1 means none (left) */
    }
    unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount,
                                CK_ULONG_PTR pulObjectCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pulObjectCount || (!phObject && ulMaxObjectCount)) return CKR_ARGUMENTS_BAD;
    lock();
    session_t *s = session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : !s->finding ? CKR_OPERATION_NOT_INITIALIZED : CKR_OK;
    if (rv == CKR_OK) {
        *pulObjectCount = 0;
        if (s->find_pos == 0 && ulMaxObjectCount) {
            phObject[0] = HEALTH_OBJECT;
            *pulObjectCount = 1;
            s->find_pos = 1;
        }
    }
    unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    lock();
    session_t *s = session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : !s->finding ? CKR_OPERATION_NOT_INITIALIZED : CKR_OK;
    if (rv == CKR_OK) s->finding = 0;
    unlock();
    return rv;
}

/* C_GetAttributeValue (5.7): a size query (pValue NULL) for CKA_VALUE takes a new snapshot of the report, so
   the value read next has exactly the size just given */
QRNG_EXPORT CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                                      CK_ULONG ulCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pTemplate && ulCount) return CKR_ARGUMENTS_BAD;
    lock();
    session_t *s = session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : hObject != HEALTH_OBJECT ? CKR_OBJECT_HANDLE_INVALID : CKR_OK;
    for (CK_ULONG i = 0; rv == CKR_OK && i < ulCount; i++)
        if (pTemplate[i].type == CKA_VALUE && (!pTemplate[i].pValue || !s->health)) rv = snapshot(s);
    CK_RV worst = rv;
    for (CK_ULONG i = 0; rv == CKR_OK && i < ulCount; i++) {
        attr_t a;
        CK_ATTRIBUTE *t = &pTemplate[i];
        if (health_attr(t->type, s, &a)) { t->ulValueLen = CK_UNAVAILABLE_INFORMATION; worst = CKR_ATTRIBUTE_TYPE_INVALID; }
        else if (!t->pValue) t->ulValueLen = a.len;
        else if (t->ulValueLen < a.len) {
            t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
            if (worst == CKR_OK) worst = CKR_BUFFER_TOO_SMALL;
        } else {
            if (a.len) memcpy(t->pValue, a.value, a.len);
            t->ulValueLen = a.len;
        }
    }
    unlock();
    return worst;
}

QRNG_EXPORT CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pulSize) return CKR_ARGUMENTS_BAD;
    lock();
    session_t *s = session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : hObject != HEALTH_OBJECT ? CKR_OBJECT_HANDLE_INVALID : CKR_OK;
    if (rv == CKR_OK && !s->health) rv = snapshot(s);
    if (rv == CKR_OK) {             /* the sum of the attribute values' lengths, as the Python module counts */
        static const CK_ATTRIBUTE_TYPE all[] = { CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_LABEL,
                                                 CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE };
        attr_t a;
        *pulSize = 0;
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) if (!health_attr(all[i], s, &a)) *pulSize += a.len;
    }
    unlock();
    return rv;
}

/* --- random numbers (5.15) ---------------------------------------------------------------------------------- */
QRNG_EXPORT CK_RV C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pSeed && ulSeedLen) return CKR_ARGUMENTS_BAD;
    lock();
    CK_RV rv = session(hSession) ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
    /* the caller's bytes are mixed in as additional input with a fresh seed from the daemon, never credited */
    if (rv == CKR_OK && fresh_drbg(1)) rv = CKR_DEVICE_ERROR;
    if (rv == CKR_OK) {
        unsigned char add[SEEDLEN];
        unsigned int n = 0;
        if (EVP_Digest(pSeed ? pSeed : (CK_BYTE_PTR)"", ulSeedLen, add, &n, EVP_sha384(), NULL) != 1 ||
            qrng_ctr_drbg_update(g.drbg, add)) {
            drop_drbg();
            rv = CKR_FUNCTION_FAILED;
        }
        wipe(add, sizeof add);
    }
    unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pRandomData && ulRandomLen) return CKR_ARGUMENTS_BAD;
    lock();
    CK_RV rv = session(hSession) ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
    CK_ULONG done = 0, touched = 0;
    while (rv == CKR_OK && done < ulRandomLen) {
        CK_ULONG k = ulRandomLen - done < MAX_REQUEST ? ulRandomLen - done : MAX_REQUEST;
        if (fresh_drbg(g.cfg.prediction_resistance && done == 0)) { rv = CKR_DEVICE_ERROR; break; }
        touched = done + k;
        if (qrng_ctr_drbg_generate(g.drbg, NULL, pRandomData + done, k)) { drop_drbg(); rv = CKR_FUNCTION_FAILED; }
        else done += k;
    }
    /* never half an answer: a failure after output began leaves the buffer zeroed, one before leaves it as it was */
    if (rv == CKR_OK) g.bytes_out += ulRandomLen;
    else if (touched) wipe(pRandomData, ulRandomLen);
    unlock();
    return rv;
}
