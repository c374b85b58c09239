/* qrngd protocol client, version 1 (docs/daemon-protocol.md): 8-byte header "QR", version, op/status, u32 LE
   length, then the payload. Sends use MSG_NOSIGNAL: a daemon that went away never raises SIGPIPE in the host. */
#define _GNU_SOURCE  /* struct ucred (SO_PEERCRED) */
#include "conn.h"

#include <errno.h>
#include <libgen.h>
#include <sys/stat.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void say(char *err, size_t errlen, const char *what, const char *path, int e) {
    if (err && errlen) snprintf(err, errlen, "qrngd at %s: %s%s%s", path, what, e ? ": " : "", e ? strerror(e) : "");
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* all of buf, or -1 (errno set; ETIMEDOUT when the deadline passed, EPIPE when the peer closed) */
static int io_all(int fd, unsigned char *buf, size_t n, int writing, long deadline) {
    size_t done = 0;
    while (done < n) {
        long left = deadline - now_ms();
        if (left <= 0) { errno = ETIMEDOUT; return -1; }
        struct pollfd p = { fd, (short)(writing ? POLLOUT : POLLIN), 0 };
        int r = poll(&p, 1, (int)left);
        if (r < 0) { if (errno == EINTR) continue; return -1; }
        if (r == 0) { errno = ETIMEDOUT; return -1; }
        ssize_t k = writing ? send(fd, buf + done, n - done, MSG_NOSIGNAL) : recv(fd, buf + done, n - done, 0);
        if (k < 0) { if (errno == EINTR || errno == EAGAIN) continue; return -1; }
        if (k == 0) { errno = EPIPE; return -1; }
        done += (size_t)k;
    }
    return 0;
}

void qrngd_close(qrngd_conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

static void put_header(unsigned char *h, int op, uint32_t len) {
    h[0] = QRNGD_MAGIC0; h[1] = QRNGD_MAGIC1; h[2] = QRNGD_PROTOCOL_VERSION; h[3] = (unsigned char)op;
    for (int i = 0; i < 4; i++) h[4 + i] = (unsigned char)(len >> (8 * i));
}

/* one exchange on an open connection, by the deadline: 0, or -1 with errno / *proto set */
static int exchange(qrngd_conn *c, int op, const void *payload, uint32_t len, unsigned char *resp, uint32_t cap,
                    uint32_t *resp_len, int *status, const char **proto, long deadline) {
    unsigned char h[8];
    put_header(h, op, len);
    if (io_all(c->fd, h, 8, 1, deadline)) return -1;
    if (len && io_all(c->fd, (unsigned char *)payload, len, 1, deadline)) return -1;
    if (io_all(c->fd, h, 8, 0, deadline)) return -1;
    uint32_t n = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
    if (h[0] != QRNGD_MAGIC0 || h[1] != QRNGD_MAGIC1 || h[2] != QRNGD_PROTOCOL_VERSION) {
        *proto = "answer is not qrngd protocol version 1";
        return -1;
    }
    if (n > QRNGD_MAX_PAYLOAD || n > cap) { *proto = "answer longer than asked for"; return -1; }
    if (n && io_all(c->fd, resp, n, 0, deadline)) return -1;
    *resp_len = n;
    *status = h[3];
    return 0;
}

/* connect() by the deadline: a Unix socket whose listener does not accept (its backlog full: a hung daemon)
   answers EAGAIN to a non-blocking connect, which is tried again until the deadline instead of blocking */
static int connect_by(int fd, const struct sockaddr_un *a, long deadline) {
    for (;;) {
        if (connect(fd, (const struct sockaddr *)a, sizeof *a) == 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            if (deadline - now_ms() <= 0) { errno = ETIMEDOUT; return -1; }
            struct timespec pause = { 0, 5 * 1000000L };
            nanosleep(&pause, NULL);
            continue;
        }
        if (errno == EINPROGRESS) {
            long left = deadline - now_ms();
            struct pollfd p = { fd, POLLOUT, 0 };
            int r = left > 0 ? poll(&p, 1, (int)left) : 0;
            if (r == 0) { errno = ETIMEDOUT; return -1; }
            if (r < 0) return -1;
            int e = 0;
            socklen_t n = sizeof e;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &n) != 0) return -1;
            if (e) { errno = e; return -1; }
            return 0;
        }
        return -1;
    }
}

