/*
 * The lab HTTP agent's fast path: accepts plain-HTTP connections and answers the common ones
 * in C.
 *
 * Why: the lab stands in for 100,000 web servers on the prober's own 2-core machine, so every
 * CPU-second the Python agent (lab/http_agent.py) spends on a connection is taken from the
 * round it serves; in the field that CPU is the servers'. In pure Python the agent spends
 * ~13-21 us of user time per connection, ~35-47 us in all with the kernel's TCP work; through
 * this loop ~2-4 and ~23-28 (bench/probes_http.py --lab-only, 50,000 sites): what is left is
 * the kernel's accept, send and close. ctypes releases the GIL while it runs.
 *
 * http_fast_accept() accepts up to max_accept connections from the plain (non-TLS) listener,
 * finds each one's site by the address it was made to (getsockname, binary search of the
 * sorted address table) and:
 * - resets it (SO_LINGER {1, 0}, close) when the site does not answer at `now` (down, or in
 *   the down half of its flap period);
 * - answers it when the site answers without delay and one recv() brings a complete request
 *   (up to the blank line) whose request line the Python agent would accept, for any path
 *   but /bytes: the same status line, headers and body as the Python agent's _response(),
 *   sent with one send() and then closed. The send is flagged MSG_MORE so that the close's
 *   FIN leaves in the same segment as the answer, and the prober's two ACKs become one:
 *   8 TCP segments per connection instead of 10 (counted in /proc/net/snmp), lab agent
 *   16-18 us per connection against 20-21.5, and 0.4-1.0 CPU-s less in a 95,279-site round.
 *   The prober sees the same bytes and the same EOF.
 * Everything else is handed back to Python with what was done so far, so that the Python
 * agent continues exactly where its own accept/read would be: unknown addresses (404), slow
 * sites, /bytes, bad request lines (400), requests not complete after the first recv (more
 * reads, 431), recv that found nothing yet or EOF or an error (Python's own recv then sees
 * the same), a send that would block or was partial (Python sends the rest). A connection
 * whose send failed outright is closed, as Python does. The tables are owned and built by
 * lab/native/http_fast.py; tests/lab/test_lab_native_http.py checks the answers and the way each
 * connection ends byte for byte against the pure-Python agent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lab_common.h"

#define MAX_REQUEST 8192  /* one recv, as MAX_REQUEST in lab/http_agent.py */
#define MAX_RESPONSE 8192 /* a longer answer (a very long site key) is left to Python */

/* Per-site flags. */
enum { SITE_DOWN = 1, SITE_NATIVE = 2 /* answers at once with a status C knows */ };

/* What a handed-back connection's bytes are. */
enum {
    HAND_READ = 0,  /* the request bytes read so far (maybe none): Python reads on */
    HAND_WRITE = 1, /* the answer bytes still to send: Python sends them, then closes */
    HAND_NEW = 2,   /* nothing done (getsockname failed): Python does it all */
};

/* Counts of one call. */
enum { C_ACCEPTED, C_ANSWERED, C_RESET, C_HANDED, C_DROPPED, C_ACCEPT_ERRNO, N_COUNTS };

/* The inventory and the hand-back slots, mirrored by _Table in lab/native/http_fast.py. */
typedef struct {
    const uint32_t *addrs;     /* sorted host-order IPv4 addresses */
    const int32_t *addr_site;  /* site index of each address */
    const uint8_t *flags;      /* SITE_* per site */
    const int32_t *status;     /* http status per site: 200, 500 or 503 where SITE_NATIVE */
    const double *flap_period; /* 0: does not flap */
    const double *flap_phase;
    const char *keys;            /* every site key (UTF-8), one after the other */
    const uint32_t *key_offsets; /* site i's key is keys[key_offsets[i]:key_offsets[i + 1]] */
    int32_t *hand_fd;            /* hand-back slots (max_accept of each) */
    int32_t *hand_site;          /* site index, or -1 for an address not in the inventory */
    int32_t *hand_kind;          /* HAND_* */
    int32_t *hand_len;
    char *hand_buf; /* MAX_REQUEST bytes per slot */
    int64_t counts[N_COUNTS];
    int32_t n_addrs;
    int32_t max_accept;
} table_t;

size_t http_fast_table_size(void) { return sizeof(table_t); }
size_t http_fast_max_request(void) { return MAX_REQUEST; }

/* Python's float x % y, for the tests (lab_common.h). */
double http_fast_py_mod(double x, double y) { return lab_py_mod(x, y); }

static int answers(const table_t *t, int site, double now) {
    return lab_answers(t->flags[site] & SITE_DOWN, t->flap_period[site], t->flap_phase[site], now);
}

static int find_site(const table_t *t, uint32_t addr) {
    return lab_find_site(t->addrs, t->addr_site, t->n_addrs, addr);
}

static const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return NULL;
    }
}

/* The answer lab/http_agent.py's _answer() gives site `site` (which answers at once) for the
 * request in buf[:len], written to out; 0 when Python must answer (no blank line yet, a bad
 * request line, /bytes, a status C does not know, too long). */
