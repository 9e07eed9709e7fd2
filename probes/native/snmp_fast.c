/* The SNMP prober's compiled loop for its common case (probes/native/snmp_fast.py).

   A v2c GET of an IPv4 agent's counters is one datagram out, built from a precomputed
   message with the request-id spliced in, and one datagram back that names the five OIDs
   asked for with plain values. In Python the bookkeeping around those two system calls costs
   about as much CPU as the kernel's own work for them; here it costs little.

   This code keeps, for each slot (a probe in progress), its address, its message template,
   its attempts and their send times, and one deadline queue for all attempts (one timeout for
   all, so the queue is in send order). It reads the socket in batches (recvmmsg) and turns an
   answer it fully understands into a record of facts: error-status, error-index and the five
   (tag, value) pairs, exactly what probes.ber.match_varbinds would return. A retry, a
   timeout, an ICMP refusal or unreachable and a failed send are records too. Every other
   datagram -- malformed, from elsewhere, for an id nobody waits for, not a plain Response,
   varbinds not in the plainest form -- is handed back whole, with its source and receive
   time, and the Python engine (probes/snmp.py) runs its own rules on it, which define the
   behaviour. tests/probes/test_snmp_native.py holds the two paths to the same outcomes.

   Request-ids are RID_BASE + (slot << 16 | attempt generation), so an answer finds its slot
   without a table, and an answer to any attempt of the slot's current stage is accepted (as
   the Python engine accepts answers to earlier attempts while it retries). */
#define _GNU_SOURCE
#include <errno.h>
#include <time.h> /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RID_BASE 0x01000000u
#define MAX_SLOTS 16384 /* slot << 16 | gen stays below 2^30, so ids keep four octets */
#define MAX_ATTEMPTS 4  /* retries <= 3; more retries leave the probes to Python */
#define MAX_DATAGRAM 16384 /* larger datagrams are dropped as oversized (as in snmp.py) */
#define BATCH 64
#define CMSG_ROOM 64
#define N_VB 5
#define SOCKET_BUFFER (4 * 1024 * 1024)
#define SEND_ROOM 1472 /* longer GET messages (very long communities) are left to Python */

enum { IDLE = 0, LIVE = 1, HELD = 2 };
enum { FLUSH_RECORDS = 1, FLUSH_BLOCKED = 2 }; /* snmp_fast_flush's bits (snmp_fast.py) */

/* Record kinds (K_* in snmp_fast.py). */
enum {
    K_ANSWER = 0,      /* a plain answer: status, index, tags, values; the slot is free */
    K_RETRY = 1,       /* an attempt timed out and was sent again */
    K_TIMEOUT = 2,     /* the last attempt timed out; the slot is free */
    K_REFUSED = 3,     /* ICMP port unreachable; the slot is free */
    K_UNREACHABLE = 4, /* ICMP host/net unreachable (err); the slot is free */
    K_SEND_FAILED = 5, /* a retry could not be sent (err); the slot is free */
    K_DATAGRAM = 6     /* a datagram for the Python engine's own rules */
};

typedef struct { /* mirrored by _RECORD in snmp_fast.py */
    int32_t slot, kind, err, tries;
    uint32_t rid;    /* K_DATAGRAM: the id read by peek_rid (0: none) */
    uint32_t src_ip; /* K_DATAGRAM: host order */
    int32_t src_port;
    int32_t data_len; /* K_DATAGRAM: octets at data_off of the arena */
    int64_t data_off;
    int64_t error_status, error_index;
    int64_t values[N_VB]; /* unsigned types as their 64-bit pattern */
    uint8_t tags[N_VB];
    uint8_t pad[3];
    double sent_at; /* wall clock of the attempt answered */
    double arrival; /* wall clock of the kernel's receive timestamp */
} record_t;

