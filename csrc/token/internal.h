/* What the token core's files share (token.c: sessions and locking; objects.c: the object calls); backends
   see token.h only. */
#ifndef QRNG_TOKEN_INTERNAL_H
#define QRNG_TOKEN_INTERNAL_H

#include "token.h"

/* the exported function `name`: the re-entry guard, the inner call, one line in the call log */
#define CALL(name, expr) do {                                                                   \
        if (qrng_enter(name)) return qrng_log_call(name, CKR_GENERAL_ERROR, "(re-entered)");    \
        CK_RV rv_ = (expr);                                                                     \
        qrng_leave();                                                                           \
        return qrng_log_call(name, rv_, NULL);                                                  \
    } while (0)

typedef struct {
    int open, rw, finding;
    CK_OBJECT_HANDLE found[QRNG_MAX_OBJECTS];   /* the objects C_FindObjectsInit matched, not yet returned */
    CK_ULONG n_found, find_pos;
    char *health;                  /* the health report as this session last read it (size query, then value) */
    size_t health_len;
} session_t;

/* the token lock: OS mutex, or the application's (5.4) */
void qrng_lock(void);
void qrng_unlock(void);
/* the open session with this handle, or NULL; under the token lock */
session_t *qrng_session(CK_SESSION_HANDLE h);
#endif
