/* Robustness harness for the qrng PKCS#11 module: `harness MODULE SCENARIO`.
 * Loads the module with dlopen(RTLD_NOW | RTLD_LOCAL), as consumers do, and checks every return code
 * against the PKCS#11 v2.40 specification. Prints "ok ..." / "FAIL ..." lines; exits 1 on any failure. */
#include "qrng-pkcs11.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define OK 0x0UL
#define SLOT_ID_INVALID 0x3UL
#define ARGUMENTS_BAD 0x7UL
#define ATTRIBUTE_TYPE_INVALID 0x12UL
#define DEVICE_ERROR 0x30UL
#define FUNCTION_NOT_PARALLEL 0x51UL
#define FUNCTION_NOT_SUPPORTED 0x54UL
#define MECHANISM_INVALID 0x70UL
#define OBJECT_HANDLE_INVALID 0x82UL
#define OPERATION_NOT_INITIALIZED 0x91UL
#define SESSION_HANDLE_INVALID 0xB3UL
#define SESSION_PARALLEL_NOT_SUPPORTED 0xB4UL
#define USER_ALREADY_LOGGED_IN 0x100UL
#define USER_NOT_LOGGED_IN 0x101UL
#define USER_TYPE_INVALID 0x103UL
#define BUFFER_TOO_SMALL 0x150UL
#define NOT_INITIALIZED 0x190UL
#define ALREADY_INITIALIZED 0x191UL
#define CKF_SERIAL 0x4UL
#define CKF_RW 0x2UL
#define CKF_RNG 0x1UL
#define CKF_ERROR_STATE 0x01000000UL
#define CKF_OS_LOCKING_OK 0x2UL
#define NO_EVENT 0x8UL
#define OPERATION_ACTIVE 0x90UL
#define USER_ANOTHER_ALREADY_LOGGED_IN 0x104UL
#define SESSION_READ_ONLY_EXISTS 0xB7UL
#define SESSION_READ_WRITE_SO_EXISTS 0xB8UL
#define CKF_TOKEN_PRESENT 0x1UL
#define CKF_TOKEN_INITIALIZED 0x400UL
#define CKF_USER_PIN_INITIALIZED 0x8UL
#define CKU_SO 0UL
#define CKU_USER 1UL
#define CKU_CONTEXT_SPECIFIC 2UL
#define CKS_RO_PUBLIC 0UL
#define CKS_RO_USER 1UL
#define CKS_RW_PUBLIC 2UL
#define CKS_RW_USER 3UL
#define CKS_RW_SO 4UL

static int failures;
static CK_FUNCTION_LIST *f;
static void *handle;
static const char *module;

