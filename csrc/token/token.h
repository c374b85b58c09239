/* The PKCS#11 token core (PKCS#11 v2.40): one slot (ID 0) holding one random-number token, its sessions, login
 * state, its objects (the health report, and the device's attestation certificates when the backend has them),
 * and C_GenerateRandom / C_SeedRandom, over a backend that supplies the randomness and describes itself. Each
 * C_x function checks its pointers and the module's state, takes the token's lock, and calls an inner function
 * or the backend; the backend never sees a session, a handle or a template. Every backend call is made under
 * the token's lock (C_Initialize's and C_Finalize's under the init lock too), so a backend needs no lock of its
 * own.
 *
 * The two backends: csrc/qrngd_client/backend.c (the daemon-mode module: its own CTR_DRBG seeded from qrngd)
 * and csrc/pkcs11/module.c (the in-process module: the entropy pipeline in an embedded Python). */
#ifndef QRNG_TOKEN_H
#define QRNG_TOKEN_H

#include <stddef.h>

#include "qrng_pkcs11.h"

/* the token as the backend describes it now (C_GetSlotInfo, C_GetTokenInfo); texts are NUL-terminated here and
   blank-padded by the token core */
typedef struct {
    char slot_description[160];  /* cut to 64 bytes by the token core */
    char label[33];
    char model[17];
    char serial[17];
    int error_state;    /* CKF_ERROR_STATE: a generation now would fail (fail closed) */
    int absent;         /* the device was removed: no CKF_TOKEN_PRESENT, CKR_TOKEN_NOT_PRESENT (5.5, 5.6) */
    int hardware;       /* a physical device: CKF_HW_SLOT | CKF_REMOVABLE_DEVICE */
} qrng_token_desc;

typedef struct {
    const char *library_description;      /* CK_INFO.libraryDescription */
    const char *module_name;              /* "qrng-pkcs11-qrngd": the prefix of what it says on stderr */
    CK_ULONG max_sessions;                 /* CK_TOKEN_INFO.ulMaxSessionCount (and the session table's size) */
    /* C_Initialize, under the init lock: read the configuration once; CKR_OK or a code (said on stderr) */
    CK_RV (*init)(void);
    /* C_Finalize, under both locks */
    void (*finalize)(void);
    /* the token's description now; under the token lock (may open the source and ask it how it is); CKR_OK, or
       a code for C_GetTokenInfo (an installation problem: CKR_GENERAL_ERROR) */
    CK_RV (*info)(qrng_token_desc *out);
    /* the slot's description, without opening or waiting for the source (C_GetSlotInfo); NULL: info */
    CK_RV (*slot_info)(qrng_token_desc *out);
    /* C_OpenSession's check (may open the source): CKR_OK, CKR_TOKEN_NOT_PRESENT, or a code; NULL: CKR_OK */
    CK_RV (*present)(void);
    /* n bytes of output into out, under the token lock; *touched set once out was written to (on a failure
       the token core then zeroes all of it: never half an answer; before, out is left as it was); *how, if the
       backend sets it, says in the call log where the bytes came from */
    CK_RV (*generate)(unsigned char *out, CK_ULONG n, int *touched, const char **how);
    /* the caller's bytes mixed in as additional input (never credited), under the token lock */
    CK_RV (*seed)(const unsigned char *in, CK_ULONG n);
    /* the health report as JSON (malloc'd, *len set), under the token lock; NULL: out of memory */
    char *(*health)(size_t *len);
    /* the i-th attestation certificate (DER) to show as a public CKO_CERTIFICATE object, or NULL past the last;
       asked after init, under the init lock; NULL function: none */
    const unsigned char *(*certificate)(size_t i, size_t *len);
    /* fork(), in a C host (see fork_host_managed): after the core took its locks, and before it releases them
       in the parent; NULL: nothing to do */
    void (*fork_prepare)(void);
    void (*fork_parent)(void);
    /* in a forked child, before anything else: drop every secret state the parent had */
    void (*fork_child)(void);
    /* around a wait for the token lock: a backend whose calls need a lock the waiting thread may hold (a Python
       host that calls the module holding the GIL, while the lock's holder waits for the GIL in a backend call)
       lets it go while waiting, and takes it back after; NULL: nothing */
    void *(*wait_begin)(void);
    void (*wait_end)(void *state);
    /* nonzero when the host forks holding a lock a backend call may wait for (a Python host's os.fork() holds
       the GIL): the core then takes none of its locks around fork() and re-creates them in the child; NULL: 0 */
    int (*fork_host_managed)(void);
} qrng_backend;

/* the module's backend: defined once per built module */
extern const qrng_backend qrng_module_backend;

/* the call log and the re-entry guard (calllog.c) */
/* 0, or -1 when this thread is already inside one of the module's functions (said once on stderr) */
int qrng_enter(const char *fn);
void qrng_leave(void);
/* one line per call into $QRNG_PKCS11_LOG, if set: "HH:MM:SS pid=N C_Name -> CKR_X[ detail]"; returns rv */
CK_RV qrng_log_call(const char *fn, CK_RV rv, const char *detail);
/* the code's name ("CKR_DEVICE_ERROR"), or NULL for one the module never returns */
const char *qrng_rv_name(CK_RV rv);

/* the token's objects (objects.c, 5.7 and 4.6): handles 1..n the certificates, n+1 the health report */
#define QRNG_MAX_OBJECTS 8
/* at C_Initialize, after the backend's init: the certificates the backend has; CKR_OK, or a code */
CK_RV qrng_objects_load(const qrng_backend *backend);
void qrng_objects_free(void);
CK_ULONG qrng_object_count(void);
CK_OBJECT_HANDLE qrng_health_handle(void);
/* attribute t of object h (the health report's CKA_VALUE is the session's snapshot, given): 0, or -1 if the
   object has no such attribute */
int qrng_object_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, const char *health, size_t health_len,
                     const void **value, CK_ULONG *len);
/* the attribute types object h has, for C_GetObjectSize (the sum of their values' lengths) */
size_t qrng_object_types(CK_OBJECT_HANDLE h, const CK_ATTRIBUTE_TYPE **types);
#endif
