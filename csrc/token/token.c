/* The PKCS#11 token core (see token.h): slot, token, sessions, login, objects, random numbers. Section numbers
 * are PKCS#11 v2.40's. Each exported C_x is one line: the re-entry guard and the call log around an inner
 * function that checks pointers and state, takes the lock and calls the backend (CALL below).
 * Locking (5.4): OS mutexes, or the application's one mutex. Fork safety: in a C host the init lock and the token
 * lock are taken around fork(), then the backend's own (an interpreter's); the child re-creates them and the
 * backend drops its secret state. Lock order everywhere: init, token, backend. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "qrng_pkcs11.h"
#include "qrng_ckconst.h"
#include "token.h"
#include "internal.h"

#define NOBODY (-1)                /* g.login when no user is logged in (CKU_SO is 0) */
#define MAX_PIN 64
#define SESSION_SLOTS 4096         /* the session table; a backend may allow fewer */

volatile int qrng_initialized;

static const qrng_backend *const B = &qrng_module_backend;

static struct {
    int login;                     /* NOBODY, or CKU_SO / CKU_USER for the whole application (5.5) */
    session_t sessions[SESSION_SLOTS];
} g;

/* --- locking (5.4 C_Initialize cases 1-4) and fork safety ---------------------------------------------------- */
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static CK_C_INITIALIZE_ARGS g_args;
static void *g_app_mutex;
static int g_fork_locked;          /* fork_prepare took the locks (a C host) */

/* a wait for the lock lets the backend release what the lock's holder may need meanwhile (see wait_begin) */
void qrng_lock(void) {
    if (!g_app_mutex && pthread_mutex_trylock(&g_lock) == 0) return;
    void *state = B->wait_begin ? B->wait_begin() : NULL;
    if (g_app_mutex) g_args.LockMutex(g_app_mutex); else pthread_mutex_lock(&g_lock);
    if (B->wait_end) B->wait_end(state);
}
void qrng_unlock(void) { if (g_app_mutex) g_args.UnlockMutex(g_app_mutex); else pthread_mutex_unlock(&g_lock); }

static void fork_prepare(void) {
    /* a host that forks holding a lock our backend waits for (a Python host's os.fork() and the GIL) would
       deadlock against a thread of ours that holds the token lock and waits for it: take nothing there */
    g_fork_locked = !(B->fork_host_managed && B->fork_host_managed());
    if (!g_fork_locked) return;
    pthread_mutex_lock(&g_init_lock);
    qrng_lock();
    if (B->fork_prepare) B->fork_prepare();
}
static void fork_parent(void) {
    if (!g_fork_locked) return;
    if (B->fork_parent) B->fork_parent();
    qrng_unlock();
    pthread_mutex_unlock(&g_init_lock);
}
static void fork_child(void) {
    B->fork_child();               /* the child never serves the parent's state, nor shares its connection */
    if (g_app_mutex && g_fork_locked) g_args.UnlockMutex(g_app_mutex);
    else if (!g_app_mutex) pthread_mutex_init(&g_lock, NULL);
    pthread_mutex_init(&g_init_lock, NULL);
}
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static CK_ULONG max_sessions(void) { return B->max_sessions < SESSION_SLOTS ? B->max_sessions : SESSION_SLOTS; }

/* --- general purpose (5.4) ----------------------------------------------------------------------------------- */
static CK_RV take_init_args(const CK_C_INITIALIZE_ARGS *a) {
    memset(&g_args, 0, sizeof g_args);
    g_app_mutex = NULL;
    if (!a) return CKR_OK;
    int given = !!a->CreateMutex + !!a->DestroyMutex + !!a->LockMutex + !!a->UnlockMutex;
    if (given != 0 && given != 4) return CKR_ARGUMENTS_BAD;
    g_args = *a;                   /* pReserved may carry NSS / p11-kit module parameters: tolerated */
    if (given == 4 && !(a->flags & CKF_OS_LOCKING_OK) && a->CreateMutex(&g_app_mutex) != CKR_OK) {
        g_app_mutex = NULL;
        return CKR_CANT_LOCK;
    }
    return CKR_OK;
}

