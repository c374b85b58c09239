/* PKCS#11 ABI fuzzer for the qrng module: `fuzz_abi MODULE SECONDS THREADS SEED`.
 *
 * Built with AddressSanitizer and UBSan together with a sanitizer build of the module (build/asan). Several
 * threads call random functions of the function list with hostile arguments: NULL pointers, lengths of 0 to
 * 1 MiB (buffers really that large: lying about a buffer's size is undefined for every module), stale and random
 * handles, wrong order (C_Finalize and C_Initialize at random), and now and then a fork whose child calls the
 * module too. Checked: no crash or sanitizer report (the run aborts), no hang (the caller's timeout), every
 * C_GenerateRandom answers a PKCS#11 code and leaves its buffer as the README documents: all output on CKR_OK,
 * untouched when refused before generating, all zero when generation failed after it began.
 * Prints one summary line; exits 1 on a violated rule. */
#include "qrng-pkcs11.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXLEN (1u << 20)
#define MIN_FORKS 20   /* forks of a fork run, at least (test_fuzz_abi.py reads and asserts it) */
static CK_FUNCTION_LIST *f;
static volatile int stop;
/* Counters are atomics, not a mutex: a child forked while a worker held a counting mutex would block on it
   forever, a hang of the checker that looked like one of the module (seen 1 run in 3 before this). */
static long calls, generates, violations;
#define COUNT(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)

static unsigned long next(unsigned long long *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;   /* xorshift64: reproducible from the seed */
    return (unsigned long)*s;
}

static CK_ULONG hostile_handle(unsigned long long *s, CK_SESSION_HANDLE good) {
    switch (next(s) % 6) {
        case 0: return 0;
        case 1: return (CK_ULONG)-1;
        case 2: return next(s) % 64;
        case 3: return (CK_ULONG)1 << 20;
        default: return good;
    }
}

static void violation(const char *what, CK_RV rv, CK_ULONG n) {
    COUNT(violations);
    fprintf(stderr, "VIOLATION %s rv=%#lx len=%lu\n", what, rv, n);
}

static void check_generate(CK_SESSION_HANDLE h, CK_ULONG n, unsigned long long *s) {
    unsigned char *buf = n ? malloc(n) : NULL;
    if (n && !buf) return;
    if (n) memset(buf, 0xAA, n);
    CK_RV rv = f->C_GenerateRandom(h, (next(s) % 16 == 0) ? NULL : buf, n);
    if (n && buf) {
        CK_ULONG aa = 0, zero = 0;
        for (CK_ULONG i = 0; i < n; i++) { aa += buf[i] == 0xAA; zero += buf[i] == 0; }
        if (rv != 0 && aa != n && zero != n) violation("failed C_GenerateRandom left partial output", rv, n);
        if (rv == 0 && n >= 4096 && aa > n / 64) violation("C_GenerateRandom OK but the buffer was not filled", rv, n);
    }
    free(buf);
}