#define EXPECT(call, want) do { CK_RV _rv = (call); \
    if (_rv == (CK_RV)(want)) printf("ok   %-60s = %#lx\n", #call, _rv); \
    else { printf("FAIL %-60s = %#lx, want %#lx\n", #call, _rv, (CK_RV)(want)); failures++; } } while (0)
#define CHECK(cond) do { if (cond) printf("ok   %s\n", #cond); else { printf("FAIL %s\n", #cond); failures++; } } while (0)

static void load(void) {
    handle = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!handle) { printf("FAIL dlopen: %s\n", dlerror()); exit(1); }
    CK_RV (*gfl)(CK_FUNCTION_LIST **) = (CK_RV (*)(CK_FUNCTION_LIST **))dlsym(handle, "C_GetFunctionList");
    EXPECT(gfl(NULL), ARGUMENTS_BAD);
    EXPECT(gfl(&f), OK);
    CHECK(f->version.major == 2 && f->version.minor == 40);
}

static CK_SESSION_HANDLE open_session(void) {
    CK_SESSION_HANDLE h = 0;
    EXPECT(f->C_OpenSession(0, CKF_SERIAL, NULL, NULL, &h), OK);
    return h;
}

static int all_zero(const unsigned char *p, size_t n) { for (size_t i = 0; i < n; i++) if (p[i]) return 0; return 1; }

static void before_init(void) {
    CK_INFO info; CK_ULONG n = 0; CK_SESSION_HANDLE h; unsigned char b[8];
    EXPECT(f->C_GetInfo(&info), NOT_INITIALIZED);
    EXPECT(f->C_GetSlotList(1, NULL, &n), NOT_INITIALIZED);
    EXPECT(f->C_OpenSession(0, CKF_SERIAL, NULL, NULL, &h), NOT_INITIALIZED);
    EXPECT(f->C_GenerateRandom(1, b, 8), NOT_INITIALIZED);
    EXPECT(f->C_SeedRandom(1, b, 8), NOT_INITIALIZED);
    EXPECT(f->C_Finalize(NULL), NOT_INITIALIZED);
    EXPECT(f->C_SignInit(1, NULL, 0), NOT_INITIALIZED);
    EXPECT(f->C_GetFunctionStatus(1), NOT_INITIALIZED);
    CK_RV (*gil)(CK_INTERFACE *, CK_ULONG *) = (CK_RV (*)(CK_INTERFACE *, CK_ULONG *))dlsym(handle, "C_GetInterfaceList");
    CK_INTERFACE ifs[2]; CK_ULONG cnt = 0;
    EXPECT(gil(NULL, &cnt), OK);
    CHECK(cnt == 1);
    cnt = 2;
    EXPECT(gil(ifs, &cnt), OK);
    CHECK(strcmp((char *)ifs[0].pInterfaceName, "PKCS 11") == 0 && ifs[0].pFunctionList == f);
    CK_RV (*gi)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS) =
        (CK_RV (*)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS))dlsym(handle, "C_GetInterface");
    CK_INTERFACE *ip = NULL; CK_VERSION v3 = {3, 0};
    EXPECT(gi(NULL, NULL, &ip, 0), OK);
    EXPECT(gi((CK_UTF8CHAR_PTR)"PKCS 11", &v3, &ip, 0), ARGUMENTS_BAD);
    EXPECT(gi((CK_UTF8CHAR_PTR)"Vendor X", NULL, &ip, 0), ARGUMENTS_BAD);
}

static void init_args(void) {
    CK_C_INITIALIZE_ARGS a; memset(&a, 0, sizeof a);
    a.CreateMutex = (CK_CREATEMUTEX)1;  /* some but not all mutex functions: CKR_ARGUMENTS_BAD (5.4) */
    EXPECT(f->C_Initialize(&a), ARGUMENTS_BAD);
    memset(&a, 0, sizeof a);
    a.flags = CKF_OS_LOCKING_OK;
    a.pReserved = (void *)"configdir='/tmp' certPrefix='' secmod='secmod.db' flags=readOnly";  /* NSS-style */
    EXPECT(f->C_Initialize(&a), OK);
    EXPECT(f->C_Initialize(NULL), ALREADY_INITIALIZED);
    EXPECT(f->C_Finalize((void *)1), ARGUMENTS_BAD);
    EXPECT(f->C_Finalize(NULL), OK);
    EXPECT(f->C_Finalize(NULL), NOT_INITIALIZED);
}

static void bad_arguments(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    CK_ULONG n = 0; CK_SLOT_ID slots[1]; CK_SESSION_HANDLE h = open_session();
    unsigned char b[64];
    EXPECT(f->C_GetInfo(NULL), ARGUMENTS_BAD);
    EXPECT(f->C_GetSlotList(1, NULL, NULL), ARGUMENTS_BAD);
    EXPECT(f->C_GetSlotList(1, slots, &n), BUFFER_TOO_SMALL);
    CHECK(n == 1);
    EXPECT(f->C_GetSlotList(1, slots, &n), OK);
    EXPECT(f->C_GetSlotInfo(0, NULL), ARGUMENTS_BAD);
    EXPECT(f->C_GetTokenInfo(0, NULL), ARGUMENTS_BAD);
    EXPECT(f->C_OpenSession(0, CKF_SERIAL, NULL, NULL, NULL), ARGUMENTS_BAD);
    EXPECT(f->C_GenerateRandom(h, NULL, 16), ARGUMENTS_BAD);
    EXPECT(f->C_GenerateRandom(h, NULL, 100000), ARGUMENTS_BAD);
    EXPECT(f->C_SeedRandom(h, NULL, 16), ARGUMENTS_BAD);
    EXPECT(f->C_GetSessionInfo(h, NULL), ARGUMENTS_BAD);
    EXPECT(f->C_FindObjects(h, NULL, 1, &n), ARGUMENTS_BAD);
    EXPECT(f->C_GenerateRandom(h, b, 0), OK);
    EXPECT(f->C_CloseSession(h), OK);
    EXPECT(f->C_Finalize(NULL), OK);
}