static CK_RV initialize(CK_VOID_PTR pInitArgs) {
    pthread_once(&g_atfork_once, install_atfork);
    pthread_mutex_lock(&g_init_lock);
    CK_RV rv = qrng_initialized ? CKR_CRYPTOKI_ALREADY_INITIALIZED : take_init_args(pInitArgs);
    if (rv == CKR_OK && (rv = B->init()) == CKR_OK && (rv = qrng_objects_load(B)) != CKR_OK) {
        fprintf(stderr, "%s: an attestation certificate is not a DER X.509 certificate\n", B->module_name);
        B->finalize();
    }
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED && g_app_mutex) {
        g_args.DestroyMutex(g_app_mutex);
        g_app_mutex = NULL;
    }
    if (rv == CKR_OK) {
        memset(&g, 0, sizeof g);
        g.login = NOBODY;
        qrng_initialized = 1;
    }
    pthread_mutex_unlock(&g_init_lock);
    return rv;
}

QRNG_EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs) { CALL("C_Initialize", initialize(pInitArgs)); }

static CK_RV finalize(CK_VOID_PTR pReserved) {
    if (pReserved) return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&g_init_lock);
    if (!qrng_initialized) { pthread_mutex_unlock(&g_init_lock); return CKR_CRYPTOKI_NOT_INITIALIZED; }
    qrng_lock();
    B->finalize();
    qrng_objects_free();
    for (int i = 0; i < SESSION_SLOTS; i++) free(g.sessions[i].health);
    memset(g.sessions, 0, sizeof g.sessions);
    qrng_initialized = 0;
    qrng_unlock();
    if (g_app_mutex) { g_args.DestroyMutex(g_app_mutex); g_app_mutex = NULL; }
    pthread_mutex_unlock(&g_init_lock);
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved) { CALL("C_Finalize", finalize(pReserved)); }

/* blank-padded, never NUL-terminated (3.2 for CK_UTF8CHAR arrays) */
static void padded(CK_UTF8CHAR *dst, const char *text, size_t size) {
    size_t n = strlen(text);
    memset(dst, ' ', size);
    memcpy(dst, text, n < size ? n : size);
}

static void versions(CK_VERSION *hardware, CK_VERSION *firmware) {
    hardware->major = 1; hardware->minor = 0;
    firmware->major = 0; firmware->minor = 1;
}

static CK_RV get_info(CK_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    memset(pInfo, 0, sizeof *pInfo);
    pInfo->cryptokiVersion.major = 2;
    pInfo->cryptokiVersion.minor = 40;
    padded(pInfo->manufacturerID, "qrng-ceremony", 32);
    padded(pInfo->libraryDescription, B->library_description, 32);
    pInfo->libraryVersion.major = 0;
    pInfo->libraryVersion.minor = 1;
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetInfo(CK_INFO_PTR pInfo) { CALL("C_GetInfo", get_info(pInfo)); }

/* --- slot and token (5.5) ------------------------------------------------------------------------------------- */
static CK_RV get_slot_list(CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    if (!pSlotList) { *pulCount = 1; return CKR_OK; }
    if (*pulCount < 1) { *pulCount = 1; return CKR_BUFFER_TOO_SMALL; }
    pSlotList[0] = 0;
    *pulCount = 1;
    return CKR_OK;
}

/* tokenPresent is not looked at: the slot is listed either way, and says in C_GetSlotInfo whether a device is in */
QRNG_EXPORT CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
    (void)tokenPresent;
    CALL("C_GetSlotList", get_slot_list(pSlotList, pulCount));
}

/* the backend's description now (under the token lock); `slot`: without opening the source */
static CK_RV describe(qrng_token_desc *d, int slot) {
    memset(d, 0, sizeof *d);
    return (slot && B->slot_info ? B->slot_info : B->info)(d);
}

static CK_RV get_slot_info(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    qrng_token_desc d;
    qrng_lock();
    CK_RV rv = describe(&d, 1);
    qrng_unlock();
    if (rv != CKR_OK) return rv;
    padded(pInfo->slotDescription, d.slot_description, 64);
    padded(pInfo->manufacturerID, "qrng-ceremony", 32);
    pInfo->flags = (d.absent ? 0 : CKF_TOKEN_PRESENT) | (d.hardware ? CKF_HW_SLOT | CKF_REMOVABLE_DEVICE : 0);
    versions(&pInfo->hardwareVersion, &pInfo->firmwareVersion);
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
    CALL("C_GetSlotInfo", get_slot_info(slotID, pInfo));
}

static int session_count(int rw_only) {
    int n = 0;
    for (int i = 0; i < SESSION_SLOTS; i++) n += g.sessions[i].open && (!rw_only || g.sessions[i].rw);
    return n;
}

