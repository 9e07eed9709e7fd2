/*
 * The lab SNMP agent's fast path: answers the probes' v2c GETs of a site's counters in C.
 *
 * Why: the lab stands in for 100,000 remote agents on the prober's own 2-core machine, so
 * every CPU-second the Python agent spends on a GET is taken from the round it serves (in
 * the field that CPU is the devices'). Python costs ~25 us of user time per answer; this
 * loop answers a batch of datagrams (recvmmsg/sendmmsg) for ~1 us each.
 *
 * What it answers: a well-formed v2c GetRequest to a known site address, with the site's
 * community, from a site that answers at `now` without delay, whose varbinds (NULL values,
 * at most MAX_VARBINDS) all name one of: sysUpTime.0, ifSpeed/ifOperStatus/ifInOctets/
 * ifOutOctets of one of the site's interfaces, or (64-bit agents) ifHCInOctets/
 * ifHCOutOctets/ifHighSpeed. Silent sites (down, or in the down half of their flap period)
 * are dropped and counted. Everything else -- other PDUs, other OIDs, slow sites, unknown
 * addresses, wrong communities, anything malformed or unusual -- is handed back to the
 * Python agent (lab/snmp_agent.py), which defines the behaviour. The values are the same
 * floating-point computations as lab/behaviour.py, in the same order (built with
 * -ffp-contract=off), and tests/lab/test_lab_native_snmp.py checks the answers byte for byte
 * against the Python agent's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "lab_common.h"

#define BATCH 32
#define MAX_DATAGRAM 65536
#define MAX_ANSWER 2048
#define MAX_VARBINDS 16
#define CMSG_ROOM 64

/* One site, mirrored by SITE_DTYPE in lab/native/snmp_fast.py (checked by site_size()). */
typedef struct {
    double flap_period; /* 0: does not flap */
    double flap_phase;
    double slow_delay;
    double reboot_period;
    double reboot_phase;
    double in_mean, in_amp, out_mean, out_amp;
    uint64_t counter_offset;
    int64_t high_speed_mbps;
    int32_t wan_index;
    int32_t wan_oper;
    int32_t community_off;
    int32_t community_len;
    uint8_t down;
    uint8_t bits; /* 32 or 64 */
    uint8_t pad[6];
} site_t;

/* The inventory, mirrored by _Table in lab/native/snmp_fast.py. */
typedef struct {
    const site_t *sites;
    const uint32_t *addrs; /* sorted host-order IPv4 addresses */
    const int32_t *addr_site; /* site index of each address */
    const uint8_t *communities;
    double omega;
    double peak;
    int32_t n_addrs;
    int32_t pad;
} table_t;

enum { ST_REQUESTS, ST_ANSWERED, ST_SILENT, ST_HANDED };

size_t snmp_fast_site_size(void) { return sizeof(site_t); }
size_t snmp_fast_table_size(void) { return sizeof(table_t); }

static int find_site(const table_t *t, uint32_t addr) {
    return lab_find_site(t->addrs, t->addr_site, t->n_addrs, addr);
}

static int answers(const site_t *s, double now) {
    return lab_answers(s->down, s->flap_period, s->flap_phase, now);
}

static double last_boot(const site_t *s, double now) {
    return now - lab_py_mod(now - s->reboot_phase, s->reboot_period);
}

/* Read a definite length at p (short form, or long form of 1-4 octets). */
static int read_len(const uint8_t *p, const uint8_t *end, size_t *len, const uint8_t **next) {
    if (p >= end) return -1;
    uint8_t b = *p++;
    if (!(b & 0x80)) {
        *len = b;
    } else {
        int count = b & 0x7f;
        if (count == 0 || count > 4 || end - p < count) return -1;
        size_t v = 0;
        for (int k = 0; k < count; k++) v = (v << 8) | *p++;
        *len = v;
    }
    *next = p;
    return 0;
}

/* A TLV with `tag` at *p whose content ends within `end`; *p moves to the content. */
static int expect(const uint8_t **p, const uint8_t *end, uint8_t tag, size_t *len) {
    const uint8_t *q = *p;
    if (q >= end || *q != tag) return -1;
    if (read_len(q + 1, end, len, &q) < 0) return -1;
    if ((size_t)(end - q) < *len) return -1;
    *p = q;
    return 0;
}