static void invalid_handles(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    CK_SLOT_INFO si; CK_TOKEN_INFO ti; CK_SESSION_HANDLE h; unsigned char b[32];
    CK_MECHANISM_INFO mi; CK_ULONG n;
    EXPECT(f->C_GetSlotInfo(99, &si), SLOT_ID_INVALID);
    EXPECT(f->C_GetTokenInfo(99, &ti), SLOT_ID_INVALID);
    EXPECT(f->C_OpenSession(99, CKF_SERIAL, NULL, NULL, &h), SLOT_ID_INVALID);
    EXPECT(f->C_OpenSession(0, 0, NULL, NULL, &h), SESSION_PARALLEL_NOT_SUPPORTED);
    EXPECT(f->C_GenerateRandom(12345, b, 32), SESSION_HANDLE_INVALID);
    EXPECT(f->C_GenerateRandom(0, b, 32), SESSION_HANDLE_INVALID);
    EXPECT(f->C_GenerateRandom(12345, b, 8192), SESSION_HANDLE_INVALID);
    EXPECT(f->C_SeedRandom(12345, b, 32), SESSION_HANDLE_INVALID);
    EXPECT(f->C_CloseSession(12345), SESSION_HANDLE_INVALID);
    EXPECT(f->C_GetMechanismInfo(0, 0x1, &mi), MECHANISM_INVALID);
    h = open_session();
    EXPECT(f->C_SignInit(h, NULL, 0), FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_GetFunctionStatus(h), FUNCTION_NOT_PARALLEL);
    EXPECT(f->C_CancelFunction(h), FUNCTION_NOT_PARALLEL);
    EXPECT(f->C_Logout(h), USER_NOT_LOGGED_IN);
    EXPECT(f->C_Login(h, 7, (CK_UTF8CHAR_PTR)"1234", 4), USER_TYPE_INVALID);
    EXPECT(f->C_Login(h, 1, (CK_UTF8CHAR_PTR)"1234", 4), OK);
    EXPECT(f->C_Login(h, 1, (CK_UTF8CHAR_PTR)"1234", 4), USER_ALREADY_LOGGED_IN);
    EXPECT(f->C_Logout(h), OK);
    EXPECT(f->C_FindObjects(h, &n, 1, &n), OPERATION_NOT_INITIALIZED);
    EXPECT(f->C_FindObjectsInit(h, NULL, 0), OK);
    CK_OBJECT_HANDLE objs[8]; CK_ULONG cnt = 0;
    EXPECT(f->C_FindObjects(h, objs, 8, &cnt), OK);
    CHECK(cnt >= 1);
    EXPECT(f->C_FindObjectsFinal(h), OK);
    CK_ULONG cls = 99; unsigned char tiny[2];
    CK_ATTRIBUTE t[3] = {{0x0 /* CKA_CLASS */, &cls, sizeof cls}, {0x3 /* CKA_LABEL */, tiny, sizeof tiny},
                         {0x7777, NULL, 0}};
    EXPECT(f->C_GetAttributeValue(h, 4242, t, 1), OBJECT_HANDLE_INVALID);
    EXPECT(f->C_GetAttributeValue(h, objs[cnt - 1], t, 1), OK);
    CHECK(cls == 0 /* CKO_DATA: the health report */);
    CK_RV rv = f->C_GetAttributeValue(h, objs[cnt - 1], t, 3);
    CHECK(rv == BUFFER_TOO_SMALL || rv == ATTRIBUTE_TYPE_INVALID);
    CHECK(t[1].ulValueLen == (CK_ULONG)-1 && t[2].ulValueLen == (CK_ULONG)-1);
    EXPECT(f->C_CloseAllSessions(0), OK);
    EXPECT(f->C_GenerateRandom(h, b, 32), SESSION_HANDLE_INVALID);
    EXPECT(f->C_Finalize(NULL), OK);
}