static CK_RV get_token_info(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    qrng_token_desc d;
    qrng_lock();
    CK_RV rv = describe(&d, 0);    /* the flags below say how the source is now */
    if (rv == CKR_OK && d.absent) rv = CKR_TOKEN_NOT_PRESENT;
    if (rv != CKR_OK) { qrng_unlock(); return rv; }
    padded(pInfo->label, d.label, 32);
    padded(pInfo->manufacturerID, "qrng-ceremony", 32);
    padded(pInfo->model, d.model, 16);
    padded(pInfo->serialNumber, d.serial, 16);
    pInfo->flags = CKF_RNG | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | (d.error_state ? CKF_ERROR_STATE : 0);
    pInfo->ulMaxSessionCount = pInfo->ulMaxRwSessionCount = max_sessions();
    pInfo->ulSessionCount = (CK_ULONG)session_count(0);
    pInfo->ulRwSessionCount = (CK_ULONG)session_count(1);
    pInfo->ulMaxPinLen = MAX_PIN;
    pInfo->ulMinPinLen = 0;
    pInfo->ulTotalPublicMemory = pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulTotalPrivateMemory = pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    versions(&pInfo->hardwareVersion, &pInfo->firmwareVersion);
    memset(pInfo->utcTime, ' ', 16);
    qrng_unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
    CALL("C_GetTokenInfo", get_token_info(slotID, pInfo));
}

static CK_RV get_mechanism_list(CK_SLOT_ID slotID, CK_ULONG_PTR pulCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    *pulCount = 0;                 /* a random-number token: no mechanisms */
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount) {
    (void)pMechanismList;
    CALL("C_GetMechanismList", get_mechanism_list(slotID, pulCount));
}

static CK_RV get_mechanism_info(CK_SLOT_ID slotID, CK_MECHANISM_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    return CKR_MECHANISM_INVALID;
}

QRNG_EXPORT CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo) {
    (void)type;
    CALL("C_GetMechanismInfo", get_mechanism_info(slotID, pInfo));
}

static CK_RV wait_for_slot_event(CK_FLAGS flags, CK_VOID_PTR pReserved) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (pReserved) return CKR_ARGUMENTS_BAD;
    return (flags & CKF_DONT_BLOCK) ? CKR_NO_EVENT : CKR_FUNCTION_NOT_SUPPORTED;
}

QRNG_EXPORT CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved) {
    (void)pSlot;
    CALL("C_WaitForSlotEvent", wait_for_slot_event(flags, pReserved));
}

/* --- sessions (5.6) and login (5.5: no PIN protects this token; logging in is accepted) ---------------------- */
session_t *qrng_session(CK_SESSION_HANDLE h) {
    if (h < 1 || h > SESSION_SLOTS || !g.sessions[h - 1].open) return NULL;
    return &g.sessions[h - 1];
}

static CK_RV new_session(CK_FLAGS flags, CK_SESSION_HANDLE_PTR phSession) {
    CK_RV rv = B->present ? B->present() : CKR_OK;
    if (rv != CKR_OK) return rv;
    if (!(flags & CKF_RW_SESSION) && g.login == (int)CKU_SO) return CKR_SESSION_READ_WRITE_SO_EXISTS;
    for (CK_ULONG i = 0; i < max_sessions(); i++) {
        if (!g.sessions[i].open) {
            memset(&g.sessions[i], 0, sizeof g.sessions[i]);
            g.sessions[i].open = 1;
            g.sessions[i].rw = !!(flags & CKF_RW_SESSION);
            *phSession = (CK_SESSION_HANDLE)(i + 1);
            return CKR_OK;
        }
    }
    return CKR_SESSION_COUNT;
}

static CK_RV open_session(CK_SLOT_ID slotID, CK_FLAGS flags, CK_SESSION_HANDLE_PTR phSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!phSession) return CKR_ARGUMENTS_BAD;
    if (!(flags & CKF_SERIAL_SESSION)) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    qrng_lock();
    CK_RV rv = new_session(flags, phSession);
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                                CK_SESSION_HANDLE_PTR phSession) {
    (void)pApplication; (void)Notify;
    CALL("C_OpenSession", open_session(slotID, flags, phSession));
}

static void close_one(session_t *s) {
    free(s->health);
    memset(s, 0, sizeof *s);
}

static CK_RV close_session(CK_SESSION_HANDLE hSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    qrng_lock();
    session_t *s = qrng_session(hSession);
    if (s) close_one(s);
    if (s && !session_count(0)) g.login = NOBODY;   /* closing the last session logs the application out (5.6) */
    qrng_unlock();
    return s ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

QRNG_EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE hSession) { CALL("C_CloseSession", close_session(hSession)); }

