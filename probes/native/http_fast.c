/* The HTTP prober's compiled loop for its common case (probes/native/http_fast.py).

   A plain http:// probe of an IPv4 address is a new TCP connection, one request sent, and a
   simple answer read: a status line, header lines with a Content-Length (or none: the body
   ends at EOF), and a body that is counted and searched for a keyword. Doing that in Python
   costs about as much CPU as the kernel's own work for the connection; here it costs little.

   Everything else goes back to the Python engine (probes/http.py), which defines the
   behaviour: an answer this code does not fully understand (chunked or any Transfer-Encoding,
   1xx, Upgrade, a second or odd Content-Length, bytes outside printable ASCII in the head,
   bare LF, a head over HEAD_BUF) is handed back as its socket and the bytes read so far, and
   the Python engine feeds those to llhttp and carries on, under the same deadline. What this
   code does report it reports as facts (errno, EOF where, bytes, times); the Python engine
   turns them into outcomes with the same rules as its own (tests/probes/test_http_native.py
   compares the two on every misbehaving server and on generated answers).

   Times are CLOCK_MONOTONIC seconds, the clock of Python's time.perf_counter on Linux. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_BUF 4096 /* a longer head is handed back (the Python engine allows 64 KiB) */
#define KW_MAX 256    /* longer keywords are left to the Python engine */
#define SCRATCH 65536
#define MAX_EVENTS 256

enum { PH_FREE = 0, PH_CONNECTING = 1, PH_SENDING = 2, PH_READING = 3 };

/* Record kinds (HF_* in http_fast.py). */
enum {
    K_OK = 0,               /* a complete answer (or read up to the cap, or to EOF) */
    K_ERRNO = 1,            /* a socket error before any answer byte: err */
    K_RESET_MID = 2,        /* a socket error after answer bytes: err */
    K_EOF_NO_RESPONSE = 3,  /* EOF before any answer byte */
    K_EOF_IN_HEADERS = 4,   /* EOF inside the head */
    K_EOF_SHORT_BODY = 5,   /* EOF before Content-Length bytes came */
    K_TIMEOUT = 6,          /* the deadline passed; phase says where */
    K_HANDBACK = 7          /* fd and the head bytes read: the Python engine carries on */
};

/* Record flags. */
enum { F_CONNECTED = 1, F_HEADERS_DONE = 2, F_CAPPED = 4, F_KEYWORD_FOUND = 8 };

typedef struct {
    int32_t slot, kind, err, status;
    int32_t fd, flags, phase, hand_len;
    int64_t received, body_bytes, kept, hand_off;
    double started, connect_at, first_byte_at, sent_at, end_at;
} record_t;

typedef struct {
    int32_t slot;
    int32_t phase;
    int32_t prev, next; /* the start-ordered list of live connections (by fd), for deadlines */
    int32_t sent, head_len, tail_len, status;
    int32_t headers_done, kw_found, has_cl, pad;
    int64_t cl, delivered, body_bytes, received;
    double started, deadline, connect_at, first_byte_at, sent_at;
    char head[HEAD_BUF];
    char tail[KW_MAX];
} conn_t;

typedef struct {
    /* the probes, by slot (set once by http_fast_new) */
    const uint32_t *ip; /* host order */
    const uint16_t *port;
    const int64_t *req_off; /* request of slot i: req_blob[req_off[i] .. req_off[i + 1]) */
    const char *req_blob;
    const int64_t *kw_off; /* keyword of slot i, likewise (empty: none) */
    const char *kw_blob;
    const int64_t *cap;  /* body bytes read at most */
    const int64_t *keep; /* body bytes searched for the keyword */
    const uint8_t *head_only; /* a HEAD request: the answer has no body */
    int32_t n;
    double timeout;
    int ep;
    int32_t live, first, last; /* live connections; the oldest and newest fd (-1: none) */
    conn_t *conns;             /* by fd */
    int32_t n_conns;
    char body[SCRATCH];              /* body bytes of one read */
    char scratch[SCRATCH + KW_MAX]; /* the keyword search's window */
} ctx_t;

size_t http_fast_record_size(void) { return sizeof(record_t); }

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