static size_t put_len(uint8_t *p, size_t len) {
    if (len < 0x80) {
        p[0] = (uint8_t)len;
        return 1;
    }
    int n = 0;
    for (size_t v = len; v; v >>= 8) n++;
    p[0] = (uint8_t)(0x80 | n);
    for (int k = 0; k < n; k++) p[1 + k] = (uint8_t)(len >> (8 * (n - 1 - k)));
    return (size_t)n + 1;
}

/* Content octets of an unsigned value: big-endian, with a leading 0 when the top bit is set
   (Python: value.to_bytes(value.bit_length() // 8 + 1, "big")). */
static size_t put_unsigned(uint8_t *p, uint64_t v) {
    int bits = v ? 64 - __builtin_clzll(v) : 0;
    int n = bits / 8 + 1;
    for (int k = 0; k < n; k++) {
        int shift = 8 * (n - 1 - k);
        p[k] = shift >= 64 ? 0 : (uint8_t)(v >> shift);
    }
    return (size_t)n;
}

/* Minimal two's-complement content octets of a signed value. */
static size_t put_signed(uint8_t *p, int64_t v) {
    uint64_t mag = v >= 0 ? (uint64_t)v : ~(uint64_t)v;
    int bits = mag ? 64 - __builtin_clzll(mag) : 0;
    int n = bits / 8 + 1;
    for (int k = 0; k < n; k++) {
        int shift = 8 * (n - 1 - k);
        p[k] = shift >= 64 ? (v < 0 ? 0xff : 0) : (uint8_t)((uint64_t)v >> shift);
    }
    return (size_t)n;
}

/* The TLV of an unsigned value (Counter32/64, Gauge32, TimeTicks) with `tag`; its length. */
/* Copy n bytes to p; return n (for "o += put_bytes(out + o, ...)"). */
static size_t put_bytes(uint8_t *p, const void *src, size_t n) {
    memcpy(p, src, n);
    return n;
}

static size_t unsigned_tlv(uint8_t *out, uint8_t tag, uint64_t v) {
    out[0] = tag;
    out[1] = (uint8_t)put_unsigned(out + 2, v);
    return 2 + (size_t)out[1];
}

/* Decode one OID arc at p (base 128, canonical: no leading 0x80). */
static int read_arc(const uint8_t *p, const uint8_t *end, uint32_t *arc) {
    if (p >= end || *p == 0x80) return -1;
    uint64_t v = 0;
    int n = 0;
    while (p < end) {
        uint8_t b = *p++;
        v = (v << 7) | (b & 0x7f);
        n++;
        if (n > 4) return -1;
        if (!(b & 0x80)) {
            if (p != end) return -1; /* the index must be the last arc */
            *arc = (uint32_t)v;
            return 0;
        }
    }
    return -1;
}

static const uint8_t SYS_UPTIME[] = {0x2b, 6, 1, 2, 1, 1, 3, 0};
static const uint8_t IF_ENTRY[] = {0x2b, 6, 1, 2, 1, 2, 2, 1};
static const uint8_t IFX_ENTRY[] = {0x2b, 6, 1, 2, 1, 0x1f, 1, 1, 1};

enum { ROLE_LO, ROLE_WAN, ROLE_LAN };

