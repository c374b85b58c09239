/* The qrngd module's configuration: `key = value` lines (docs/daemon-protocol.md, "The PKCS#11 module in daemon
   mode"), from $QRNGD_CLIENT_CONF, else /etc/qrng/qrngd-client.conf if it exists; $QRNGD_SOCKET overrides the
   socket. Pure: the parser takes the text, so unit tests need no files. */
#ifndef QRNGD_CLIENT_CONFIG_H
#define QRNGD_CLIENT_CONFIG_H
#include <stddef.h>

#include "qrngd_protocol.h"  /* QRNGD_DEFAULT_SOCKET, generated from qrngd/protocol.py */
#define QRNGD_DEFAULT_CONF "/etc/qrng/qrngd-client.conf"

typedef enum { FALLBACK_NONE = 0, FALLBACK_OS = 1 } qrngd_fallback;

typedef struct {
    char socket[108];
    qrngd_fallback fallback;        /* named fallback when the daemon cannot serve (default none: fail closed) */
    int prediction_resistance;      /* every C_GenerateRandom reseeds from the daemon (SP 800-90A 9.3.1) */
    int reseed_ms;                  /* the DRBG is reseeded from the daemon at least this often (1..60000) */
} qrngd_config;

void qrngd_config_default(qrngd_config *cfg);
/* 0, or -1 with err = "FILE:LINE: ..." */
int qrngd_config_parse(qrngd_config *cfg, const char *text, const char *file, char *err, size_t errlen);
/* defaults, the file (if any), then the environment; 0 or -1 with err */
int qrngd_config_load(qrngd_config *cfg, char *err, size_t errlen);
#endif