ctx_t *http_fast_new(int32_t n, const uint32_t *ip, const uint16_t *port, const int64_t *req_off,
                     const char *req_blob, const int64_t *kw_off, const char *kw_blob,
                     const int64_t *cap, const int64_t *keep, const uint8_t *head_only,
                     double timeout) {
    ctx_t *ctx = calloc(1, sizeof(ctx_t));
    if (!ctx) return NULL;
    ctx->ep = epoll_create1(EPOLL_CLOEXEC);
    if (ctx->ep < 0) {
        free(ctx);
        return NULL;
    }
    ctx->n = n;
    ctx->ip = ip;
    ctx->port = port;
    ctx->req_off = req_off;
    ctx->req_blob = req_blob;
    ctx->kw_off = kw_off;
    ctx->kw_blob = kw_blob;
    ctx->cap = cap;
    ctx->keep = keep;
    ctx->head_only = head_only;
    ctx->timeout = timeout;
    ctx->first = ctx->last = -1;
    return ctx;
}

int http_fast_epoll_fd(const ctx_t *ctx) { return ctx->ep; }

int32_t http_fast_live(const ctx_t *ctx) { return ctx->live; }

/* Close every live connection and free the context. */
void http_fast_free(ctx_t *ctx) {
    if (!ctx) return;
    for (int32_t fd = ctx->first; fd >= 0;) {
        int32_t next = ctx->conns[fd].next;
        close(fd);
        fd = next;
    }
    close(ctx->ep);
    free(ctx->conns);
    free(ctx);
}

static int grow(ctx_t *ctx, int fd) {
    if (fd < ctx->n_conns) return 0;
    int32_t size = ctx->n_conns ? ctx->n_conns : 1024;
    while (size <= fd) size *= 2;
    conn_t *conns = realloc(ctx->conns, (size_t)size * sizeof(conn_t));
    if (!conns) return -1;
    for (int32_t i = ctx->n_conns; i < size; i++) conns[i].phase = PH_FREE;
    ctx->conns = conns;
    ctx->n_conns = size;
    return 0;
}

static void unlink_conn(ctx_t *ctx, int fd) {
    conn_t *c = &ctx->conns[fd];
    if (c->prev >= 0) ctx->conns[c->prev].next = c->next; else ctx->first = c->next;
    if (c->next >= 0) ctx->conns[c->next].prev = c->prev; else ctx->last = c->prev;
    c->phase = PH_FREE;
    ctx->live--;
}

/* Start probing `slot`: 0 when the connection is under way, a positive errno when connect
   failed at once (nothing is left open), a negative errno when there was no socket. */