static void generate(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    CK_SESSION_HANDLE h = open_session();
    unsigned char a[32], b[32], *big = calloc(1, 1 << 20);
    EXPECT(f->C_GenerateRandom(h, a, 32), OK);
    EXPECT(f->C_GenerateRandom(h, b, 32), OK);
    CHECK(memcmp(a, b, 32) != 0 && !all_zero(a, 32));
    EXPECT(f->C_SeedRandom(h, (CK_BYTE_PTR)"caller bytes", 12), OK);
    EXPECT(f->C_GenerateRandom(h, big, 1 << 20), OK);
    CHECK(!all_zero(big + (1 << 20) - 64, 64));
    CK_TOKEN_INFO ti;
    EXPECT(f->C_GetTokenInfo(0, &ti), OK);
    CHECK((ti.flags & CKF_RNG) && !(ti.flags & CKF_ERROR_STATE));
    EXPECT(f->C_Finalize(NULL), OK);
    /* re-initialise: old handles are gone, new sessions work */
    EXPECT(f->C_Initialize(NULL), OK);
    EXPECT(f->C_GenerateRandom(h, a, 32), SESSION_HANDLE_INVALID);
    h = open_session();
    EXPECT(f->C_GenerateRandom(h, a, 32), OK);
    EXPECT(f->C_Finalize(NULL), OK);
    free(big);
}

static void dlclose_cycles(void) {
    for (int i = 0; i < 5; i++) {
        EXPECT(f->C_Initialize(NULL), OK);
        CK_SESSION_HANDLE h = open_session();
        unsigned char b[64];
        EXPECT(f->C_GenerateRandom(h, b, sizeof b), OK);
        EXPECT(f->C_Finalize(NULL), OK);
        dlclose(handle);
        load();
    }
}

static CK_SESSION_HANDLE g_h;
static void *worker(void *out) {
    unsigned char *o = out, b[100000];
    for (int i = 0; i < 2000; i++) {
        if (f->C_GenerateRandom(g_h, o + 32 * (i % 64), 32) != OK) return (void *)1;
        if (i % 200 == 0 && f->C_GenerateRandom(g_h, b, sizeof b) != OK) return (void *)1;
    }
    return NULL;
}

static void threads(void) {
    CK_C_INITIALIZE_ARGS a; memset(&a, 0, sizeof a); a.flags = CKF_OS_LOCKING_OK;
    EXPECT(f->C_Initialize(&a), OK);
    g_h = open_session();
    static unsigned char o1[2048], o2[2048];
    pthread_t t1, t2; void *r1, *r2;
    pthread_create(&t1, NULL, worker, o1);
    pthread_create(&t2, NULL, worker, o2);
    pthread_join(t1, &r1);
    pthread_join(t2, &r2);
    CHECK(r1 == NULL && r2 == NULL);
    CHECK(memcmp(o1, o2, sizeof o1) != 0);
    EXPECT(f->C_Finalize(NULL), OK);
}

static int g_mutex_calls;
static CK_RV mx_create(CK_VOID_PTR_PTR m) { *m = calloc(1, sizeof(pthread_mutex_t)); g_mutex_calls++; return OK; }
static CK_RV mx_destroy(CK_VOID_PTR m) { free(m); g_mutex_calls++; return OK; }
static CK_RV mx_lock(CK_VOID_PTR m) { g_mutex_calls++; return pthread_mutex_lock(m) ? 0x1A0UL : OK; }
static CK_RV mx_unlock(CK_VOID_PTR m) { g_mutex_calls++; return pthread_mutex_unlock(m) ? 0x1A1UL : OK; }

static void app_mutexes(void) {
    CK_C_INITIALIZE_ARGS a = {mx_create, mx_destroy, mx_lock, mx_unlock, 0, NULL};
    EXPECT(f->C_Initialize(&a), OK);
    CK_SESSION_HANDLE h = open_session();
    unsigned char b[32];
    EXPECT(f->C_GenerateRandom(h, b, 32), OK);
    CHECK(g_mutex_calls >= 3);  /* create, lock, unlock: the application's functions are used (5.4 case 3) */
    EXPECT(f->C_Finalize(NULL), OK);
}