static int connect_hello(qrngd_conn *c, char *err, size_t errlen, long deadline) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(c->path) >= sizeof a.sun_path) { say(err, errlen, "socket path too long", c->path, 0); return -1; }
    memcpy(a.sun_path, c->path, strlen(c->path));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) { say(err, errlen, "socket", c->path, errno); return -1; }
    if (connect_by(fd, &a, deadline) != 0) {
        if (errno == ETIMEDOUT) c->timed_out = 1;
        say(err, errlen, errno == ETIMEDOUT ? "not accepting connections (hung?)" : "not reachable", c->path, errno);
        close(fd);
        return -1;
    }
    /* a socket in a shared folder can be squatted by another user before the daemon binds it: the peer must be
       root, this process's own user, or the owner of the folder holding the socket (qrngd's RuntimeDirectory) */
    struct ucred cred;
    socklen_t clen = sizeof cred;
    char dir[sizeof c->path];
    struct stat ds;
    snprintf(dir, sizeof dir, "%s", c->path);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || stat(dirname(dir), &ds) != 0 ||
        (cred.uid != 0 && cred.uid != geteuid() && cred.uid != ds.st_uid)) {
        say(err, errlen, "answered by a process of a user that owns neither the daemon's folder nor this process "
                         "(a squatted socket?); refused", c->path, 0);
        close(fd);
        return -1;
    }
    c->fd = fd;
    unsigned char resp[512];
    uint32_t n = 0;
    int status = 0;
    const char *proto = NULL;
    if (exchange(c, QRNGD_HELLO, c->name, (uint32_t)strlen(c->name), resp, sizeof resp - 1, &n, &status, &proto,
                 deadline)) {
        if (!proto && errno == ETIMEDOUT) c->timed_out = 1;
        say(err, errlen, proto ? proto : "HELLO failed", c->path, proto ? 0 : errno);
        qrngd_close(c);
        return -1;
    }
    if (status != QRNGD_OK) { say(err, errlen, "HELLO refused", c->path, 0); qrngd_close(c); return -1; }
    resp[n] = 0;
    /* the daemon's HELLO answer is JSON written by json.dumps with its default separators */
    c->simulator = strstr((char *)resp, "\"simulator\": true") != NULL;
    return 0;
}

int qrngd_request(qrngd_conn *c, int op, const void *payload, uint32_t len, unsigned char *resp, uint32_t cap,
                  uint32_t *resp_len, int *status, char *err, size_t errlen) {
    long deadline = now_ms() + c->timeout_ms;  /* one deadline for the whole call, a reconnection included */
    c->timed_out = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = c->fd < 0;
        if (fresh && connect_hello(c, err, errlen, deadline)) return -1;
        const char *proto = NULL;
        if (exchange(c, op, payload, len, resp, cap, resp_len, status, &proto, deadline) == 0) return 0;
        int e = errno;
        if (!proto && e == ETIMEDOUT) c->timed_out = 1;
        qrngd_close(c);
        if (c->timed_out) { say(err, errlen, "did not answer in time (hung?)", c->path, e); return -1; }
        if (proto) { say(err, errlen, proto, c->path, 0); return -1; }
        say(err, errlen, "connection lost", c->path, e);
        if (fresh) return -1;      /* a new connection that fails is not a restart: do not retry */
    }
    return -1;
}

int qrngd_seed(qrngd_conn *c, unsigned char *out, uint32_t n, char *err, size_t errlen) {
    unsigned char req[4] = { (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                             (unsigned char)(n >> 24) };
    unsigned char resp[QRNGD_MAX_SEED];
    uint32_t got = 0;
    int status = 0;
    if (n == 0 || n > QRNGD_MAX_SEED) { say(err, errlen, "seed length out of range", c->path, 0); return -1; }
    if (qrngd_request(c, QRNGD_SEED, req, 4, resp, sizeof resp, &got, &status, err, errlen)) return -1;
    if (status == QRNGD_OK && got == n) {
        memcpy(out, resp, n);
        memset(resp, 0, sizeof resp);
        __asm__ __volatile__("" ::: "memory");
        return 0;
    }
    if (status == QRNGD_UNHEALTHY) {
        /* the reason is UTF-8 text from the daemon: kept printable ASCII, and short */
        char why[160];
        size_t k = 0;
        for (uint32_t i = 0; i < got && k + 1 < sizeof why; i++)
            why[k++] = (resp[i] >= 0x20 && resp[i] < 0x7f) ? (char)resp[i] : '?';
        why[k] = 0;
        if (err && errlen) snprintf(err, errlen, "qrngd at %s is unhealthy: %s", c->path, why);
        return 1;
    }
    say(err, errlen, status == QRNGD_OK ? "SEED answer of the wrong length" : "SEED refused", c->path, 0);
    return -1;
}
