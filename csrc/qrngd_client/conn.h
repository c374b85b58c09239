/* A qrngd protocol client (docs/daemon-protocol.md, version 1) over a Unix stream socket. No locking here: the
   module holds its lock around every call. */
#ifndef QRNGD_CONN_H
#define QRNGD_CONN_H
#include <stddef.h>
#include <stdint.h>

#include "qrngd_protocol.h"  /* ops, statuses and limits, generated from qrngd/protocol.py */

typedef struct {
    int fd;                /* -1 when not connected */
    char path[108];        /* sun_path */
    char name[65];         /* the HELLO name: the program's name, as the daemon's per-client counters show it */
    int simulator;         /* the daemon said (HELLO) that a source it mixes is a simulator */
    int timeout_ms;        /* the most one request may take, connecting and a reconnection included */
    int timed_out;         /* the last request ran out of time: the daemon accepts but does not answer (hangs) */
} qrngd_conn;

/* One request and its answer. Returns 0 when the daemon answered (its status in *status, the payload in resp,
   at most cap bytes, its length in *resp_len), -1 when it cannot be reached or breaks the protocol (err says
   why). A connection the daemon dropped (it restarted) is opened again once. Connecting and every read and write
   share one deadline, timeout_ms after the call: no call takes longer, whatever the daemon does. */
int qrngd_request(qrngd_conn *c, int op, const void *payload, uint32_t len, unsigned char *resp, uint32_t cap,
                  uint32_t *resp_len, int *status, char *err, size_t errlen);

/* n bytes (1..4096) of seed material: 0, 1 (the daemon is unhealthy; err holds its reason) or -1 (unreachable). */
int qrngd_seed(qrngd_conn *c, unsigned char *out, uint32_t n, char *err, size_t errlen);

void qrngd_close(qrngd_conn *c);
#endif
