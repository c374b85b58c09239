/* The PKCS#11 token core (see token.h): slot, token, sessions, login, the health object, random numbers.
 * Section numbers are PKCS#11 v2.40's. Locking (5.4): OS mutexes, or the application's one mutex; fork-safe
 * (both locks are taken around fork(); the child re-creates them and the backend drops its secret state). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "qrng_pkcs11.h"
#include "qrng_ckconst.h"
#include "token.h"

#define HEALTH_OBJECT 1
#define NOBODY (-1)                /* g.login when no user is logged in (CKU_SO is 0) */
#define MAX_PIN 64
#define SESSION_SLOTS 4096         /* the session table; a backend may allow fewer */

volatile int qrng_initialized;

typedef struct {
    int open, rw, finding, find_pos;
    char *health;                  /* the health report as this session last read it (size query, then value) */
    size_t health_len;
} session_t;

static const qrng_backend *B = &qrng_module_backend;

static struct {
    int login;                     /* NOBODY, or CKU_SO / CKU_USER for the whole application (5.5) */
    session_t sessions[SESSION_SLOTS];
} g;

/* --- locking (5.4 C_Initialize cases 1-4) and fork safety ---------------------------------------------------- */
static pthread_mutex_t g_init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static CK_C_INITIALIZE_ARGS g_args;
static void *g_app_mutex;

static void lock(void) { if (g_app_mutex) g_args.LockMutex(g_app_mutex); else pthread_mutex_lock(&g_lock); }
static void unlock(void) { if (g_app_mutex) g_args.UnlockMutex(g_app_mutex); else pthread_mutex_unlock(&g_lock); }

static void fork_prepare(void) { pthread_mutex_lock(&g_init_lock); if (!g_app_mutex) pthread_mutex_lock(&g_lock); }
static void fork_parent(void) { if (!g_app_mutex) pthread_mutex_unlock(&g_lock); pthread_mutex_unlock(&g_init_lock); }
static void fork_child(void) {
    B->fork_child();               /* the child never serves the parent's state, nor shares its connection */
    if (!g_app_mutex) pthread_mutex_init(&g_lock, NULL);
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

QRNG_EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs) {
    pthread_once(&g_atfork_once, install_atfork);
    pthread_mutex_lock(&g_init_lock);
    CK_RV rv = qrng_initialized ? CKR_CRYPTOKI_ALREADY_INITIALIZED : take_init_args(pInitArgs);
    if (rv == CKR_OK && (rv = B->init()) != CKR_OK && g_app_mutex) {
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

QRNG_EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved) {
    if (pReserved) return CKR_ARGUMENTS_BAD;
    pthread_mutex_lock(&g_init_lock);
    if (!qrng_initialized) { pthread_mutex_unlock(&g_init_lock); return CKR_CRYPTOKI_NOT_INITIALIZED; }
    lock();
    B->finalize();
    for (int i = 0; i < SESSION_SLOTS; i++) free(g.sessions[i].health);
    memset(g.sessions, 0, sizeof g.sessions);
    qrng_initialized = 0;
    unlock();
    if (g_app_mutex) { g_args.DestroyMutex(g_app_mutex); g_app_mutex = NULL; }
    pthread_mutex_unlock(&g_init_lock);
    return CKR_OK;
}

/* blank-padded, never NUL-terminated (3.2 for CK_UTF8CHAR arrays) */
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
    padded(pInfo->libraryDescription, B->library_description, 32);
    pInfo->libraryVersion.major = 0;
    pInfo->libraryVersion.minor = 1;
    return CKR_OK;
}

/* --- slot and token (5.5) ------------------------------------------------------------------------------------- */
QRNG_EXPORT CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
    (void)tokenPresent;            /* the token is always present */
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    if (!pSlotList) { *pulCount = 1; return CKR_OK; }
    if (*pulCount < 1) { *pulCount = 1; return CKR_BUFFER_TOO_SMALL; }
    pSlotList[0] = 0;
    *pulCount = 1;
    return CKR_OK;
}

/* the backend's description now (under the token lock) and the versions both info structures carry */
static void describe(qrng_token_desc *d) {
    memset(d, 0, sizeof *d);
    B->info(d);
}

static void versions(CK_VERSION *hardware, CK_VERSION *firmware) {
    hardware->major = 1; hardware->minor = 0;
    firmware->major = 0; firmware->minor = 1;
}

QRNG_EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    qrng_token_desc d;
    lock();
    describe(&d);
    unlock();
    padded(pInfo->slotDescription, d.slot_description, 64);
    padded(pInfo->manufacturerID, "qrng-ceremony", 32);
    pInfo->flags = CKF_TOKEN_PRESENT;
    versions(&pInfo->hardwareVersion, &pInfo->firmwareVersion);
    return CKR_OK;
}

static int session_count(int rw_only) {
    int n = 0;
    for (int i = 0; i < SESSION_SLOTS; i++) n += g.sessions[i].open && (!rw_only || g.sessions[i].rw);
    return n;
}