typedef struct {
    uint8_t *msg;
    int32_t len, rid_off;
    uint8_t *community;
    int32_t community_len;
    uint8_t *oids; /* the five OID TLVs, back to back */
    int32_t oid_off[N_VB + 1];
} tmpl_t;

typedef struct {
    uint32_t ip; /* host order */
    uint16_t port;
    uint8_t live;  /* IDLE, LIVE, or HELD: a datagram for it awaits the Python engine */
    uint8_t tries; /* retries sent in this stage */
    uint16_t gen;  /* generation of the latest attempt */
    uint16_t gen0; /* generation of the stage's first attempt */
    int32_t tmpl;
    double sent[MAX_ATTEMPTS];
} slot_t;

typedef struct {
    double due;
    int32_t slot;
    uint16_t gen;
} deadline_t;

typedef struct {
    int32_t slot;
    uint16_t gen;
    uint8_t deferred; /* the socket buffer was full once: a later error only drops it */
    uint8_t pad;
} queued_t;

typedef struct {
    int fd;
    int nslots, retries;
    double timeout;
    slot_t *slots;
    tmpl_t *tmpls;
    int ntmpls, cap_tmpls;
    deadline_t *dl; /* ring */
    size_t dl_head, dl_len, dl_cap;
    queued_t *bl; /* ring, the outbox: attempts to send at the next flush, in order */
    size_t bl_head, bl_len, bl_cap;
    int blocked; /* the socket buffer was full at the last flush */
    record_t *pend; /* records not yet returned */
    size_t pend_head, pend_len, pend_cap;
    uint8_t *data; /* handed-back datagrams of pending records */
    size_t data_len, data_cap;
    int64_t requests_sent, oversized, icmp_errors, send_errors;
    uint8_t out[BATCH][SEND_ROOM];
    struct mmsghdr out_msgs[BATCH];
    struct iovec out_iov[BATCH];
    struct sockaddr_in out_to[BATCH];
    uint8_t bufs[BATCH][MAX_DATAGRAM + 1];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in from[BATCH];
    char cmsg[BATCH][CMSG_ROOM];
} ctx_t;

size_t snmp_fast_record_size(void) { return sizeof(record_t); }

static double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int grow(void **p, size_t *cap, size_t size, size_t want) {
    if (want <= *cap) return 0;
    size_t n = *cap ? *cap : 64;
    while (n < want) n *= 2;
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* A ring's storage grows by unrolling it to the front of a larger array. */
static int ring_push(void **p, size_t *head, size_t *len, size_t *cap, size_t size,
                     const void *item) {
    if (*len == *cap) {
        size_t n = *cap ? *cap * 2 : 1024;
        uint8_t *q = malloc(n * size);
        if (!q) return -1;
        for (size_t i = 0; i < *len; i++)
            memcpy(q + i * size, (uint8_t *)*p + ((*head + i) % *cap) * size, size);
        free(*p);
        *p = q;
        *head = 0;
        *cap = n;
    }
    memcpy((uint8_t *)*p + ((*head + *len) % *cap) * size, item, size);
    (*len)++;
    return 0;
}

static record_t *new_record(ctx_t *c, int slot, int kind) {
    size_t want = c->pend_head + c->pend_len + 1;
    if (grow((void **)&c->pend, &c->pend_cap, sizeof(record_t), want)) return NULL;
    record_t *r = &c->pend[c->pend_head + c->pend_len++];
    memset(r, 0, sizeof(*r));
    r->slot = slot;
    r->kind = kind;
    if (slot >= 0) r->tries = c->slots[slot].tries;
    return r;
}

void snmp_fast_free(ctx_t *c) {
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    for (int i = 0; i < c->ntmpls; i++) {
        free(c->tmpls[i].msg);
        free(c->tmpls[i].community);
        free(c->tmpls[i].oids);
    }
    free(c->tmpls);
    free(c->slots);
    free(c->dl);
    free(c->bl);
    free(c->pend);
    free(c->data);
    free(c);
}

/* A context for `nslots` probes at once, or NULL (errno set). */
ctx_t *snmp_fast_new(int nslots, double timeout, int retries) {
    if (nslots < 1 || nslots > MAX_SLOTS || retries < 0 || retries >= MAX_ATTEMPTS) {
        errno = EINVAL;
        return NULL;
    }
    ctx_t *c = calloc(1, sizeof(ctx_t));
    if (!c) return NULL;
    c->fd = -1;
    c->nslots = nslots;
    c->retries = retries;
    c->timeout = timeout;
    c->slots = calloc((size_t)nslots, sizeof(slot_t));
    if (!c->slots) goto fail;
    uint32_t seed = (uint32_t)(now_wall() * 1e6);
    for (int i = 0; i < nslots; i++) { /* a random start, as the Python engine's ids */
        seed = seed * 1103515245u + 12345u;
        c->slots[i].gen = (uint16_t)(seed >> 16);
    }
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) goto fail;
    int size = SOCKET_BUFFER, one = 1;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    if (setsockopt(c->fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one))) goto fail;
    struct sockaddr_in any = {.sin_family = AF_INET};
    if (bind(c->fd, (struct sockaddr *)&any, sizeof(any))) goto fail;
    for (int i = 0; i < BATCH; i++) {
        c->iov[i].iov_base = c->bufs[i];
        c->iov[i].iov_len = MAX_DATAGRAM + 1;
    }
    return c;