static void do_fork(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    CK_SESSION_HANDLE h = open_session();
    unsigned char before[32], parent[64], child[64];
    EXPECT(f->C_GenerateRandom(h, before, 32), OK);  /* fills the fast-path buffer */
    int fd[2];
    if (pipe(fd) != 0) { perror("pipe"); exit(1); }
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        CK_RV rv = f->C_GenerateRandom(h, child, 64);
        if (rv != OK) memset(child, 0, 64);
        if (write(fd[1], child, 64) != 64) _exit(2);
        _exit(rv == OK ? 0 : 3);
    }
    close(fd[1]);
    EXPECT(f->C_GenerateRandom(h, parent, 64), OK);
    CHECK(read(fd[0], child, 64) == 64);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(memcmp(parent, child, 64) != 0 && !all_zero(child, 64));
    CHECK(memmem(parent, 64, child, 16) == NULL);
    EXPECT(f->C_GenerateRandom(h, parent, 64), OK);   /* the parent goes on */
    EXPECT(f->C_Finalize(NULL), OK);
}

static void failing_source(void) {
    /* run with QRNG_CONFIG naming a simulator with a stuck-at fault */
    EXPECT(f->C_Initialize(NULL), OK);
    CK_SESSION_HANDLE h = open_session();
    unsigned char b[64], big[100000];
    memset(b, 0, sizeof b);
    memset(big, 0, sizeof big);
    EXPECT(f->C_GenerateRandom(h, b, 32), DEVICE_ERROR);
    EXPECT(f->C_GenerateRandom(h, big, sizeof big), DEVICE_ERROR);
    EXPECT(f->C_SeedRandom(h, b, 8), DEVICE_ERROR);
    CHECK(all_zero(b, sizeof b) && all_zero(big, sizeof big));
    CK_TOKEN_INFO ti;
    EXPECT(f->C_GetTokenInfo(0, &ti), OK);
    CHECK(ti.flags & CKF_ERROR_STATE);
    EXPECT(f->C_Finalize(NULL), OK);
}

/* semantics: what a consumer reads and the state rules of v2.40 5.4-5.7, the same for both modules (the one
   conformance suite, tests/system/qrng_pkcs11/test_conformance.py) */
static int blank_padded(const CK_UTF8CHAR *p, size_t n, const char *starts) {
    if (strncmp((const char *)p, starts, strlen(starts))) return 0;
    for (size_t i = 0; i < n; i++) if (p[i] == 0) return 0;      /* never NUL-terminated (3.2) */
    return p[n - 1] == ' ' || n == strlen(starts);
}

static void info_semantics(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    CK_INFO info; CK_SLOT_INFO si; CK_TOKEN_INFO ti; CK_ULONG n = 99; CK_SLOT_ID slot;
    EXPECT(f->C_GetInfo(&info), OK);
    CHECK(info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40 && info.flags == 0);
    CHECK(blank_padded(info.manufacturerID, 32, "qrng-ceremony") && blank_padded(info.libraryDescription, 32, "qrng"));
    EXPECT(f->C_GetSlotInfo(0, &si), OK);
    CHECK((si.flags & CKF_TOKEN_PRESENT) && blank_padded(si.manufacturerID, 32, "qrng-ceremony"));
    CHECK(memchr(si.slotDescription, 0, 64) == NULL && si.slotDescription[0] != ' ');
    EXPECT(f->C_GetSlotList(1, NULL, &n), OK);
    CHECK(n == 1);
    EXPECT(f->C_GetSlotList(1, &slot, &n), OK);
    CHECK(slot == 0);
    CK_SESSION_HANDLE ro = open_session(), rw = 0;
    EXPECT(f->C_OpenSession(0, CKF_SERIAL | CKF_RW, NULL, NULL, &rw), OK);
    EXPECT(f->C_GetTokenInfo(0, &ti), OK);
    CHECK((ti.flags & (CKF_RNG | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED)) ==
          (CKF_RNG | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED) && !(ti.flags & CKF_ERROR_STATE));
    CHECK(ti.ulSessionCount == 2 && ti.ulRwSessionCount == 1 && ti.ulMaxPinLen == 64 && ti.ulMinPinLen == 0);
    CHECK(blank_padded(ti.label, 32, "qrng") && blank_padded(ti.manufacturerID, 32, "qrng-ceremony"));
    CHECK(memchr(ti.model, 0, 16) == NULL && memchr(ti.serialNumber, 0, 16) == NULL);
    EXPECT(f->C_GetMechanismList(0, NULL, &n), OK);
    CHECK(n == 0);                                    /* a random-number token: no mechanisms */
    CK_MECHANISM_INFO mi;
    EXPECT(f->C_GetMechanismInfo(0, 0x1082 /* CKM_AES_CBC */, &mi), MECHANISM_INVALID);
    EXPECT(f->C_WaitForSlotEvent(1 /* CKF_DONT_BLOCK */, &slot, NULL), NO_EVENT);
    EXPECT(f->C_CloseSession(ro), OK);
    EXPECT(f->C_CloseSession(rw), OK);
    EXPECT(f->C_GetTokenInfo(0, &ti), OK);
    CHECK(ti.ulSessionCount == 0 && ti.ulRwSessionCount == 0);
    EXPECT(f->C_Finalize(NULL), OK);
}