/* The value TLV of one varbind OID for site s at now; 0 when not ours to answer. */
static size_t value_tlv(const table_t *t, const site_t *s, const uint8_t *oid, size_t len,
                        double now, uint8_t *out) {
    if (len == sizeof SYS_UPTIME && memcmp(oid, SYS_UPTIME, len) == 0) {
        double up = (now - last_boot(s, now)) * 100.0;
        return unsigned_tlv(out, 0x43, (uint64_t)(int64_t)up & 0xffffffffu);
    }
    int x_table;
    size_t at;
    if (len > sizeof IF_ENTRY && memcmp(oid, IF_ENTRY, sizeof IF_ENTRY) == 0) {
        x_table = 0;
        at = sizeof IF_ENTRY;
    } else if (len > sizeof IFX_ENTRY && memcmp(oid, IFX_ENTRY, sizeof IFX_ENTRY) == 0) {
        if (s->bits != 64) return 0; /* 32-bit agents have no ifXTable */
        x_table = 1;
        at = sizeof IFX_ENTRY;
    } else {
        return 0;
    }
    uint8_t column = oid[at];
    if (column & 0x80) return 0;
    uint32_t index;
    if (read_arc(oid + at + 1, oid + len, &index) < 0) return 0;
    int role;
    uint32_t wan = (uint32_t)s->wan_index;
    if (index == wan)
        role = ROLE_WAN;
    else if (index == wan + 1)
        role = ROLE_LAN;
    else if (index == 1)
        role = ROLE_LO;
    else
        return 0;

    int in_kind = 0, hc = 0;
    uint8_t tag;
    if (!x_table && column == 5) { /* ifSpeed */
        uint64_t v = role == ROLE_WAN ? (uint64_t)s->high_speed_mbps * 1000000u
                     : role == ROLE_LAN ? 1000000000u
                                        : 10000000u;
        return unsigned_tlv(out, 0x42, v > 0xffffffffu ? 0xffffffffu : v);
    } else if (!x_table && column == 8) { /* ifOperStatus */
        out[0] = 0x02;
        out[1] = (uint8_t)put_signed(out + 2, role == ROLE_WAN ? s->wan_oper : 1);
        return 2 + out[1];
    } else if (x_table && column == 15) { /* ifHighSpeed */
        uint64_t v = role == ROLE_WAN ? (uint64_t)s->high_speed_mbps
                     : role == ROLE_LAN ? 1000u
                                        : 10u;
        return unsigned_tlv(out, 0x42, v);
    } else if (!x_table && (column == 10 || column == 16)) {
        in_kind = column == 10;
        tag = 0x41;
    } else if (x_table && (column == 6 || column == 10)) {
        hc = 1;
        in_kind = column == 6;
        tag = 0x46;
    } else {
        return 0;
    }
    uint64_t value = 0;
    if (role != ROLE_LO) {
        /* lab/behaviour.py SiteBehaviour.octets, operation for operation. */
        double boot = last_boot(s, now);
        double elapsed = now - boot;
        double wave = (sin(t->omega * (now - t->peak)) - sin(t->omega * (boot - t->peak))) / t->omega;
        double in_bits = s->in_mean * elapsed + s->in_amp * wave;
        double out_bits = s->out_mean * elapsed + s->out_amp * wave;
        uint64_t mask = s->bits == 64 ? ~(uint64_t)0 : 0xffffffffu;
        uint64_t in_oct = (s->counter_offset + (uint64_t)(int64_t)(in_bits / 8.0)) & mask;
        uint64_t out_oct = (s->counter_offset + (uint64_t)(int64_t)(out_bits / 8.0)) & mask;
        int want_in = role == ROLE_WAN ? in_kind : !in_kind; /* WAN in goes out on the LAN */
        value = want_in ? in_oct : out_oct;
        if (!hc) value &= 0xffffffffu;
    }
    return unsigned_tlv(out, tag, value);
}

/*
 * Answer one datagram sent to `dest` (host order) at `now`. Returns the answer's length
 * (written to out), -1 for silence (a site that does not answer now), or 0 when the Python
 * agent must decide.
 */