fail: {
    int saved = errno;
    snmp_fast_free(c);
    errno = saved;
    return NULL;
}
}

int snmp_fast_fd(const ctx_t *c) { return c->fd; }

/* Register a GET message (request-id octets at rid_off), its community and its five OID
   TLVs (back to back, with their lengths); return its number, or -1. */
int snmp_fast_template(ctx_t *c, const uint8_t *msg, int len, int rid_off,
                       const uint8_t *community, int community_len, const uint8_t *oids,
                       const int32_t *oid_lens) {
    if (len > SEND_ROOM) return -2;
    if (rid_off < 0 || rid_off + 4 > len) return -1;
    size_t cap = (size_t)c->cap_tmpls;
    if (grow((void **)&c->tmpls, &cap, sizeof(tmpl_t), (size_t)c->ntmpls + 1)) return -1;
    c->cap_tmpls = (int)cap;
    tmpl_t *t = &c->tmpls[c->ntmpls];
    memset(t, 0, sizeof(*t));
    int total = 0;
    for (int i = 0; i < N_VB; i++) {
        t->oid_off[i] = total;
        total += oid_lens[i];
    }
    t->oid_off[N_VB] = total;
    t->msg = malloc((size_t)len);
    t->community = malloc((size_t)community_len + 1);
    t->oids = malloc((size_t)total + 1);
    if (!t->msg || !t->community || !t->oids) {
        free(t->msg);
        free(t->community);
        free(t->oids);
        return -1;
    }
    memcpy(t->msg, msg, (size_t)len);
    memcpy(t->community, community, (size_t)community_len);
    memcpy(t->oids, oids, (size_t)total);
    t->len = len;
    t->rid_off = rid_off;
    t->community_len = community_len;
    return c->ntmpls++;
}

/* The request-id of our own datagram (returned by the error queue), or 0. */
static uint32_t peek_rid(const uint8_t *d, size_t end) {
    size_t pos = 0;
    for (int field = 0; field < 4; field++) {
        if (pos + 2 > end) return 0;
        uint8_t tag = d[pos];
        size_t len = d[pos + 1];
        pos += 2;
        if (len & 0x80) {
            size_t n = len & 0x7f;
            if (n == 0 || n > 4 || pos + n > end) return 0;
            len = 0;
            for (size_t i = 0; i < n; i++) len = len << 8 | d[pos++];
        }
        if (field == 0 || field == 3) { /* SEQUENCE, PDU: step inside */
            if ((field == 0 && tag != 0x30) || (field == 3 && (tag & 0xe0) != 0xa0)) return 0;
            continue;
        }
        if ((field == 1 && tag != 0x02) || (field == 2 && tag != 0x04)) return 0;
        pos += len; /* version, community */
    }
    /* An INTEGER of 1-9 octets, as probes.ber reads it; ours are 4, but an agent may pad. */
    if (pos + 2 > end || d[pos] != 0x02) return 0;
    size_t len = d[pos + 1];
    if (len == 0 || len > 9 || pos + 2 + len > end || (d[pos + 2] & 0x80)) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (v >> 32) return 0;
        v = v << 8 | d[pos + 2 + i];
    }
    return v >> 32 ? 0 : (uint32_t)v;
}