int http_fast_start(ctx_t *ctx, int32_t slot) {
    if (slot < 0 || slot >= ctx->n) return -EINVAL;
    double started = now_mono();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (grow(ctx, fd) < 0) {
        close(fd);
        return -ENOMEM;
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(ctx->port[slot]);
    sa.sin_addr.s_addr = htonl(ctx->ip[slot]);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
        int err = errno;
        close(fd);
        return err;
    }
    /* Edge-triggered both ways, registered once (as the Python engine): a connect that
       finished at once shows as writable on the first poll. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.fd = fd};
    if (epoll_ctl(ctx->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    conn_t *c = &ctx->conns[fd];
    memset(c, 0, offsetof(conn_t, head));
    c->slot = slot;
    c->phase = PH_CONNECTING;
    c->started = started;
    c->deadline = started + ctx->timeout;
    c->cl = -1;
    c->prev = ctx->last;
    c->next = -1;
    if (ctx->last >= 0) ctx->conns[ctx->last].next = fd; else ctx->first = fd;
    ctx->last = fd;
    ctx->live++;
    return 0;
}

static int is_tchar(unsigned char ch) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return 1;
    return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int is_text(unsigned char ch) { return ch == '\t' || (ch >= 0x20 && ch < 0x7f); }

static int name_is(const char *name, size_t len, const char *lower) {
    if (strlen(lower) != len) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch + 32);
        if (ch != (unsigned char)lower[i]) return 0;
    }
    return 1;
}

enum { HEAD_MORE = 0, HEAD_DONE = 1, HEAD_UNUSUAL = 2 };

/* Read the head in buf[0 .. len): HEAD_MORE when it is a valid beginning of a simple head,
   HEAD_DONE (end: the offset of its first body byte, status, cl: Content-Length or -1) when it
   is a whole simple head, HEAD_UNUSUAL for anything else. "Simple" is narrower than what
   llhttp accepts, never wider: whatever llhttp would reject, or read differently, is UNUSUAL
   before it is used. */
static int scan_head(const char *buf, int32_t len, int32_t *end, int32_t *status, int64_t *cl) {
    static const char proto[] = "HTTP/1.";
    int32_t i = 0;
    for (; i < 7; i++) {
        if (i >= len) return HEAD_MORE;
        if (buf[i] != proto[i]) return HEAD_UNUSUAL;
    }
    if (i >= len) return HEAD_MORE;
    if (buf[i] != '0' && buf[i] != '1') return HEAD_UNUSUAL;
    if (++i >= len) return HEAD_MORE;
    if (buf[i] != ' ') return HEAD_UNUSUAL;
    int32_t code = 0;
    for (int k = 0; k < 3; k++) {
        if (++i >= len) return HEAD_MORE;
        if (buf[i] < '0' || buf[i] > '9') return HEAD_UNUSUAL;
        code = code * 10 + (buf[i] - '0');
    }
    if (code < 200 || code > 599) return HEAD_UNUSUAL; /* 1xx and the odd ones: llhttp's call */
    if (++i >= len) return HEAD_MORE;
    if (buf[i] != ' ') return HEAD_UNUSUAL;
    for (i++; i < len && buf[i] != '\r'; i++)
        if (!is_text((unsigned char)buf[i])) return HEAD_UNUSUAL;
    if (i >= len) return HEAD_MORE;
    if (++i >= len) return HEAD_MORE;
    if (buf[i] != '\n') return HEAD_UNUSUAL;
    i++;
    int64_t length = -1;
    for (;;) { /* one header line, or the empty line that ends the head */
        if (i >= len) return HEAD_MORE;
        if (buf[i] == '\r') {
            if (++i >= len) return HEAD_MORE;
            if (buf[i] != '\n') return HEAD_UNUSUAL;
            *end = i + 1;
            *status = code;
            *cl = length;
            return HEAD_DONE;
        }
        int32_t name = i;
        while (i < len && is_tchar((unsigned char)buf[i])) i++;
        if (i >= len) return HEAD_MORE;
        if (buf[i] != ':' || i == name) return HEAD_UNUSUAL;
        size_t name_len = (size_t)(i - name);
        int32_t value = ++i;
        while (i < len && buf[i] != '\r') {
            if (!is_text((unsigned char)buf[i])) return HEAD_UNUSUAL;
            i++;
        }
        if (i >= len) return HEAD_MORE;
        int32_t value_end = i;
        if (++i >= len) return HEAD_MORE;
        if (buf[i] != '\n') return HEAD_UNUSUAL;
        i++;
        if (name_is(buf + name, name_len, "transfer-encoding") ||
            name_is(buf + name, name_len, "upgrade"))
            return HEAD_UNUSUAL;
        if (name_is(buf + name, name_len, "content-length")) {
            if (length >= 0) return HEAD_UNUSUAL;
            while (value < value_end && (buf[value] == ' ' || buf[value] == '\t')) value++;
            while (value_end > value && (buf[value_end - 1] == ' ' || buf[value_end - 1] == '\t'))
                value_end--;
            if (value == value_end || value_end - value > 15) return HEAD_UNUSUAL;
            length = 0;
            for (int32_t k = value; k < value_end; k++) {
                if (buf[k] < '0' || buf[k] > '9') return HEAD_UNUSUAL;
                length = length * 10 + (buf[k] - '0');
            }
        }
    }
}

static void fill_record(const ctx_t *ctx, const conn_t *c, int kind, int err, record_t *r) {
    memset(r, 0, sizeof *r);
    r->slot = c->slot;
    r->kind = kind;
    r->err = err;
    r->status = c->headers_done ? c->status : 0;
    r->fd = -1;
    r->phase = c->phase;
    r->flags = (c->connect_at > 0 ? F_CONNECTED : 0) | (c->headers_done ? F_HEADERS_DONE : 0) |
               (c->kw_found ? F_KEYWORD_FOUND : 0);
    r->received = c->received;
    r->body_bytes = c->body_bytes;
    int64_t keep = ctx->keep[c->slot];
    r->kept = c->delivered < keep ? c->delivered : keep;
    r->started = c->started;
    r->connect_at = c->connect_at;
    r->first_byte_at = c->first_byte_at;
    r->sent_at = c->sent_at;
    r->end_at = now_mono();
}

/* End connection fd with a record of `kind` (closing it). */
static void finish(ctx_t *ctx, int fd, int kind, int err, int flags, record_t *r) {
    conn_t *c = &ctx->conns[fd];
    fill_record(ctx, c, kind, err, r);
    r->flags |= flags;
    unlink_conn(ctx, fd);
    close(fd);
}

/* Hand connection fd back to the Python engine with the head bytes read so far. */
static void hand_back(ctx_t *ctx, int fd, record_t *r, char *arena, int64_t *arena_used) {
    conn_t *c = &ctx->conns[fd];
    fill_record(ctx, c, K_HANDBACK, 0, r);
    r->fd = fd;
    r->hand_off = *arena_used;
    r->hand_len = c->head_len;
    memcpy(arena + *arena_used, c->head, (size_t)c->head_len);
    *arena_used += c->head_len;
    epoll_ctl(ctx->ep, EPOLL_CTL_DEL, fd, NULL);
    unlink_conn(ctx, fd);
}

/* Count body bytes p[0 .. n) as llhttp delivers them (up to Content-Length) and search the
   first `keep` of them for the keyword. Returns 1 when the body is complete. */
static int take_body(ctx_t *ctx, conn_t *c, const char *p, int64_t n) {
    if (c->has_cl && n > c->cl - c->delivered) n = c->cl - c->delivered;
    int32_t slot = c->slot;
    int64_t kw_len = ctx->kw_off[slot + 1] - ctx->kw_off[slot];
    int64_t keep = ctx->keep[slot];
    if (kw_len > 0 && !c->kw_found && c->delivered < keep && n > 0) {
        const char *kw = ctx->kw_blob + ctx->kw_off[slot];
        int64_t part = n < keep - c->delivered ? n : keep - c->delivered;
        /* the keyword may straddle reads: search the last kw_len - 1 bytes kept from before
           together with this part */
        char *window = ctx->scratch;
        int64_t done = 0;
        while (done < part && !c->kw_found) {
            int64_t step = part - done < SCRATCH ? part - done : SCRATCH;
            memcpy(window, c->tail, (size_t)c->tail_len);
            memcpy(window + c->tail_len, p + done, (size_t)step);
            int64_t w = c->tail_len + step;
            if (memmem(window, (size_t)w, kw, (size_t)kw_len)) c->kw_found = 1;
            int64_t t = w < kw_len - 1 ? w : kw_len - 1;
            memcpy(c->tail, window + w - t, (size_t)t);
            c->tail_len = (int32_t)t;
            done += step;
        }
    }
    c->delivered += n;
    int64_t room = ctx->cap[slot] - c->body_bytes;
    c->body_bytes += n < room ? n : room;
    return c->has_cl && c->delivered >= c->cl;
}

/* After the bytes of one read were taken: 1 (and the record) when the probe ended. Mirrors
   the Python engine's order: complete, then the cap. */
static int after_read(ctx_t *ctx, int fd, int complete, record_t *r) {
    conn_t *c = &ctx->conns[fd];
    if (complete) {
        finish(ctx, fd, K_OK, 0, 0, r);
        return 1;
    }
    if (c->body_bytes >= ctx->cap[c->slot]) {
        finish(ctx, fd, K_OK, 0, F_CAPPED, r);
        return 1;
    }
    return 0;
}

/* Read until the socket would block or the probe ends; 1 when a record was made. */
static int on_readable(ctx_t *ctx, int fd, record_t *r, char *arena, int64_t *arena_used) {
    conn_t *c = &ctx->conns[fd];
    for (;;) {
        char *buf;
        size_t want;
        if (!c->headers_done) {
            buf = c->head + c->head_len;
            want = (size_t)(HEAD_BUF - c->head_len);
        } else {
            buf = ctx->body;
            want = SCRATCH;
        }
        ssize_t got = recv(fd, buf, want, 0);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            finish(ctx, fd, c->first_byte_at > 0 ? K_RESET_MID : K_ERRNO, errno, 0, r);
            return 1;
        }
        if (got == 0) {
            int kind = c->first_byte_at == 0   ? K_EOF_NO_RESPONSE
                       : !c->headers_done      ? K_EOF_IN_HEADERS
                       : c->has_cl             ? K_EOF_SHORT_BODY
                                               : K_OK;
            finish(ctx, fd, kind, 0, 0, r);
            return 1;
        }
        if (c->first_byte_at == 0) c->first_byte_at = now_mono();
        c->received += got;
        if (c->headers_done) {
            if (after_read(ctx, fd, take_body(ctx, c, buf, got), r)) return 1;
            continue;
        }
        c->head_len += (int32_t)got;
        int32_t end = 0, status = 0;
        int64_t cl = -1;
        int scan = scan_head(c->head, c->head_len, &end, &status, &cl);
        if (scan == HEAD_UNUSUAL || (scan == HEAD_MORE && c->head_len == HEAD_BUF)) {
            hand_back(ctx, fd, r, arena, arena_used);
            return 1;
        }
        if (scan == HEAD_MORE) continue;
        c->headers_done = 1;
        c->status = status;
        c->has_cl = cl >= 0;
        c->cl = cl;
        int complete = ctx->head_only[c->slot] || status == 204 || status == 304 ||
                       (c->has_cl && cl == 0);
        if (!complete) complete = take_body(ctx, c, c->head + end, c->head_len - end);
        if (after_read(ctx, fd, complete, r)) return 1;
    }
}