int snmp_fast_answer(const table_t *t, const uint8_t *data, size_t size, uint32_t dest, double now,
                     uint8_t *out, size_t cap) {
    int i = find_site(t, dest);
    if (i < 0) return 0;
    const site_t *s = &t->sites[i];
    const uint8_t *p = data, *end = data + size;
    size_t len;
    if (expect(&p, end, 0x30, &len) < 0 || p + len != end) return 0;
    if (end - p < 3 || p[0] != 0x02 || p[1] != 0x01 || p[2] != 0x01) return 0; /* v2c */
    p += 3;
    const uint8_t *community = p;
    if (expect(&p, end, 0x04, &len) < 0) return 0;
    if (p - community != 2) return 0; /* long form: Python answers (and re-encodes it) */
    if ((int32_t)len != s->community_len ||
        memcmp(p, t->communities + s->community_off, len) != 0)
        return 0;
    const uint8_t *community_end = p + len;
    p = community_end;
    if (expect(&p, end, 0xa0, &len) < 0 || p + len != end) return 0;
    /* request-id (kept as it was sent when minimal), error-status, error-index */
    const uint8_t *rid = p;
    if (expect(&p, end, 0x02, &len) < 0 || len == 0 || len > 8) return 0;
    if (len > 1 && ((p[0] == 0 && !(p[1] & 0x80)) || (p[0] == 0xff && (p[1] & 0x80))))
        return 0; /* not minimal: Python re-encodes it */
    p += len;
    const uint8_t *rid_end = p;
    for (int k = 0; k < 2; k++) {
        if (expect(&p, end, 0x02, &len) < 0 || len == 0 || len > 9) return 0;
        p += len;
    }
    if (expect(&p, end, 0x30, &len) < 0 || p + len != end) return 0;
    if (!answers(s, now)) return -1;
    if (s->slow_delay > 0.0) return 0; /* the Python agent keeps the delayed answers */

    uint8_t vbs[MAX_VARBINDS * 64];
    size_t vb_len = 0;
    int count = 0;
    while (p < end) {
        if (++count > MAX_VARBINDS) return 0;
        size_t vlen, olen;
        if (expect(&p, end, 0x30, &vlen) < 0) return 0;
        const uint8_t *vend = p + vlen;
        const uint8_t *oid_tlv = p;
        if (expect(&p, vend, 0x06, &olen) < 0 || olen == 0 || olen > 32) return 0;
        const uint8_t *oid = p;
        if (oid - oid_tlv != 2) return 0; /* long-form length: Python answers the short form */
        p += olen;
        if (vend - p != 2 || p[0] != 0x05 || p[1] != 0x00) return 0;
        p = vend;
        uint8_t value[16];
        size_t value_len = value_tlv(t, s, oid, olen, now, value);
        if (value_len == 0) return 0;
        size_t oid_tlv_len = (size_t)(oid + olen - oid_tlv);
        size_t body = oid_tlv_len + value_len;
        vbs[vb_len++] = 0x30;
        vb_len += put_len(vbs + vb_len, body);
        vb_len += put_bytes(vbs + vb_len, oid_tlv, oid_tlv_len);
        vb_len += put_bytes(vbs + vb_len, value, value_len);
    }

    /* PDU content: request-id, error-status 0, error-index 0, varbind list */
    uint8_t head[16];
    size_t vb_head = 0;
    head[vb_head++] = 0x30;
    vb_head += put_len(head + vb_head, vb_len);
    size_t rid_len = (size_t)(rid_end - rid);
    size_t pdu_len = rid_len + 6 + vb_head + vb_len;
    size_t comm_len = (size_t)(community_end - community);
    uint8_t pdu_head[8];
    size_t pdu_head_len = 1;
    pdu_head[0] = 0xa2;
    pdu_head_len += put_len(pdu_head + 1, pdu_len);
    size_t msg_len = 3 + comm_len + pdu_head_len + pdu_len;
    if (msg_len + 8 > cap) return 0;
    size_t o = 0;
    out[o++] = 0x30;
    o += put_len(out + o, msg_len);
    o += put_bytes(out + o, "\x02\x01\x01", 3); /* version: v2c */
    o += put_bytes(out + o, community, comm_len);
    o += put_bytes(out + o, pdu_head, pdu_head_len);
    o += put_bytes(out + o, rid, rid_len);
    o += put_bytes(out + o, "\x02\x01\x00\x02\x01\x00", 6); /* error-status, error-index */
    o += put_bytes(out + o, head, vb_head);
    o += put_bytes(out + o, vbs, vb_len);
    return (int)o;
}

/* Caller-owned buffers of one pump (one per serving thread). */
typedef struct {
    uint8_t in[BATCH][MAX_DATAGRAM];
    uint8_t out[BATCH][MAX_ANSWER];
    uint8_t in_cmsg[BATCH][CMSG_ROOM];
    uint8_t out_cmsg[BATCH][CMSG_ROOM];
} scratch_t;

size_t snmp_fast_scratch_size(void) { return sizeof(scratch_t); }