/* The slot an id belongs to when it is an attempt of that slot's current stage, else -1. */
static int slot_of(const ctx_t *c, uint32_t rid, int *attempt) {
    if (rid < RID_BASE) return -1;
    uint32_t n = rid - RID_BASE;
    int slot = (int)(n >> 16);
    if (slot >= c->nslots) return -1;
    const slot_t *s = &c->slots[slot];
    uint16_t a = (uint16_t)((uint16_t)n - s->gen0);
    if (s->live == IDLE || a > s->tries) return -1;
    *attempt = a;
    return slot;
}

/* Read the socket's error queue: ICMP errors, each with the datagram that caused it. */
static void drain_errors(ctx_t *c) {
    uint8_t payload[2048];
    char control[512];
    for (;;) {
        struct iovec iov = {payload, sizeof(payload)};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                           .msg_controllen = sizeof(control)};
        ssize_t got = recvmsg(c->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
        if (got < 0) return;
        c->icmp_errors++;
        int code = 0;
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
            if (h->cmsg_level == IPPROTO_IP && h->cmsg_type == IP_RECVERR &&
                h->cmsg_len >= CMSG_LEN(sizeof(struct sock_extended_err)))
                code = (int)((struct sock_extended_err *)CMSG_DATA(h))->ee_errno;
        int attempt;
        int slot = slot_of(c, peek_rid(payload, (size_t)got), &attempt);
        /* A held slot's fate is the Python engine's: an ICMP error for it is not applied
           (an agent that answers junk and is unreachable at once is left to time out). */
        if (slot < 0 || c->slots[slot].live == HELD) continue;
        int kind;
        if (code == ECONNREFUSED)
            kind = K_REFUSED;
        else if (code == EHOSTUNREACH || code == ENETUNREACH || code == EHOSTDOWN ||
                 code == ENETDOWN)
            kind = K_UNREACHABLE;
        else
            continue; /* e.g. fragmentation needed: the attempt is left to time out */
        record_t *r = new_record(c, slot, kind);
        if (!r) return;
        r->err = code;
        c->slots[slot].live = IDLE;
    }
}

/* A new attempt of the slot: its send time and deadline, and its datagram into the outbox. */
static int attempt(ctx_t *c, int slot) {
    slot_t *s = &c->slots[slot];
    s->gen++;
    s->sent[(uint16_t)(s->gen - s->gen0)] = now_wall();
    deadline_t d = {now_mono() + c->timeout, slot, s->gen};
    queued_t q = {slot, s->gen, (uint8_t)c->blocked, 0};
    if (ring_push((void **)&c->dl, &c->dl_head, &c->dl_len, &c->dl_cap, sizeof(d), &d) ||
        ring_push((void **)&c->bl, &c->bl_head, &c->bl_len, &c->bl_cap, sizeof(q), &q))
        return ENOMEM;
    c->requests_sent++;
    return 0;
}