static void one_call(unsigned long long *s, CK_SESSION_HANDLE *sessions) {
    CK_SESSION_HANDLE good = sessions[next(s) % 4];
    CK_ULONG n = (CK_ULONG)(next(s) % 5 == 0 ? next(s) % MAXLEN : next(s) % 4097);
    CK_SLOT_ID slot = next(s) % 4 == 0 ? next(s) % 8 : 0;
    switch (next(s) % 20) {
        case 0: f->C_Initialize(next(s) % 2 ? NULL : &(CK_C_INITIALIZE_ARGS){0}); break;
        case 1: if (next(s) % 8 == 0) f->C_Finalize(next(s) % 4 ? NULL : (void *)1); break;
        case 2: { CK_INFO i; f->C_GetInfo(next(s) % 8 ? &i : NULL); break; }
        case 3: { CK_SLOT_ID l[4]; CK_ULONG c = next(s) % 5; f->C_GetSlotList(next(s) % 2, next(s) % 3 ? l : NULL,
                                                                              next(s) % 8 ? &c : NULL); break; }
        case 4: { CK_SLOT_INFO i; f->C_GetSlotInfo(slot, next(s) % 8 ? &i : NULL); break; }
        case 5: { CK_TOKEN_INFO i; f->C_GetTokenInfo(slot, next(s) % 8 ? &i : NULL); break; }
        case 6: {
            CK_SESSION_HANDLE h;
            CK_FLAGS fl = next(s) % 7 ? 4 | (next(s) % 2) * 2 : next(s);
            if (f->C_OpenSession(slot, fl, NULL, NULL, next(s) % 8 ? &h : NULL) == 0) sessions[next(s) % 4] = h;
            break;
        }
        case 7: f->C_CloseSession(hostile_handle(s, good)); break;
        case 8: if (next(s) % 16 == 0) f->C_CloseAllSessions(slot); break;
        case 9: { CK_SESSION_INFO i; f->C_GetSessionInfo(hostile_handle(s, good), next(s) % 8 ? &i : NULL); break; }
        case 10: case 11: case 12:
            COUNT(generates);
            check_generate(hostile_handle(s, good), n, s); break;
        case 13: { unsigned char seed[64]; f->C_SeedRandom(hostile_handle(s, good), next(s) % 8 ? seed : NULL,
                                                           next(s) % 65); break; }
        case 14: { CK_ATTRIBUTE t[2]; CK_ULONG cls = 0; t[0].type = 0; t[0].pValue = &cls;
                   t[0].ulValueLen = next(s) % 2 ? sizeof cls : 1; t[1].type = next(s) % 0x200; t[1].pValue = NULL;
                   t[1].ulValueLen = 0;
                   f->C_FindObjectsInit(hostile_handle(s, good), next(s) % 4 ? t : NULL, next(s) % 3);
                   CK_OBJECT_HANDLE o[4]; CK_ULONG c = 0;
                   f->C_FindObjects(hostile_handle(s, good), next(s) % 8 ? o : NULL, next(s) % 5, next(s) % 8 ? &c : NULL);
                   f->C_FindObjectsFinal(hostile_handle(s, good));
                   f->C_GetAttributeValue(hostile_handle(s, good), next(s) % 5, next(s) % 4 ? t : NULL, next(s) % 3);
                   break; }
        case 15: { CK_ULONG sz; f->C_GetObjectSize(hostile_handle(s, good), next(s) % 5, next(s) % 8 ? &sz : NULL);
                   break; }
        case 16: { unsigned char pin[8] = "00000000"; f->C_Login(hostile_handle(s, good), next(s) % 4,
                                                                next(s) % 4 ? pin : NULL, next(s) % 9);
                   f->C_Logout(hostile_handle(s, good)); break; }
        case 17: { CK_MECHANISM_TYPE m[8]; CK_ULONG c = next(s) % 9; CK_MECHANISM_INFO mi;
                   f->C_GetMechanismList(slot, next(s) % 3 ? m : NULL, next(s) % 8 ? &c : NULL);
                   f->C_GetMechanismInfo(slot, next(s) % 0x2000, next(s) % 8 ? &mi : NULL); break; }
        case 18: { CK_OBJECT_HANDLE o; f->C_CreateObject(hostile_handle(s, good), NULL, 0, next(s) % 2 ? &o : NULL);
                   f->C_DestroyObject(hostile_handle(s, good), next(s) % 5);
                   f->C_SignInit(hostile_handle(s, good), NULL, 0);
                   f->C_DigestInit(hostile_handle(s, good), NULL);
                   f->C_GetFunctionStatus(hostile_handle(s, good)); break; }
        default: { CK_SLOT_ID sl; f->C_WaitForSlotEvent(1 /* CKF_DONT_BLOCK */, next(s) % 4 ? &sl : NULL, NULL);
                   break; }
    }
    COUNT(calls);
}

struct worker { unsigned long long seed; };

static void *work(void *arg) {
    unsigned long long s = ((struct worker *)arg)->seed;
    CK_SESSION_HANDLE sessions[4] = {1, 2, 3, 4};
    while (!stop) one_call(&s, sessions);
    return NULL;
}

