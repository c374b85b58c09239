/* The qrngd module's configuration (see config.h). Strict: unknown or repeated keys, values out of range, a
   relative socket path or a file that is not text are errors naming the file, the line and the key. */
#define _GNU_SOURCE  /* secure_getenv */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qrngd_config_default(qrngd_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->socket, sizeof cfg->socket, "%s", QRNGD_DEFAULT_SOCKET);
    cfg->fallback = FALLBACK_NONE;
    cfg->prediction_resistance = 0;
    cfg->reseed_ms = 100;
}

static int set_socket(qrngd_config *cfg, const char *v, const char *where, char *err, size_t errlen) {
    if (v[0] != '/') { snprintf(err, errlen, "%s: socket must be an absolute path", where); return -1; }
    if (strlen(v) >= sizeof cfg->socket) {
        snprintf(err, errlen, "%s: socket must be at most %zu bytes", where, sizeof cfg->socket - 1);
        return -1;
    }
    snprintf(cfg->socket, sizeof cfg->socket, "%s", v);
    return 0;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

int qrngd_config_parse(qrngd_config *cfg, const char *text, const char *file, char *err, size_t errlen) {
    char line[512], where[320];
    unsigned seen = 0;
    int lineno = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        lineno++;
        snprintf(where, sizeof where, "%s:%d", file, lineno);
        if (n >= sizeof line) { snprintf(err, errlen, "%s: line longer than %zu bytes", where, sizeof line - 1); return -1; }
        memcpy(line, p, n);
        line[n] = 0;
        p = end ? end + 1 : p + n;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)line[i] < 0x20 && line[i] != '\t' && line[i] != '\r') {
                snprintf(err, errlen, "%s: control character in the line", where);
                return -1;
            }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) { snprintf(err, errlen, "%s: expected `key = value`", where); return -1; }
        *eq = 0;
        char *key = trim(s), *v = trim(eq + 1);
        static const char *keys[] = { "socket", "fallback", "prediction_resistance", "reseed_ms" };
        unsigned k = 0;
        while (k < 4 && strcmp(key, keys[k])) k++;
        if (k == 4) {
            snprintf(err, errlen, "%s: unknown key (one of socket, fallback, prediction_resistance, reseed_ms)", where);
            return -1;
        }
        if (seen & (1u << k)) { snprintf(err, errlen, "%s: %s given twice", where, key); return -1; }
        seen |= 1u << k;
        if (k == 0 && set_socket(cfg, v, where, err, errlen)) return -1;
        if (k == 1) {
            if (!strcmp(v, "none")) cfg->fallback = FALLBACK_NONE;
            else if (!strcmp(v, "os")) cfg->fallback = FALLBACK_OS;
            else { snprintf(err, errlen, "%s: fallback must be none or os", where); return -1; }
        }
        if (k == 2) {
            if (!strcmp(v, "yes")) cfg->prediction_resistance = 1;
            else if (!strcmp(v, "no")) cfg->prediction_resistance = 0;
            else { snprintf(err, errlen, "%s: prediction_resistance must be yes or no", where); return -1; }
        }
        if (k == 3) {
            char *e = NULL;
            errno = 0;
            long ms = strtol(v, &e, 10);
            if (errno || !*v || *e || ms < 1 || ms > 60000) {
                snprintf(err, errlen, "%s: reseed_ms must be an integer from 1 to 60000", where);
                return -1;
            }
            cfg->reseed_ms = (int)ms;
        }
    }
    return 0;
}

int qrngd_config_load(qrngd_config *cfg, char *err, size_t errlen) {
    qrngd_config_default(cfg);
    /* secure_getenv: a set-user-ID program never takes its socket or configuration from its caller's environment */
    const char *file = secure_getenv("QRNGD_CLIENT_CONF");
    int explicit = file && *file;
    if (!explicit) file = QRNGD_DEFAULT_CONF;
    /* a regular file only: a FIFO would block C_Initialize, a device would be read as configuration */
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        snprintf(err, errlen, "%s: not a regular file", file);
        return -1;
    }
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (fd >= 0 && !f) close(fd);
    if (!f && (explicit || errno != ENOENT)) {
        snprintf(err, errlen, "%s: cannot read: %s", file, strerror(errno));
        return -1;
    }
    if (f) {
        char text[16384];
        size_t n = fread(text, 1, sizeof text - 1, f);
        int big = !feof(f);
        fclose(f);
        if (big) { snprintf(err, errlen, "%s: larger than %zu bytes", file, sizeof text - 1); return -1; }
        text[n] = 0;
        if (strlen(text) != n) { snprintf(err, errlen, "%s: contains a NUL byte (not a text file)", file); return -1; }
        if (qrngd_config_parse(cfg, text, file, err, errlen)) return -1;
    }
    const char *env = secure_getenv("QRNGD_SOCKET");
    if (env && *env && set_socket(cfg, env, "$QRNGD_SOCKET", err, errlen)) return -1;
    return 0;
}