/* The attempt `q` names, ready in out[i]; 0 when it is no longer wanted. */
static int prepare(ctx_t *c, const queued_t *q, int i) {
    const slot_t *s = &c->slots[q->slot];
    if (s->live == IDLE || (uint16_t)(q->gen - s->gen0) > s->tries) return 0;
    const tmpl_t *t = &c->tmpls[s->tmpl];
    uint32_t rid = RID_BASE + ((uint32_t)q->slot << 16 | q->gen);
    memcpy(c->out[i], t->msg, (size_t)t->len);
    c->out[i][t->rid_off] = (uint8_t)(rid >> 24);
    c->out[i][t->rid_off + 1] = (uint8_t)(rid >> 16);
    c->out[i][t->rid_off + 2] = (uint8_t)(rid >> 8);
    c->out[i][t->rid_off + 3] = (uint8_t)rid;
    c->out_to[i] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(s->port),
                                        .sin_addr.s_addr = htonl(s->ip)};
    c->out_iov[i] = (struct iovec){c->out[i], (size_t)t->len};
    c->out_msgs[i].msg_hdr = (struct msghdr){.msg_name = &c->out_to[i],
                                             .msg_namelen = sizeof(c->out_to[i]),
                                             .msg_iov = &c->out_iov[i],
                                             .msg_iovlen = 1};
    return 1;
}

static void pop(ctx_t *c, size_t n) {
    c->bl_head = (c->bl_head + n) % c->bl_cap;
    c->bl_len -= n;
}

/* Send the outbox in order, BATCH datagrams a call (one wake-up of a busy peer for many).
   A datagram that cannot be sent ends its probe with K_SEND_FAILED, as the Python engine's
   failed send does; once deferred by a full socket buffer, an error only drops it (it will
   time out and be retried), as the Python engine's backlog does. */
static void flush(ctx_t *c) {
    c->blocked = 0;
    int refused = 0;
    while (c->bl_len) {
        size_t at[BATCH]; /* outbox positions of the prepared datagrams */
        int n = 0;
        size_t k = 0;
        for (; k < c->bl_len && n < BATCH; k++)
            if (prepare(c, &c->bl[(c->bl_head + k) % c->bl_cap], n)) at[n++] = k;
        if (!n) {
            pop(c, k); /* attempts no longer wanted */
            continue;
        }
        int sent = sendmmsg(c->fd, c->out_msgs, (unsigned)n, 0);
        if (sent > 0) {
            pop(c, sent == n ? k : at[sent]); /* an error at at[sent] shows on the next call */
            refused = 0;
            continue;
        }
        int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            pop(c, at[0]);
            for (size_t j = 0; j < c->bl_len; j++) c->bl[(c->bl_head + j) % c->bl_cap].deferred = 1;
            c->blocked = 1;
            return;
        }
        if (e == ECONNREFUSED && !refused) {
            /* A pending ICMP error of another target surfaced here; this was not sent. */
            refused = 1;
            drain_errors(c);
            continue;
        }
        refused = 0;
        c->send_errors++;
        queued_t q = c->bl[(c->bl_head + at[0]) % c->bl_cap];
        slot_t *s = &c->slots[q.slot];
        if (!q.deferred && s->live == LIVE && s->gen == q.gen) {
            s->live = IDLE;
            record_t *r = new_record(c, q.slot, K_SEND_FAILED);
            if (r) r->err = e;
        }
        pop(c, at[0] + 1);
    }
}

/* Start a stage of `slot` (idle): GETs of template `tmpl` to ip:port (host order), the first
   attempt into the outbox (snmp_fast_flush sends it). 0, ENOMEM, or -1 for a bad argument. */
int snmp_fast_start(ctx_t *c, int slot, int tmpl, uint32_t ip, int port) {
    if (slot < 0 || slot >= c->nslots || tmpl < 0 || tmpl >= c->ntmpls || c->slots[slot].live)
        return -1;
    slot_t *s = &c->slots[slot];
    s->ip = ip;
    s->port = (uint16_t)port;
    s->tmpl = tmpl;
    s->tries = 0;
    s->gen0 = (uint16_t)(s->gen + 1);
    s->live = LIVE;
    int e = attempt(c, slot);
    if (e) s->live = IDLE;
    return e;
}