/* --- regression scenarios for what the fuzzer found ------------------------------------------------------- */
/* zero-null: C_GenerateRandom(h, NULL, 0) on an open session took the fast path and called memcpy(NULL, ., 0),
   undefined behaviour that UBSan reports. */
static int zero_null(void) {
    CK_SESSION_HANDLE h;
    if (f->C_Initialize(NULL) || f->C_OpenSession(0, 4, NULL, NULL, &h)) return 2;
    CK_RV rv = f->C_GenerateRandom(h, NULL, 0);
    f->C_Finalize(NULL);
    printf("zero-null: C_GenerateRandom(h, NULL, 0) = %#lx\n", rv);
    return rv == 0 ? 0 : 1;
}

/* fork-during-init: a thread keeps calling C_Finalize / C_Initialize while the main thread forks; each child
   must be able to use the module. Children used to inherit g_init_lock held (and Python locks held) and hang. */
static volatile int churn_stop;

/* Fork; the child runs child() under a 20 s alarm (a hang becomes SIGALRM, not a stuck test) and exits with its
   result; the parent counts a hung or failed child. */
static void fork_and_judge(int (*child)(void), int *hung, int *failed) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20);
        _exit(child());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) (*hung)++;
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) (*failed)++;
}
static void *churn(void *arg) {
    (void)arg;
    while (!churn_stop) { f->C_Initialize(NULL); CK_SESSION_HANDLE h; f->C_OpenSession(0, 4, NULL, NULL, &h);
                          unsigned char b[64]; f->C_GenerateRandom(h, b, sizeof b); f->C_SeedRandom(h, b, 8);
                          f->C_Finalize(NULL); }
    return NULL;
}

static int child_after_init_fork(void) {
    CK_RV rv = f->C_Initialize(NULL);
    CK_SESSION_HANDLE h;
    unsigned char b[32];
    if (rv != 0 && rv != 0x191UL) return 3;
    if (f->C_OpenSession(0, 4, NULL, NULL, &h) || f->C_GenerateRandom(h, b, sizeof b)) return 4;
    return 0;
}

static int fork_during_init(int rounds) {
    pthread_t t;
    int hung = 0, failed = 0;
    pthread_create(&t, NULL, churn, NULL);
    for (int i = 0; i < rounds; i++) {
        usleep(20000 + (i % 7) * 3000);
        fork_and_judge(child_after_init_fork, &hung, &failed);
    }
    churn_stop = 1;
    pthread_join(t, NULL);
    printf("fork-during-init: %d forks, %d children hung, %d failed\n", rounds, hung, failed);
    return hung || failed ? 1 : 0;
}

/* leak-canary: 4 KiB allocated and dropped on purpose, so a test can show the leak checker still reports a
   leak under the sanitizer options the fuzz run uses. */
static __attribute__((noinline)) void leak_canary(void) {
    char *volatile p = malloc(4096);
    if (p) p[0] = 1;
    p = NULL;
}

/* fork-during-extract: threads keep reseeding (each C_SeedRandom runs a Toeplitz extraction in the native
   kernel) while the main thread forks; each child reseeds too. Children used to inherit a Toeplitz plan's lock
   held by a thread that does not exist in them, and hung in qrng_toeplitz_apply. */
static CK_SESSION_HANDLE extract_session;
static void *reseed(void *arg) {
    (void)arg;
    unsigned char b[4096];
    while (!churn_stop) { f->C_SeedRandom(extract_session, b, 8); f->C_GenerateRandom(extract_session, b, sizeof b); }
    return NULL;
}

static int child_after_extract_fork(void) {
    unsigned char b[64];
    f->C_SeedRandom(extract_session, b, 8);        /* any answer will do; it must come */
    f->C_GenerateRandom(extract_session, b, sizeof b);
    return 0;
}

