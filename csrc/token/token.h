/* The PKCS#11 token core (PKCS#11 v2.40): one slot (ID 0) holding one random-number token, its sessions, login
 * state, the health-report object, and C_GenerateRandom / C_SeedRandom, over a backend that supplies the
 * randomness and describes itself. Each C_x function checks its pointers and the module's state, takes the
 * token's lock, and calls the backend; the backend never sees a session, a handle or a template.
 *
 * The daemon-mode module (csrc/qrngd_client/backend.c) is such a backend: its own CTR_DRBG seeded from qrngd. */
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
} qrng_token_desc;

typedef struct {
    const char *library_description;      /* CK_INFO.libraryDescription */
    const char *module_name;              /* "qrng-pkcs11-qrngd": the prefix of what it says on stderr */
    CK_ULONG max_sessions;                 /* CK_TOKEN_INFO.ulMaxSessionCount (and the session table's size) */
    /* C_Initialize, under the init lock: read the configuration once; CKR_OK or a code (said on stderr) */
    CK_RV (*init)(void);
    /* C_Finalize, under both locks */
    void (*finalize)(void);
    /* the token's description now; under the token lock (may ask the source how it is) */
    void (*info)(qrng_token_desc *out);
    /* n bytes of output into out, under the token lock; *touched set once out was written to (on a failure
       the token core then zeroes all of it: never half an answer; before, out is left as it was) */
    CK_RV (*generate)(unsigned char *out, CK_ULONG n, int *touched);
    /* the caller's bytes mixed in as additional input (never credited), under the token lock */
    CK_RV (*seed)(const unsigned char *in, CK_ULONG n);
    /* the health report as JSON (malloc'd, *len set), under the token lock; NULL: out of memory */
    char *(*health)(size_t *len);
    /* in a forked child, before anything else: drop every secret state the parent had */
    void (*fork_child)(void);
} qrng_backend;

/* the module's backend: defined once per built module */
extern const qrng_backend qrng_module_backend;

#endif