/* Send what start() and the retries put in the outbox. Returns FLUSH_RECORDS when records
   wait (a failed send or a drained ICMP error ended a probe: poll soon), plus FLUSH_BLOCKED
   when datagrams wait for the socket to be writable (poll then). */
int snmp_fast_flush(ctx_t *c) {
    flush(c);
    return (c->pend_len ? FLUSH_RECORDS : 0) | (c->blocked && c->bl_len ? FLUSH_BLOCKED : 0);
}

/* Stop waiting for `slot` (the Python engine took its answer). */
void snmp_fast_cancel(ctx_t *c, int slot) {
    if (slot >= 0 && slot < c->nslots) c->slots[slot].live = IDLE;
}

/* Go on waiting for a held `slot` (the Python engine dropped the datagram it held for). */
void snmp_fast_unhold(ctx_t *c, int slot) {
    if (slot >= 0 && slot < c->nslots && c->slots[slot].live == HELD)
        c->slots[slot].live = LIVE;
}

/* For a handed-back datagram's id: its slot when it answers an attempt of a live stage (and
   that attempt's send time), else -1. */
int snmp_fast_lookup(const ctx_t *c, uint32_t rid, double *sent_at) {
    int a;
    int slot = slot_of(c, rid, &a);
    if (slot >= 0) *sent_at = c->slots[slot].sent[a];
    return slot;
}



void snmp_fast_counters(const ctx_t *c, int64_t *out) {
    out[0] = c->requests_sent;
    out[1] = c->oversized;
    out[2] = c->icmp_errors;
    out[3] = c->send_errors;
}

/* A TLV header at *pos with tag `tag`: its content length, checked against `end`; -1 if
   not so. Lengths as probes.ber reads them (short form, or 1-4 length octets). */
static long tlv(const uint8_t *d, size_t end, size_t *pos, uint8_t tag) {
    if (*pos + 2 > end || d[*pos] != tag) return -1;
    size_t len = d[*pos + 1];
    *pos += 2;
    if (len & 0x80) {
        size_t n = len & 0x7f;
        if (n == 0 || n > 4 || *pos + n > end) return -1;
        len = 0;
        for (size_t i = 0; i < n; i++) len = len << 8 | d[(*pos)++];
    }
    if (len > end - *pos) return -1;
    return (long)len;
}

/* A short INTEGER (1-8 octets, signed); 0 when read. */
static int integer(const uint8_t *d, size_t end, size_t *pos, int64_t *out) {
    if (*pos + 2 > end || d[*pos] != 0x02) return -1;
    size_t len = d[*pos + 1];
    if (len == 0 || len > 8 || *pos + 2 + len > end) return -1;
    uint64_t v = (d[*pos + 2] & 0x80) ? ~(uint64_t)0 : 0;
    for (size_t i = 0; i < len; i++) v = v << 8 | d[*pos + 2 + i];
    *out = (int64_t)v;
    *pos += 2 + len;
    return 0;
}

/* Fill the record from a datagram when it is a plain answer to a live attempt (the form
   probes.ber.match_varbinds accepts, values that fit 64 bits); else -1 (hand it back). */