static CK_ULONG state_of(CK_SESSION_HANDLE h) {
    CK_SESSION_INFO si; memset(&si, 0xff, sizeof si);
    if (f->C_GetSessionInfo(h, &si) != OK) return 99;
    return si.slotID == 0 ? si.state : 98;
}

static void login_semantics(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    CK_UTF8CHAR pin[80]; memset(pin, '1', sizeof pin);
    CK_SESSION_HANDLE ro = open_session(), rw = 0, ro2 = 0;
    EXPECT(f->C_OpenSession(0, CKF_SERIAL | CKF_RW, NULL, NULL, &rw), OK);
    CHECK(state_of(ro) == CKS_RO_PUBLIC && state_of(rw) == CKS_RW_PUBLIC);
    EXPECT(f->C_Login(rw, CKU_SO, pin, 4), SESSION_READ_ONLY_EXISTS);   /* 5.5: SO needs every session R/W */
    EXPECT(f->C_Login(rw, CKU_CONTEXT_SPECIFIC, pin, 4), OPERATION_NOT_INITIALIZED);
    EXPECT(f->C_Login(rw, CKU_USER, pin, 65), ARGUMENTS_BAD);          /* longer than ulMaxPinLen */
    EXPECT(f->C_CloseSession(ro), OK);
    EXPECT(f->C_Login(rw, CKU_SO, pin, 4), OK);
    CHECK(state_of(rw) == CKS_RW_SO);
    EXPECT(f->C_OpenSession(0, CKF_SERIAL, NULL, NULL, &ro2), SESSION_READ_WRITE_SO_EXISTS);
    EXPECT(f->C_Login(rw, CKU_USER, pin, 4), USER_ANOTHER_ALREADY_LOGGED_IN);
    EXPECT(f->C_Logout(rw), OK);
    EXPECT(f->C_Login(rw, CKU_USER, pin, 4), OK);                      /* login is for the application (5.5) */
    ro2 = open_session();
    CHECK(state_of(rw) == CKS_RW_USER && state_of(ro2) == CKS_RO_USER);
    EXPECT(f->C_CloseSession(rw), OK);
    EXPECT(f->C_CloseSession(ro2), OK);                                 /* the last one logs the user out (5.6) */
    CK_SESSION_HANDLE h = open_session();
    CHECK(state_of(h) == CKS_RO_PUBLIC);
    EXPECT(f->C_Logout(h), USER_NOT_LOGGED_IN);
    EXPECT(f->C_Finalize(NULL), OK);
}