QRNG_EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    qrng_token_desc d;
    lock();
    describe(&d);                  /* the flags below say how the source is now */
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
    unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount) {
    (void)pMechanismList;          /* a random-number token: no mechanisms */
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

/* --- sessions (5.6) and login (5.5: no PIN protects this token; logging in is accepted) ---------------------- */
static session_t *session(CK_SESSION_HANDLE h) {
    if (h < 1 || h > SESSION_SLOTS || !g.sessions[h - 1].open) return NULL;
    return &g.sessions[h - 1];
}

static CK_RV open_session(CK_FLAGS flags, CK_SESSION_HANDLE_PTR phSession) {
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

QRNG_EXPORT CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                                CK_SESSION_HANDLE_PTR phSession) {
    (void)pApplication; (void)Notify;
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    if (!phSession) return CKR_ARGUMENTS_BAD;
    if (!(flags & CKF_SERIAL_SESSION)) return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    lock();
    CK_RV rv = open_session(flags, phSession);
    unlock();
    return rv;
}

static void close_one(session_t *s) {
    free(s->health);
    memset(s, 0, sizeof *s);
}

QRNG_EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE hSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    lock();
    session_t *s = session(hSession);
    if (s) close_one(s);
    if (s && !session_count(0)) g.login = NOBODY;   /* closing the last session logs the application out (5.6) */
    unlock();
    return s ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

QRNG_EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID slotID) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (slotID != 0) return CKR_SLOT_ID_INVALID;
    lock();
    for (int i = 0; i < SESSION_SLOTS; i++) if (g.sessions[i].open) close_one(&g.sessions[i]);
    g.login = NOBODY;
    unlock();
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pInfo) return CKR_ARGUMENTS_BAD;
    lock();
    session_t *s = session(hSession);
    if (s) {
        pInfo->slotID = 0;
        if (g.login == (int)CKU_SO) pInfo->state = CKS_RW_SO_FUNCTIONS;
        else if (g.login == (int)CKU_USER) pInfo->state = s->rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
        else pInfo->state = s->rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
        pInfo->flags = CKF_SERIAL_SESSION | (s->rw ? CKF_RW_SESSION : 0);
        pInfo->ulDeviceError = 0;
    }
    unlock();
    return s ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

static CK_RV login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
    if (!session(hSession)) return CKR_SESSION_HANDLE_INVALID;
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

QRNG_EXPORT CK_RV C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    lock();
    CK_RV rv = login(hSession, userType, pPin, ulPinLen);
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

/* --- the health object (5.7) ------------------------------------------------------------------------------------ */
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
    size_t n = 0;
    char *h = B->health(&n);
    if (!h) return CKR_HOST_MEMORY;
    free(s->health);
    s->health = h;
    s->health_len = n;
    return CKR_OK;
}

static int matches(const session_t *s, const CK_ATTRIBUTE *t, CK_ULONG n) {
    for (CK_ULONG i = 0; i < n; i++) {
        attr_t a;
        if (health_attr(t[i].type, s, &a) || a.len != t[i].ulValueLen ||
            (a.len && (!t[i].pValue || memcmp(a.value, t[i].pValue, a.len))))
            return 0;
    }
    return 1;
}

QRNG_EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pTemplate && ulCount) return CKR_ARGUMENTS_BAD;
    lock();
    session_t *s = session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : s->finding ? CKR_OPERATION_ACTIVE : CKR_OK;
    if (rv == CKR_OK && !s->health) rv = snapshot(s);
    if (rv == CKR_OK) {
        s->finding = 1;
        s->find_pos = matches(s, pTemplate, ulCount) ? 0 : 1;   /* one object: position 1 means none (left) */
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

/* one attribute into the caller's template entry (5.7 C_GetAttributeValue cases 1-5); returns the entry's code */
static CK_RV copy_attribute(const session_t *s, CK_ATTRIBUTE *t) {
    attr_t a;
    if (health_attr(t->type, s, &a)) { t->ulValueLen = CK_UNAVAILABLE_INFORMATION; return CKR_ATTRIBUTE_TYPE_INVALID; }
    if (!t->pValue) { t->ulValueLen = a.len; return CKR_OK; }
    if (t->ulValueLen < a.len) { t->ulValueLen = CK_UNAVAILABLE_INFORMATION; return CKR_BUFFER_TOO_SMALL; }
    if (a.len) memcpy(t->pValue, a.value, a.len);
    t->ulValueLen = a.len;
    return CKR_OK;
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
        CK_RV one = copy_attribute(s, &pTemplate[i]);
        if (one == CKR_ATTRIBUTE_TYPE_INVALID || (one != CKR_OK && worst == CKR_OK)) worst = one;
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
    if (rv == CKR_OK) {             /* the sum of the attribute values' lengths */
        static const CK_ATTRIBUTE_TYPE all[] = { CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_LABEL,
                                                 CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE };
        attr_t a;
        *pulSize = 0;
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) if (!health_attr(all[i], s, &a)) *pulSize += a.len;
    }
    unlock();
    return rv;
}

/* --- random numbers (5.15) ----------------------------------------------------------------------------------- */
QRNG_EXPORT CK_RV C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pSeed && ulSeedLen) return CKR_ARGUMENTS_BAD;
    lock();
    CK_RV rv = session(hSession) ? B->seed(pSeed ? pSeed : (CK_BYTE_PTR)"", ulSeedLen) : CKR_SESSION_HANDLE_INVALID;
    unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pRandomData && ulRandomLen) return CKR_ARGUMENTS_BAD;
    lock();
    int touched = 0;
    CK_RV rv = !session(hSession) ? CKR_SESSION_HANDLE_INVALID :
               ulRandomLen ? B->generate(pRandomData, ulRandomLen, &touched) : CKR_OK;
    /* never half an answer: a failure after output began leaves the buffer zeroed, one before leaves it as it was */
    if (rv != CKR_OK && touched) OPENSSL_cleanse(pRandomData, ulRandomLen);
    unlock();
    return rv;
}