static int plain_answer(ctx_t *c, const uint8_t *d, size_t end, const struct sockaddr_in *from,
                        record_t *r) {
    size_t pos = 0;
    long len = tlv(d, end, &pos, 0x30);
    if (len < 0 || pos + (size_t)len != end) return -1;
    int64_t version, rid, status, index;
    if (integer(d, end, &pos, &version) || version != 1) return -1;
    len = tlv(d, end, &pos, 0x04);
    if (len < 0) return -1;
    const uint8_t *community = d + pos;
    size_t community_len = (size_t)len;
    pos += (size_t)len;
    len = tlv(d, end, &pos, 0xa2);
    if (len < 0 || pos + (size_t)len != end) return -1;
    if (integer(d, end, &pos, &rid) || integer(d, end, &pos, &status) ||
        integer(d, end, &pos, &index))
        return -1;
    len = tlv(d, end, &pos, 0x30);
    if (len < 0 || pos + (size_t)len != end) return -1;
    int a;
    if (rid < 0 || rid > 0xffffffffLL) return -1;
    int slot = slot_of(c, (uint32_t)rid, &a);
    if (slot < 0 || c->slots[slot].live == HELD) return -1;
    slot_t *s = &c->slots[slot];
    if (ntohl(from->sin_addr.s_addr) != s->ip || ntohs(from->sin_port) != s->port) return -1;
    const tmpl_t *t = &c->tmpls[s->tmpl];
    if (community_len != (size_t)t->community_len ||
        memcmp(community, t->community, community_len))
        return -1;
    for (int i = 0; i < N_VB; i++) {
        const uint8_t *oid = t->oids + t->oid_off[i];
        size_t oid_len = (size_t)(t->oid_off[i + 1] - t->oid_off[i]);
        if (pos + 2 > end || d[pos] != 0x30 || (d[pos + 1] & 0x80)) return -1;
        size_t stop = pos + 2 + d[pos + 1];
        if (stop > end || pos + 2 + oid_len > stop || memcmp(d + pos + 2, oid, oid_len))
            return -1;
        size_t at = pos + 2 + oid_len;
        if (at + 2 > stop) return -1;
        uint8_t tag = d[at];
        size_t vlen = d[at + 1];
        at += 2;
        if (at + vlen != stop) return -1;
        int bits = tag == 0x41 || tag == 0x42 || tag == 0x43 ? 32 : tag == 0x46 ? 64 : 0;
        if (bits) {
            if (vlen == 0 || vlen > 9 || (vlen == 9 && d[at] != 0)) return -1;
            uint64_t v = 0;
            for (size_t k = 0; k < vlen; k++) v = v << 8 | d[at + k];
            if (bits == 32 && v >> 32) return -1;
            r->values[i] = (int64_t)v;
        } else if (tag == 0x02) {
            if (vlen == 0 || vlen > 8) return -1;
            uint64_t v = (d[at] & 0x80) ? ~(uint64_t)0 : 0;
            for (size_t k = 0; k < vlen; k++) v = v << 8 | d[at + k];
            r->values[i] = (int64_t)v;
        } else if (tag == 0x80 || tag == 0x81 || tag == 0x82 || tag == 0x05) {
            if (vlen) return -1;
            r->values[i] = 0;
        } else {
            return -1; /* strings and other types: the Python engine reads them */
        }
        r->tags[i] = tag;
        pos = stop;
    }
    if (pos != end) return -1;
    r->slot = slot;
    r->kind = K_ANSWER;
    r->tries = s->tries;
    r->error_status = status;
    r->error_index = index;
    r->sent_at = s->sent[a];
    s->live = IDLE;
    return 0;
}

static double arrival_of(struct msghdr *m) {
    for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR(m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SO_TIMESTAMPNS &&
            h->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(h), sizeof(ts));
            return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        }
    return 0.0;
}