static int fork_during_extract(int rounds) {
    pthread_t t[3];
    int hung = 0, failed = 0;
    if (f->C_Initialize(NULL) || f->C_OpenSession(0, 4, NULL, NULL, &extract_session)) return 2;
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, reseed, NULL);
    for (int i = 0; i < rounds; i++) {
        usleep(5000 + (i % 5) * 2000);
        fork_and_judge(child_after_extract_fork, &hung, &failed);
    }
    churn_stop = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    f->C_Finalize(NULL);
    printf("fork-during-extract: %d forks, %d children hung, %d failed\n", rounds, hung, failed);
    return hung || failed ? 1 : 0;
}

int main(int argc, char **argv) {
    if (getenv("FUZZ_ABI_LEAK_CANARY")) leak_canary();
    if (argc == 3 || argc == 4) {                    /* fuzz_abi MODULE SCENARIO [ROUNDS] */
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        CK_RV (*gfl)(void *) = h ? (CK_RV (*)(void *))dlsym(h, "C_GetFunctionList") : NULL;
        if (!gfl || gfl(&f) != 0) { fprintf(stderr, "cannot load %s\n", argv[1]); return 2; }
        if (!strcmp(argv[2], "zero-null")) return zero_null();
        if (!strcmp(argv[2], "fork-during-init")) return fork_during_init(argc == 4 ? atoi(argv[3]) : 40);
        if (!strcmp(argv[2], "fork-during-extract")) return fork_during_extract(argc == 4 ? atoi(argv[3]) : 60);
        return 2;
    }
    if (argc != 5) { fprintf(stderr, "usage: fuzz_abi MODULE SECONDS THREADS SEED | MODULE SCENARIO\n"); return 2; }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    CK_RV (*gfl)(void *) = (CK_RV (*)(void *))dlsym(h, "C_GetFunctionList");
    if (!gfl || gfl(&f) != 0) { fprintf(stderr, "no function list\n"); return 2; }
    int seconds = atoi(argv[2]), nthreads = atoi(argv[3]);
    unsigned long long seed = strtoull(argv[4], NULL, 10) | 1;
    if (f->C_Initialize(NULL) != 0) { fprintf(stderr, "C_Initialize failed\n"); return 2; }
    pthread_t t[16];
    struct worker w[16];
    if (nthreads > 16) nthreads = 16;
    for (int i = 0; i < nthreads; i++) { w[i].seed = seed * (i + 1) * 0x9E3779B97F4A7C15ULL; pthread_create(&t[i], NULL, work, &w[i]); }
    time_t end = time(NULL) + seconds;
    int forks = 0;
    int may_fork = getenv("FUZZ_ABI_NO_FORK") == NULL;
    /* At least MIN_FORKS forks whatever the machine's speed: each fork waits for its child (50 calls and
       C_Finalize), so a loaded machine fit only 10 into 10 s and a count-by-time run judged too few. */
    int min_forks = may_fork ? MIN_FORKS : 0;
    while (time(NULL) < end || forks < min_forks) {
        usleep(200000);
        if (!may_fork) continue;
        pid_t pid = fork();   /* the other threads are inside the module at random points */
        if (pid < 0) { perror("VIOLATION fork"); COUNT(violations); break; }
        if (pid == 0) {
            long before = violations;   /* the parent's count, inherited */
            alarm(30);        /* a child that hangs becomes a reported violation (SIGALRM), not a stuck run */
            unsigned long long s = seed ^ (unsigned long long)getpid();
            CK_SESSION_HANDLE sessions[4] = {1, 2, 3, 4};
            for (int i = 0; i < 50; i++) one_call(&s, sessions);
            f->C_Finalize(NULL);
            _exit(violations != before ? 1 : 0);
        }
        int status = 0;
        if (pid > 0) {
            waitpid(pid, &status, 0);
            forks++;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "VIOLATION forked child ended with status %#x\n", status);
                COUNT(violations);
            }
        }
    }
    stop = 1;
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
    f->C_Finalize(NULL);
    printf("fuzz_abi: %ld calls (%ld C_GenerateRandom) in %d s on %d threads, %d forks, %ld violations\n",
           calls, generates, seconds, nthreads, forks, violations);
    return violations ? 1 : 0;
}