static void object_semantics(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    CK_SESSION_HANDLE h = open_session();
    CK_ULONG cls = 0 /* CKO_DATA */, cnt = 0;
    CK_ATTRIBUTE by_class = {0x0 /* CKA_CLASS */, &cls, sizeof cls};
    CK_OBJECT_HANDLE objs[8];
    EXPECT(f->C_FindObjectsFinal(h), OPERATION_NOT_INITIALIZED);
    EXPECT(f->C_FindObjectsInit(h, &by_class, 1), OK);
    EXPECT(f->C_FindObjectsInit(h, &by_class, 1), OPERATION_ACTIVE);
    EXPECT(f->C_FindObjects(h, objs, 8, &cnt), OK);
    CHECK(cnt == 1);                                    /* the health report is the one data object */
    EXPECT(f->C_FindObjects(h, objs + 1, 7, &cnt), OK);
    CHECK(cnt == 0);                                    /* found once, then the search is exhausted */
    EXPECT(f->C_FindObjectsFinal(h), OK);
    char label[64] = ""; CK_ATTRIBUTE want[2] = {{0x3 /* CKA_LABEL */, NULL, 0}, {0x11 /* CKA_VALUE */, NULL, 0}};
    EXPECT(f->C_GetAttributeValue(h, objs[0], want, 2), OK);   /* lengths first (5.7, case 2) */
    CHECK(want[0].ulValueLen == 18 && want[1].ulValueLen > 2 && want[1].ulValueLen < 1000000);
    want[0].pValue = label; want[0].ulValueLen = sizeof label - 1;
    want[1].pValue = calloc(1, want[1].ulValueLen + 1);
    EXPECT(f->C_GetAttributeValue(h, objs[0], want, 2), OK);
    CHECK(want[0].ulValueLen == 18 && memcmp(label, "qrng health report", 18) == 0);
    CHECK(((char *)want[1].pValue)[0] == '{' && ((char *)want[1].pValue)[want[1].ulValueLen - 1] == '}');
    free(want[1].pValue);
    CK_ULONG size = 0;
    EXPECT(f->C_GetObjectSize(h, objs[0], &size), OK);
    CK_OBJECT_HANDLE made = 0;
    EXPECT(f->C_CreateObject(h, &by_class, 1, &made), FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_DestroyObject(h, objs[0]), FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_SetAttributeValue(h, objs[0], &by_class, 1), FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_InitToken(0, (CK_UTF8CHAR_PTR)"1234", 4, (CK_UTF8CHAR_PTR)"label"), FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_InitPIN(h, (CK_UTF8CHAR_PTR)"1234", 4), FUNCTION_NOT_SUPPORTED);
    EXPECT(f->C_Finalize(NULL), OK);
}

/* config_once: the configuration is read once, in C_Initialize. The file named by QRNG_CONFIG is replaced by
   one whose simulator is stuck from its first sample after C_Initialize: the token goes on serving (and
   describing) the configuration it read. It used to read the file again when the source was first opened. */
static void config_once(void) {
    EXPECT(f->C_Initialize(NULL), OK);
    const char *path = getenv("QRNG_CONFIG");
    FILE *cfg = path ? fopen(path, "w") : NULL;
    CHECK(cfg != NULL);
    if (cfg) { fputs("version: 1\nsource:\n  type: simulator\n  faults: ['stuck_at@0']\n", cfg); fclose(cfg); }
    CK_SESSION_HANDLE h = open_session();
    unsigned char b[64];
    EXPECT(f->C_GenerateRandom(h, b, sizeof b), OK);
    CK_TOKEN_INFO ti;
    EXPECT(f->C_GetTokenInfo(0, &ti), OK);
    CHECK(!(ti.flags & CKF_ERROR_STATE));
    EXPECT(f->C_Finalize(NULL), OK);
    EXPECT(f->C_Initialize(NULL), OK);           /* the next C_Initialize reads the new file */
    h = open_session();
    EXPECT(f->C_GenerateRandom(h, b, sizeof b), DEVICE_ERROR);
    EXPECT(f->C_Finalize(NULL), OK);
}

/* storm (issue 22, soak and fork storms): OUT_DIR (env STORM_DIR) receives every byte this scenario draws: 3 threads
   in the parent drawing 32- and 4096-byte requests while it forks 8 children; each child draws, forks a grandchild
   that draws, then calls C_Finalize / C_Initialize and draws again. Every process writes its output to its own
   file; the test reads them all and checks that no 16-byte block appears twice. RSS of the parent is printed
   before and after (the test bounds its growth). */
static const char *g_dir;
static volatile int g_storm_stop;

static void dump(const char *tag, const unsigned char *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s-%d.bin", g_dir, tag, (int)getpid());
    FILE *o = fopen(path, "ab");
    if (!o) _exit(4);
    if (fwrite(p, 1, n, o) != n) _exit(5);
    fclose(o);
}

