/* libqrng-pkcs11-qrngd.so's backend (csrc/token/token.h): the PKCS#11 module in daemon mode, in C only.
 *
 * qrngd owns the entropy source, its health tests and the extractor; this module never starts Python, numpy or
 * the pipeline in the consumer's process. It keeps its own SP 800-90A CTR_DRBG (AES-256, no df; csrc/ctr_drbg.c),
 * instantiated from 48 bytes of the daemon's seed material and reseeded from it at least every reseed_ms
 * (100 ms by default) and on every request with prediction resistance. Each reseed is also the health check:
 * a daemon that is down or unhealthy stops this process's output within reseed_ms (fail closed:
 * CKR_DEVICE_ERROR and CKF_ERROR_STATE, the DRBG wiped), unless the configuration names a fallback, and then
 * the token label, model and health object say that it fell back. It recovers by itself when the daemon is back.
 * The configuration is read once, in C_Initialize. A forked child drops the DRBG and the connection, never
 * serving the parent's state. The token itself (slot, sessions, login, the health object) is csrc/token/. */
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
#include "token.h"

#define SEEDLEN 48                 /* CTR_DRBG AES-256 seedlen (SP 800-90A Table 3) */
#define MAX_REQUEST 65536u         /* bytes per DRBG request (2^19 bits, Table 3) */
#define MAX_SESSIONS 4096
#define HEALTH_MAX 70000
#define HANG_QUIET_MS 5000         /* after the daemon hung (no answer within timeout_ms), it is asked again only
                                      after this long: meanwhile every call fails closed (or falls back) at once */

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
} g;

static void wipe(void *p, size_t n) { OPENSSL_cleanse(p, n); }

static void drop_drbg(void) {
    wipe(g.drbg, sizeof g.drbg);
    g.have_drbg = 0;
}

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

/* --- the backend's operations (token.h) ------------------------------------------------------------------- */
static CK_RV daemon_init(void) {
    char err[512];
    qrngd_config cfg;
    if (qrngd_config_load(&cfg, err, sizeof err)) {
        fprintf(stderr, "qrng-pkcs11-qrngd: configuration: %s\n", err);
        return CKR_GENERAL_ERROR;
    }
    memset(&g, 0, sizeof g);
    g.cfg = cfg;
    g.conn.fd = -1;
    g.conn.timeout_ms = 2000;
    snprintf(g.conn.path, sizeof g.conn.path, "%s", cfg.socket);
    program_name(g.conn.name, sizeof g.conn.name);
    return CKR_OK;
}

static void daemon_finalize(void) {
    if (g.unreported)  /* a short-lived consumer that fell back leaves a trace even if qrngd never heard of it */
        fprintf(stderr, "qrng-pkcs11-qrngd: %llu seed(s) came from the named fallback (os) while qrngd could not "
                        "serve, and could not be reported to it: %s\n", g.unreported, g.error);
    drop_drbg();
    qrngd_close(&g.conn);
}

static CK_RV daemon_info(qrng_token_desc *d) {
    fresh_drbg(0);                 /* how the daemon is now (at most reseed_ms old) */
    snprintf(d->slot_description, sizeof d->slot_description, "qrngd at %s", g.cfg.socket);
    snprintf(d->label, sizeof d->label, "%s", g.fallback_active ? "qrng via qrngd (FALLBACK: os)" :
             g.conn.simulator ? "qrng via qrngd (SIMULATOR)" : "qrng via qrngd");
    snprintf(d->model, sizeof d->model, "%s", g.fallback_active ? "QRNGD FALLBACK" :
             g.conn.simulator ? "QRNGD SIMULATOR" : "QRNGD");
    snprintf(d->serial, sizeof d->serial, "qrngd");
    d->error_state = g.failed && !g.fallback_active;
    return CKR_OK;
}

static CK_RV daemon_generate(unsigned char *out, CK_ULONG n, int *touched, const char **how) {
    *how = g.fallback_active ? "from the module's CTR_DRBG (seeded by the fallback)" : "from the module's CTR_DRBG";
    for (CK_ULONG done = 0; done < n;) {
        CK_ULONG k = n - done < MAX_REQUEST ? n - done : MAX_REQUEST;
        if (fresh_drbg(g.cfg.prediction_resistance && done == 0)) return CKR_DEVICE_ERROR;
        *touched = 1;
        if (qrng_ctr_drbg_generate(g.drbg, NULL, out + done, k)) { drop_drbg(); return CKR_FUNCTION_FAILED; }
        done += k;
    }
    g.bytes_out += n;
    return CKR_OK;
}

/* the caller's bytes are mixed in as additional input with a fresh seed from the daemon, never credited */
static CK_RV daemon_seed(const unsigned char *in, CK_ULONG n) {
    if (fresh_drbg(1)) return CKR_DEVICE_ERROR;
    unsigned char add[SEEDLEN];
    unsigned int len = 0;
    CK_RV rv = CKR_OK;
    if (EVP_Digest(in, n, add, &len, EVP_sha384(), NULL) != 1 || qrng_ctr_drbg_update(g.drbg, add)) {
        drop_drbg();
        rv = CKR_FUNCTION_FAILED;
    }
    wipe(add, sizeof add);
    return rv;
}

static void daemon_fork_child(void) {
    drop_drbg();
    qrngd_close(&g.conn);
}

/* --- the health report ----------------------------------------------------------------------------------- */
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

const qrng_backend qrng_module_backend = {
    .library_description = "qrng-ceremony qrngd client",
    .module_name = "qrng-pkcs11-qrngd",
    .max_sessions = MAX_SESSIONS,
    .init = daemon_init,
    .finalize = daemon_finalize,
    .info = daemon_info,
    .generate = daemon_generate,
    .seed = daemon_seed,
    .health = health_report,
    .fork_child = daemon_fork_child,
};