/*
 * Read up to BATCH datagrams from `fd` (non-blocking), answer what is ours and send the
 * answers from the address each request was sent to. Datagrams for the Python agent are
 * appended to `left` as records: destination (4 bytes, network order), the sender's
 * sockaddr_in (16 bytes), length (uint32, native order), data. Returns how many datagrams
 * were read (0: none waiting), or -1 with errno set on a socket error.
 */
int snmp_fast_pump(const table_t *t, int fd, double now, int64_t *stats, scratch_t *sc,
                   uint8_t *left, size_t left_cap, size_t *left_len) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_in from[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int k = 0; k < BATCH; k++) {
        iov[k].iov_base = sc->in[k];
        iov[k].iov_len = MAX_DATAGRAM;
        msgs[k].msg_hdr.msg_name = &from[k];
        msgs[k].msg_hdr.msg_namelen = sizeof from[k];
        msgs[k].msg_hdr.msg_iov = &iov[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
        msgs[k].msg_hdr.msg_control = sc->in_cmsg[k];
        msgs[k].msg_hdr.msg_controllen = CMSG_ROOM;
    }
    int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (got < 0) return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;

    struct mmsghdr replies[BATCH];
    struct iovec reply_iov[BATCH];
    int n_replies = 0;
    *left_len = 0;
    for (int k = 0; k < got; k++) {
        stats[ST_REQUESTS]++;
        size_t size = msgs[k].msg_len;
        struct in_addr dest = {0};
        int have_dest = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[k].msg_hdr); c;
             c = CMSG_NXTHDR(&msgs[k].msg_hdr, c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                struct in_pktinfo info;
                memcpy(&info, CMSG_DATA(c), sizeof info);
                dest = info.ipi_addr;
                have_dest = 1;
            }
        }
        int r = 0;
        if (have_dest && !(msgs[k].msg_hdr.msg_flags & MSG_TRUNC) &&
            msgs[k].msg_hdr.msg_namelen == sizeof(struct sockaddr_in))
            r = snmp_fast_answer(t, sc->in[k], size, ntohl(dest.s_addr), now, sc->out[n_replies],
                                 MAX_ANSWER);
        if (r < 0) {
            stats[ST_SILENT]++;
            continue;
        }
        if (r > 0) {
            struct mmsghdr *m = &replies[n_replies];
            memset(m, 0, sizeof *m);
            reply_iov[n_replies].iov_base = sc->out[n_replies];
            reply_iov[n_replies].iov_len = (size_t)r;
            m->msg_hdr.msg_name = &from[k];
            m->msg_hdr.msg_namelen = sizeof from[k];
            m->msg_hdr.msg_iov = &reply_iov[n_replies];
            m->msg_hdr.msg_iovlen = 1;
            memset(sc->out_cmsg[n_replies], 0, CMSG_ROOM);
            m->msg_hdr.msg_control = sc->out_cmsg[n_replies];
            m->msg_hdr.msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
            struct cmsghdr *c = CMSG_FIRSTHDR(&m->msg_hdr);
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
            struct in_pktinfo info = {0};
            info.ipi_spec_dst = dest; /* answer from the address the request went to */
            memcpy(CMSG_DATA(c), &info, sizeof info);
            n_replies++;
            stats[ST_ANSWERED]++;
            continue;
        }
        size_t need = 4 + sizeof(struct sockaddr_in) + 4 + size;
        if (*left_len + need > left_cap) continue; /* cannot happen with the documented size */
        uint8_t *q = left + *left_len;
        memcpy(q, &dest.s_addr, 4);
        memcpy(q + 4, &from[k], sizeof(struct sockaddr_in));
        uint32_t size32 = (uint32_t)size;
        memcpy(q + 4 + sizeof(struct sockaddr_in), &size32, 4);
        memcpy(q + 8 + sizeof(struct sockaddr_in), sc->in[k], size);
        *left_len += need;
        stats[ST_HANDED]++;
        stats[ST_REQUESTS]--; /* the Python agent counts what it is handed */
    }
    int sent = 0;
    while (sent < n_replies) {
        int r = sendmmsg(fd, replies + sent, (unsigned)(n_replies - sent), 0);
        if (r > 0) {
            sent += r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            sent++; /* the Python agent drops an answer it cannot send; so do we */
        }
    }
    return got;
}