static CK_RV close_all_sessions(CK_SLOT_ID slotID) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    qrng_lock();
    for (int i = 0; i < SESSION_SLOTS; i++) if (g.sessions[i].open) close_one(&g.sessions[i]);
    g.login = NOBODY;
    qrng_unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID slotID) { CALL("C_CloseAllSessions", close_all_sessions(slotID)); }

static CK_RV get_session_info(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    qrng_lock();
    session_t *s = qrng_session(hSession);
    if (s) {
        pInfo->slotID = 0;
        if (g.login == (int)CKU_SO) pInfo->state = CKS_RW_SO_FUNCTIONS;
        else if (g.login == (int)CKU_USER) pInfo->state = s->rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
        else pInfo->state = s->rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
        pInfo->flags = CKF_SERIAL_SESSION | (s->rw ? CKF_RW_SESSION : 0);
        pInfo->ulDeviceError = 0;
    }
    qrng_unlock();
    return s ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

QRNG_EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) {
    CALL("C_GetSessionInfo", get_session_info(hSession, pInfo));
}

static CK_RV login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
    if (!qrng_session(hSession)) return CKR_SESSION_HANDLE_INVALID;
    if (!pPin && ulPinLen) return CKR_ARGUMENTS_BAD;
    if (userType != CKU_SO && userType != CKU_USER && userType != CKU_CONTEXT_SPECIFIC) return CKR_USER_TYPE_INVALID;
    if (userType == CKU_CONTEXT_SPECIFIC) return CKR_OPERATION_NOT_INITIALIZED;
    if (pPin && ulPinLen > MAX_PIN) return CKR_ARGUMENTS_BAD;
    if (g.login == (int)userType) return CKR_USER_ALREADY_LOGGED_IN;
    if (g.login != NOBODY) return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    if (userType == CKU_SO)
        for (int i = 0; i < SESSION_SLOTS; i++) if (g.sessions[i].open && !g.sessions[i].rw) return CKR_SESSION_READ_ONLY_EXISTS;
    g.login = (int)userType;
    return CKR_OK;
}

static CK_RV locked_login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    qrng_lock();
    CK_RV rv = login(hSession, userType, pPin, ulPinLen);
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
    CALL("C_Login", locked_login(hSession, userType, pPin, ulPinLen));
}

static CK_RV logout(CK_SESSION_HANDLE hSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    qrng_lock();
    CK_RV rv = !qrng_session(hSession) ? CKR_SESSION_HANDLE_INVALID : g.login == NOBODY ? CKR_USER_NOT_LOGGED_IN : CKR_OK;
    if (rv == CKR_OK) g.login = NOBODY;
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_Logout(CK_SESSION_HANDLE hSession) { CALL("C_Logout", logout(hSession)); }

/* --- random numbers (5.15) ----------------------------------------------------------------------------------- */
static CK_RV seed_random(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pSeed && ulSeedLen) return CKR_ARGUMENTS_BAD;
    qrng_lock();
    CK_RV rv = qrng_session(hSession) ? B->seed(pSeed ? pSeed : (CK_BYTE_PTR)"", ulSeedLen) : CKR_SESSION_HANDLE_INVALID;
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen) {
    CALL("C_SeedRandom", seed_random(hSession, pSeed, ulSeedLen));
}

static CK_RV generate_random(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen,
                             const char **how) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pRandomData && ulRandomLen) return CKR_ARGUMENTS_BAD;
    qrng_lock();
    int touched = 0;
    CK_RV rv = !qrng_session(hSession) ? CKR_SESSION_HANDLE_INVALID :
               ulRandomLen ? B->generate(pRandomData, ulRandomLen, &touched, how) : CKR_OK;
    /* never half an answer: a failure after output began leaves the buffer zeroed, one before leaves it as it was */
    if (rv != CKR_OK && touched) OPENSSL_cleanse(pRandomData, ulRandomLen);
    qrng_unlock();
    return rv;
}

/* the call log says how many bytes, and where the backend took them from */
QRNG_EXPORT CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen) {
    if (qrng_enter("C_GenerateRandom")) return qrng_log_call("C_GenerateRandom", CKR_GENERAL_ERROR, "(re-entered)");
    const char *how = NULL;
    CK_RV rv = generate_random(hSession, pRandomData, ulRandomLen, &how);
    qrng_leave();
    char detail[96];
    snprintf(detail, sizeof detail, "%lu bytes%s%s", (unsigned long)ulRandomLen, how ? ", " : "", how ? how : "");
    return qrng_log_call("C_GenerateRandom", rv, detail);
}