/* Send (the rest of) the request; 1 when a record was made. */
static int on_writable(ctx_t *ctx, int fd, record_t *r) {
    conn_t *c = &ctx->conns[fd];
    int32_t slot = c->slot;
    const char *req = ctx->req_blob + ctx->req_off[slot];
    int32_t len = (int32_t)(ctx->req_off[slot + 1] - ctx->req_off[slot]);
    ssize_t sent = send(fd, req + c->sent, (size_t)(len - c->sent), MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        finish(ctx, fd, K_ERRNO, errno, 0, r); /* a failed connect shows here */
        return 1;
    }
    if (c->phase == PH_CONNECTING) {
        c->connect_at = now_mono();
        c->phase = PH_SENDING;
    }
    c->sent += (int32_t)sent;
    if (c->sent < len) return 0; /* the rest goes on the next writable edge */
    c->phase = PH_READING;
    c->sent_at = now_mono(); /* the answer comes with a new edge */
    return 0;
}

/* Handle the connections that are ready and those past their deadline; write at most `max`
   records (max >= 1) and return how many. The arena takes up to HEAD_BUF bytes per record. */
int http_fast_poll(ctx_t *ctx, record_t *out, int max, char *arena) {
    struct epoll_event events[MAX_EVENTS];
    int n = 0;
    int64_t arena_used = 0;
    int want = max < MAX_EVENTS ? max : MAX_EVENTS;
    int ready = epoll_wait(ctx->ep, events, want, 0);
    for (int e = 0; e < ready; e++) {
        int fd = events[e].data.fd;
        if (fd >= ctx->n_conns || ctx->conns[fd].phase == PH_FREE) continue;
        int phase = ctx->conns[fd].phase;
        if (phase == PH_READING)
            n += on_readable(ctx, fd, &out[n], arena, &arena_used);
        else
            n += on_writable(ctx, fd, &out[n]);
    }
    double now = now_mono();
    while (n < max && ctx->first >= 0 && ctx->conns[ctx->first].deadline <= now)
        finish(ctx, ctx->first, K_TIMEOUT, 0, 0, &out[n++]);
    return n;
}