/* Read datagrams until the socket is empty or `room` records are pending; 1 when empty. */
static int receive(ctx_t *c, size_t room) {
    int read_any = 0;
    while (c->pend_len < room) {
        for (int i = 0; i < BATCH; i++) {
            struct msghdr *m = &c->msgs[i].msg_hdr;
            m->msg_name = &c->from[i];
            m->msg_namelen = sizeof(c->from[i]);
            m->msg_iov = &c->iov[i];
            m->msg_iovlen = 1;
            m->msg_control = c->cmsg[i];
            m->msg_controllen = CMSG_ROOM;
            m->msg_flags = 0;
        }
        int n = recvmmsg(c->fd, c->msgs, BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!read_any) drain_errors(c);
                return 1;
            }
            if (errno == EINTR) continue;
            drain_errors(c); /* a pending ICMP error (sk_err) is reported once before data */
            continue;
        }
        read_any = 1;
        double wall = 0.0;
        for (int i = 0; i < n; i++) {
            size_t got = c->msgs[i].msg_len;
            if (got > MAX_DATAGRAM) {
                c->oversized++;
                continue;
            }
            record_t r;
            memset(&r, 0, sizeof(r));
            r.arrival = arrival_of(&c->msgs[i].msg_hdr);
            if (r.arrival == 0.0) r.arrival = wall ? wall : (wall = now_wall());
            record_t *out;
            if (plain_answer(c, c->bufs[i], got, &c->from[i], &r) == 0) {
                out = new_record(c, r.slot, K_ANSWER);
                if (!out) return 1;
                *out = r;
                continue;
            }
            if (grow((void **)&c->data, &c->data_cap, 1, c->data_len + got)) return 1;
            /* The slot it may answer, as of now: held until the Python engine says. */
            uint32_t rid = peek_rid(c->bufs[i], got);
            int a;
            int slot = slot_of(c, rid, &a);
            out = new_record(c, slot, K_DATAGRAM);
            if (!out) return 1;
            if (slot >= 0) {
                out->sent_at = c->slots[slot].sent[a];
                c->slots[slot].live = HELD;
            }
            out->rid = rid;
            out->arrival = r.arrival;
            out->src_ip = ntohl(c->from[i].sin_addr.s_addr);
            out->src_port = ntohs(c->from[i].sin_port);
            out->data_off = (int64_t)c->data_len;
            out->data_len = (int32_t)got;
            memcpy(c->data + c->data_len, c->bufs[i], got);
            c->data_len += got;
        }
        if (n < BATCH) return 1;
    }
    return 0;
}

/* Retry or time out the attempts past their deadline, in send order. */
static void expire(ctx_t *c, size_t room) {
    double now = now_mono();
    while (c->dl_len && c->pend_len < room) {
        deadline_t *d = &c->dl[c->dl_head];
        if (d->due > now) break;
        int32_t slot = d->slot;
        uint16_t gen = d->gen;
        slot_t *s = &c->slots[slot];
        if (s->live == HELD && s->gen == gen) break; /* first the Python engine's verdict */
        c->dl_head = (c->dl_head + 1) % c->dl_cap;
        c->dl_len--;
        if (s->live != LIVE || s->gen != gen) continue; /* answered, or an earlier attempt */
        if (s->tries < c->retries) {
            s->tries++;
            if (!new_record(c, slot, K_RETRY)) return;
            int e = attempt(c, slot);
            if (e) {
                s->live = IDLE;
                record_t *r = new_record(c, slot, K_SEND_FAILED);
                if (!r) return;
                r->err = e;
            }
        } else {
            s->live = IDLE;
            if (!new_record(c, slot, K_TIMEOUT)) return;
        }
    }
}

/* Read answers, then expire deadlines, then send what was queued; copy up to `max` records
   into `out` (handed-back datagrams into `arena`, which holds max * MAX_DATAGRAM octets).
   Returns the count; call again while it returns `max`. */
int snmp_fast_poll(ctx_t *c, record_t *out, int max, uint8_t *arena) {
    if (c->pend_len < (size_t)max) {
        if (receive(c, (size_t)max)) expire(c, (size_t)max);
        flush(c);
    }
    int n = 0;
    size_t used = 0;
    while (n < max && c->pend_len) {
        record_t *r = &c->pend[c->pend_head];
        out[n] = *r;
        if (r->kind == K_DATAGRAM) {
            memcpy(arena + used, c->data + r->data_off, (size_t)r->data_len);
            out[n].data_off = (int64_t)used;
            used += (size_t)r->data_len;
        }
        c->pend_head++;
        c->pend_len--;
        n++;
    }
    if (!c->pend_len) {
        c->pend_head = 0;
        c->data_len = 0;
    }
    return n;
}