static size_t respond(const table_t *t, int site, const char *buf, size_t len, char *out) {
    static const char page_head[] = "<html><body><h1>Conectado</h1><p>site ";
    static const char page_tail[] = "</p></body></html>";
    static const char error_body[] = "site error";
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    const char *eol, *sp1, *sp2, *version, *target, *query, *rsn;
    size_t head, line, body_len, key_len;
    int status = t->status[site], is_head, n;
    if (end == NULL)
        return 0;
    /* head.split(b"\r\n", 1)[0].split(b" ") has 3 parts, the third starting with HTTP/1. */
    head = (size_t)(end - buf);
    eol = memmem(buf, head, "\r\n", 2);
    line = eol != NULL ? (size_t)(eol - buf) : head;
    sp1 = memchr(buf, ' ', line);
    if (sp1 == NULL)
        return 0;
    sp2 = memchr(sp1 + 1, ' ', line - (size_t)(sp1 + 1 - buf));
    if (sp2 == NULL)
        return 0;
    version = sp2 + 1;
    if (memchr(version, ' ', line - (size_t)(version - buf)) != NULL)
        return 0;
    if (line - (size_t)(version - buf) < 7 || memcmp(version, "HTTP/1.", 7) != 0)
        return 0;
    is_head = sp1 - buf == 4 && memcmp(buf, "HEAD", 4) == 0;
    rsn = reason(status);
    if (rsn == NULL)
        return 0;
    key_len = t->key_offsets[site + 1] - t->key_offsets[site];
    if (status != 200) {
        body_len = sizeof error_body - 1;
    } else {
        target = sp1 + 1;
        query = memchr(target, '?', (size_t)(sp2 - target));
        if ((query != NULL ? query : sp2) - target == 6 && memcmp(target, "/bytes", 6) == 0)
            return 0;
        body_len = sizeof page_head - 1 + key_len + sizeof page_tail - 1;
    }
    n = snprintf(out, MAX_RESPONSE,
                 "HTTP/1.1 %d %s\r\nServer: conectado-lab\r\nContent-Type: text/html\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                 status, rsn, body_len);
    if (n < 0 || (size_t)n + body_len > MAX_RESPONSE)
        return 0;
    if (is_head)
        return (size_t)n;
    if (status != 200) {
        memcpy(out + n, error_body, body_len);
    } else {
        char *at = out + n;
        memcpy(at, page_head, sizeof page_head - 1);
        at += sizeof page_head - 1;
        memcpy(at, t->keys + t->key_offsets[site], key_len);
        at += key_len;
        memcpy(at, page_tail, sizeof page_tail - 1);
    }
    return (size_t)n + body_len;
}

static void hand_back(table_t *t, int slot, int fd, int site, int kind, size_t len) {
    t->hand_fd[slot] = fd;
    t->hand_site[slot] = site;
    t->hand_kind[slot] = kind;
    t->hand_len[slot] = (int32_t)len;
    t->counts[C_HANDED]++;
}

/* Serve one accepted connection; return 1 when it was handed back (into `slot`). */
static int serve(table_t *t, int fd, double now, int slot) {
    static const struct linger reset = {1, 0};
    struct sockaddr_in local;
    socklen_t local_len = sizeof local;
    char *inbuf = t->hand_buf + (size_t)slot * MAX_REQUEST;
    char out[MAX_RESPONSE];
    ssize_t got, sent;
    size_t size, done;
    int site;
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0 ||
        local.sin_family != AF_INET) {
        hand_back(t, slot, fd, -1, HAND_NEW, 0);
        return 1;
    }
    site = find_site(t, ntohl(local.sin_addr.s_addr));
    if (site >= 0 && !answers(t, site, now)) {
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        close(fd);
        t->counts[C_RESET]++;
        return 0;
    }
    do
        got = recv(fd, inbuf, MAX_REQUEST, 0);
    while (got < 0 && errno == EINTR);
    if (got <= 0) { /* nothing yet, EOF or an error: Python's own recv will see it */
        hand_back(t, slot, fd, site, HAND_READ, 0);
        return 1;
    }
    size = site >= 0 && (t->flags[site] & SITE_NATIVE) ? respond(t, site, inbuf, (size_t)got, out)
                                                       : 0;
    if (size == 0) {
        hand_back(t, slot, fd, site, HAND_READ, (size_t)got);
        return 1;
    }
    do /* MSG_MORE: held until the close below, which sends it with the FIN */
        sent = send(fd, out, size, MSG_NOSIGNAL | MSG_MORE);
    while (sent < 0 && errno == EINTR);
    if (sent == (ssize_t)size) {
        close(fd);
        t->counts[C_ANSWERED]++;
        return 0;
    }
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        close(fd); /* the prober went away: Python closes too, and does not count it */
        t->counts[C_DROPPED]++;
        return 0;
    }
    done = sent > 0 ? (size_t)sent : 0;
    memcpy(inbuf, out + done, size - done);
    hand_back(t, slot, fd, site, HAND_WRITE, size - done);
    return 1;
}

/* Accept and serve up to t->max_accept connections from `listen_fd` (non-blocking) as the
 * sites behave at `now` (Unix seconds); return how many were handed back (slots 0..n-1).
 * t->counts holds this call's counts; C_ACCEPT_ERRNO is the errno (out of descriptors or
 * memory) that stopped the loop, else 0. */
int http_fast_accept(table_t *t, int listen_fd, double now) {
    int handed = 0;
    memset(t->counts, 0, sizeof t->counts);
    for (int k = 0; k < t->max_accept; k++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
                break;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                t->counts[C_ACCEPT_ERRNO] = err;
                break;
            }
            continue; /* the connection went away before it was accepted */
        }
        t->counts[C_ACCEPTED]++;
        handed += serve(t, fd, now, handed);
    }
    return handed;
}