static long rss_kb(void) {
    FILE *s = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (s) { if (fscanf(s, "%ld %ld", &pages, &res) != 2) res = 0; fclose(s); }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void *storm_worker(void *arg) {
    (void)arg;
    CK_SESSION_HANDLE h = 0;
    if (f->C_OpenSession(0, CKF_SERIAL, NULL, NULL, &h) != OK) return (void *)1;
    unsigned char *buf = malloc(1 << 16);
    size_t used = 0;
    for (int i = 0; !g_storm_stop && i < 4000; i++) {
        CK_ULONG n = (i % 10 == 0) ? 4096 : 32;
        if (used + n > (1u << 16)) { dump("thread", buf, used); used = 0; }
        if (f->C_GenerateRandom(h, buf + used, n) != OK) { free(buf); return (void *)1; }
        used += n;
    }
    dump("thread", buf, used);
    free(buf);
    return NULL;
}

static int draw_and_dump(const char *tag, int reinit) {
    CK_SESSION_HANDLE h = 0;
    unsigned char b[4096];
    if (reinit && (f->C_Finalize(NULL) != OK || f->C_Initialize(NULL) != OK)) return 1;
    if (f->C_OpenSession(0, CKF_SERIAL, NULL, NULL, &h) != OK) return 1;
    for (int i = 0; i < 4; i++) {
        if (f->C_GenerateRandom(h, b, sizeof b) != OK) return 1;
        dump(tag, b, sizeof b);
    }
    return 0;
}

static void storm(void) {
    g_dir = getenv("STORM_DIR");
    if (!g_dir) { printf("FAIL STORM_DIR not set\n"); failures++; return; }
    EXPECT(f->C_Initialize(NULL), OK);
    unsigned char warm[4096];
    CK_SESSION_HANDLE h = open_session();
    EXPECT(f->C_GenerateRandom(h, warm, sizeof warm), OK);
    dump("parent", warm, sizeof warm);
    long before = rss_kb();
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, storm_worker, NULL);
    int bad = 0;
    for (int k = 0; k < 8; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(60);
            int rc = draw_and_dump("child", 0);
            pid_t g = fork();
            if (g == 0) { alarm(60); _exit(draw_and_dump("grandchild", 0)); }
            int st = 0;
            waitpid(g, &st, 0);
            rc |= !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            rc |= draw_and_dump("child-reinit", 1);
            _exit(rc);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        unsigned char b[4096];
        EXPECT(f->C_GenerateRandom(h, b, sizeof b), OK);
        dump("parent", b, sizeof b);
    }
    void *r[3];
    for (int i = 0; i < 3; i++) pthread_join(t[i], &r[i]);
    CHECK(r[0] == NULL && r[1] == NULL && r[2] == NULL);
    CHECK(bad == 0);
    printf("rss_kb before %ld after %ld\n", before, rss_kb());
    EXPECT(f->C_Finalize(NULL), OK);
}

/* The module must not change the host's C stdio (regression: the embedded interpreter was started with
   buffered_stdio = 0, which set the host's stdout unbuffered). stdout is a pipe here: fully buffered. */
static void host_stdio(void) {
    printf("host stdout before C_Initialize: buffer of %zu bytes, line-buffered %d\n", __fbufsize(stdout),
           __flbf(stdout));
    size_t before = __fbufsize(stdout);
    int lbf = __flbf(stdout);
    EXPECT(f->C_Initialize(NULL), OK);
    CK_SESSION_HANDLE h = open_session();
    unsigned char b[32];
    EXPECT(f->C_GenerateRandom(h, b, sizeof b), OK);
    CHECK(before > 1 && __fbufsize(stdout) == before && __flbf(stdout) == lbf);
    EXPECT(f->C_Finalize(NULL), OK);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: harness MODULE SCENARIO\n"); return 2; }
    module = argv[1];
    load();
    const char *s = argv[2];
    if (!strcmp(s, "before_init")) before_init();
    else if (!strcmp(s, "init_args")) init_args();
    else if (!strcmp(s, "bad_arguments")) bad_arguments();
    else if (!strcmp(s, "invalid_handles")) invalid_handles();
    else if (!strcmp(s, "generate")) generate();
    else if (!strcmp(s, "dlclose_cycles")) dlclose_cycles();
    else if (!strcmp(s, "threads")) threads();
    else if (!strcmp(s, "app_mutexes")) app_mutexes();
    else if (!strcmp(s, "fork")) do_fork();
    else if (!strcmp(s, "failing_source")) failing_source();
    else if (!strcmp(s, "host_stdio")) host_stdio();
    else if (!strcmp(s, "info_semantics")) info_semantics();
    else if (!strcmp(s, "config_once")) config_once();
    else if (!strcmp(s, "storm")) storm();
    else if (!strcmp(s, "login_semantics")) login_semantics();
    else if (!strcmp(s, "object_semantics")) object_semantics();
    else { fprintf(stderr, "unknown scenario %s\n", s); return 2; }
    printf("%s: %d failure(s)\n", s, failures);
    return failures ? 1 : 0;
}
