/*
 * ff_load -- the load generator of issue 4: N simulated DPUs feeding footfalld.
 *
 * Modes:
 *   ff_load --udp HOST:PORT | --tcp HOST:PORT [options]   send events, report figures
 *   ff_load --write-topology FILE [--dpus N] [--spaces S]  the topology document (SPEC §6)
 *   ff_load --write-csv FILE --events N [--dpus N]         an event CSV for `footfall import`
 *
 * The simulated site. DPUs 1..N, spaces 1..S (S = N/2 by default, at least 2), doorways
 * 1..S. DPU d (k = d - 1) hangs over doorway k % S + 1, between entry space k % S + 1 and
 * exit space (k + 1) % S + 1: every event touches two spaces, the spaces form a ring and
 * about N/S DPUs share each doorway. An event picks its DPU uniformly at random (the
 * worst case for the server's caches), its direction +1/-1 with equal odds, and the
 * DPU's next seq (1..65535, skipping 0 when it wraps), so no two generated events are
 * equal unless meant to be. A frame carries events of many DPUs, as a gateway would.
 *
 * The clock: one simulated day per run, compressed. The timestamps of a run cover the
 * window [T0 - span, T0], where T0 is the wall clock when the run starts and span is
 * --span (default 24h); simulated midnight is T0 - span. Every timestamp is therefore in
 * the past when sent (the server refuses events more than 5 minutes ahead) and, with
 * the default span, well inside the 7 days behind the horizon that it accepts. The
 * progress p of the run (elapsed/--seconds, or events sent/--events) sets the
 * simulated time of day x:
 *   - with --rate R (events/s, the mean over the day) x = p, the send rate at x is
 *     R * shape(x) and the timestamp T0 - span + x * span: the day is compressed into
 *     the run but the rates are real ones (the peak hour is 1/24 of the run at 5R);
 *   - with --rate 0 (as fast as the path goes) the send rate is flat, and the
 *     timestamps follow the shape's density instead: x = C^-1(p), C the cumulative
 *     shape.
 * Because the timestamps sweep a whole day, the server's horizon sweeps it too: a run
 * exercises settling, not only pending rows. The price: a frame retransmitted after a
 * lost datagram may arrive behind the horizon and count as late. --span 0 stamps
 * events with the wall clock instead (a live feed; nothing settles in a short run).
 * A run therefore wants a fresh server (or at least one whose newest event is older
 * than T0 - span): events behind an earlier run's horizon are late.
 *
 * The daily shape (--shape daily): hourly steps, 0.1x the mean at night, a morning
 * ramp, a lunch bump, and 17:00-18:00 at exactly 5x the mean; the mean is 1. --shape
 * flat is 1 all day; --shape peak holds the peak hour (5x) all run long.
 *
 * Faults, each an independent fraction of the events:
 *   --out-of-order F  ts moved back by up to 60 s: after later events, before the horizon;
 *   --late F          ts moved back to 1 s..10 min behind the horizon (newest - --settle);
 *   --duplicate F     an exact repeat of one of the last 1024 events sent.
 *
 * Acks (--ack). Every frame asks for an ack; at most --window frames are in flight.
 * batch_id is the frame's sequence number, which indexes a ring of slots holding each
 * frame's bytes until its ack. UDP: a frame without an ack after --timeout is sent
 * again (the timeout doubles per retry, up to 8x) at most --retries times, then counts
 * as lost. The timeout adapts as TCP's does (RFC 6298: smoothed RTT + 4 x its
 * variation, sampled only from frames acked at their first send, never under
 * --timeout), so a deep window on a slow server does not become a retransmit storm;
 * an ack with status 3 (overloaded) resends after a short back-off. TCP: a
 * broken connection is reopened and every unacked frame sent again in order. Ack
 * latency is measured from a frame's first send to its ack (a retransmitted frame
 * includes its timeouts: that is what the DPU waits). Loss = frames never acked when
 * the run ends (generation done, then up to --drain for the last acks).
 *
 * Output: a progress line on stderr once a second when stderr is a terminal
 * (--progress forces it), and at the end one machine-readable line on stdout,
 * "result key=value ...", followed by the same figures as text. With --pid, the
 * server's RSS (VmRSS, VmHWM of /proc/PID/status) and CPU% (utime + stime of
 * /proc/PID/stat) are sampled every second. Exit status: 0, 1 if frames were lost or
 * malformed, 2 usage or connection error.
 */
#include "engine/ff.h"
#include "net/timefmt.h"
#include "net/wire.h"

#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SEND_BATCH  64   /* frames per sendmmsg, acks per recvmmsg */
#define RECENT      1024 /* events remembered for --duplicate */
#define TCP_OUT_MAX (4u << 20)

enum { SHAPE_DAILY, SHAPE_FLAT, SHAPE_PEAK };

typedef struct opts {
    const char *udp, *tcp, *topo_file, *csv_file;
    uint64_t dpus, spaces, events;
    double seconds, rate, per_dpu_day;
    double ooo, late, dup;
    bool ooo_set, ack, progress, quiet;
    int batch, window, retries, pid, shape;
    int64_t span_us, settle_us, timeout_us, drain_us;
    uint64_t seed;
} opts;

/* ---- Random numbers (splitmix64) ------------------------------------------------------ */

static uint64_t rng_state = 0x5eed;

static inline uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline double rnd01(void)
{
    return (double)(rnd() >> 11) * 0x1.0p-53;
}
static inline uint64_t rnd_below(uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rnd() * n) >> 64);
}

/* ---- Clocks ------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
static int64_t wall_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * FF_SECOND + t.tv_nsec / 1000;
}

/* ---- The daily shape ------------------------------------------------------------------ */

/* Relative traffic per hour; normalised by shape_init so that the mean is 1 and the
 * peak hour (17:00) is exactly 5. */
static const double hour_weight[24] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.15, 0.3, 0.8, 1.6, 1.2, 1.0, 1.1,
                                       1.5, 1.3, 1.0, 1.0, 1.4, 5.0,  1.6, 1.0, 0.7, 0.5, 0.3, 0.2};
#define PEAK_HOUR 17
static double shape_w[24], shape_cum[25], shape_mean = 1;

static void shape_init(int kind)
{
    double others = 0;
    for (int h = 0; h < 24; h++)
        if (h != PEAK_HOUR) others += hour_weight[h];
    for (int h = 0; h < 24; h++) {
        if (kind == SHAPE_FLAT)
            shape_w[h] = 1;
        else if (kind == SHAPE_PEAK)
            shape_w[h] = 5;
        else
            shape_w[h] = h == PEAK_HOUR ? 5 : hour_weight[h] * 19 / others;
    }
    double total = 0;
    for (int h = 0; h < 24; h++) total += shape_w[h];
    shape_mean = total / 24;
    shape_cum[0] = 0;
    for (int h = 0; h < 24; h++) shape_cum[h + 1] = shape_cum[h] + shape_w[h] / total;
}

/* The rate multiplier at time of day x in [0, 1]. */
static double shape_at(double x)
{
    int h = (int)(x * 24);
    return shape_w[h < 0 ? 0 : h > 23 ? 23 : h];
}

/* The time of day x in [0, 1] by which a fraction p of the day's events has happened. */
static double shape_inv(double p)
{
    if (p <= 0) return 0;
    if (p >= 1) return 1;
    int h = 0;
    while (h < 23 && shape_cum[h + 1] <= p) h++;
    return (h + (p - shape_cum[h]) / (shape_cum[h + 1] - shape_cum[h])) / 24;
}

/* ---- Event generator ------------------------------------------------------------------ */

typedef struct gen {
    uint64_t dpus;
    uint16_t *seq; /* per DPU, index dpu_id - 1 */
    ff_event recent[RECENT];
    uint64_t made;
    double ooo, late, dup;
    int64_t settle_us;
    uint64_t n_ooo, n_late, n_dup;
} gen;

static void gen_init(gen *g, const opts *o)
{
    memset(g, 0, sizeof(*g));
    g->dpus = o->dpus;
    g->seq = ff_xcalloc(o->dpus, sizeof(uint16_t));
    g->ooo = o->ooo;
    g->late = o->late;
    g->dup = o->dup;
    g->settle_us = o->settle_us;
}

/* One event at (simulated) time ts, with the faults drawn for it. */
static void gen_event(gen *g, int64_t ts, ff_event *e)
{
    if (g->dup > 0 && g->made && rnd01() < g->dup) {
        *e = g->recent[rnd_below(g->made < RECENT ? g->made : RECENT)];
        g->n_dup++;
        return;
    }
    uint32_t d = (uint32_t)rnd_below(g->dpus);
    uint16_t s = ++g->seq[d];
    if (s == 0) s = g->seq[d] = 1;
    e->dpu_id = d + 1;
    e->direction = (rnd() & 1) ? 1 : -1;
    e->reserved = 0;
    e->seq = s;
    e->ts = ts;
    if (g->late > 0 && rnd01() < g->late) {
        e->ts = ts - g->settle_us - FF_SECOND - (int64_t)rnd_below(10 * FF_MINUTE);
        g->n_late++;
    } else if (g->ooo > 0 && rnd01() < g->ooo) {
        e->ts = ts - 1 - (int64_t)rnd_below(60 * FF_SECOND);
        g->n_ooo++;
    }
    if (g->dup > 0) g->recent[g->made % RECENT] = *e;
    g->made++;
}

/* ---- Latency histogram: 32 linear steps per power of two of nanoseconds (~3 %) -------- */

#define HIST_BUCKETS (60 * 32)
typedef struct hist {
    uint64_t n, max, b[HIST_BUCKETS];
} hist;

static void hist_add(hist *h, uint64_t v)
{
    int idx = (int)v;
    if (v >= 32) {
        int e = 63 - __builtin_clzll(v) - 5;
        idx = (e + 1) * 32 + (int)((v >> e) - 32);
    }
    h->b[idx]++;
    h->n++;
    if (v > h->max) h->max = v;
}

/* The value under which a fraction q of the samples lie (upper edge of its bucket). */
static uint64_t hist_pct(const hist *h, double q)
{
    if (h->n == 0) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)h->n), seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want && seen) {
            if (i < 32) return (uint64_t)i;
            int e = i / 32 - 1;
            uint64_t hi = ((uint64_t)(i % 32 + 32 + 1) << e) - 1;
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

/* ---- The server's RSS and CPU from /proc -------------------------------------------- */

typedef struct procmon {
    int pid;
    bool ok;
    uint64_t ticks0, ticks, ns0, ns_last, ticks_last;
    long rss_kib, rss_max_kib, hwm_kib;
    double cpu_now; /* % over the last sample period */
} procmon;

static bool proc_ticks(int pid, uint64_t *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime (fields 3..15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return false;
    *ticks = ut + st;
    return true;
}

static long proc_status_kib(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static void proc_sample(procmon *m, uint64_t ns)
{
    uint64_t t;
    if (m->pid <= 0 || !proc_ticks(m->pid, &t)) return;
    if (!m->ok) {
        m->ok = true;
        m->ticks0 = m->ticks_last = t;
        m->ns0 = m->ns_last = ns;
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    if (ns > m->ns_last)
        m->cpu_now = 100.0 * (double)(t - m->ticks_last) / hz / ((double)(ns - m->ns_last) / 1e9);
    m->ticks = m->ticks_last = t;
    m->ns_last = ns;
    m->rss_kib = proc_status_kib(m->pid, "VmRSS");
    m->hwm_kib = proc_status_kib(m->pid, "VmHWM");
    if (m->rss_kib > m->rss_max_kib) m->rss_max_kib = m->rss_kib;
}

static double proc_cpu_avg(const procmon *m)
{
    if (!m->ok || m->ns_last <= m->ns0) return 0;
    double hz = (double)sysconf(_SC_CLK_TCK);
    return 100.0 * (double)(m->ticks - m->ticks0) / hz / ((double)(m->ns_last - m->ns0) / 1e9);
}

/* ---- The run's state ------------------------------------------------------------------ */

enum { SLOT_FREE, SLOT_INFLIGHT, SLOT_DONE };

typedef struct slot {
    uint64_t id, first_ns, due_ns;
    uint16_t count;
    uint8_t state, tries;
} slot;

typedef struct load {
    const opts *o;
    gen g;
    bool tcp;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    /* frames [base, next) live in the ring; slot i holds frame id with id & mask == i */
    slot *slots;
    uint8_t *frames;
    size_t mask, frame_bytes;
    uint64_t base, next, next_scan_ns;
    uint8_t *out; /* TCP: bytes not yet written, from out_off to out_len */
    size_t out_off, out_len;
    uint8_t in[64 * FF_ACK_SIZE];
    size_t in_len;
    /* pacing and the simulated clock */
    uint64_t t0_ns, last_ns, gen_end_ns, last_ack_ns, drain_end_ns;
    int64_t t0_us, last_ts;
    double credit, run_seconds;
    double srtt_ns, rttvar_ns; /* RFC 6298 estimators, from frames acked at first send */
    uint64_t rto_ns;           /* the current retransmit timeout, at least --timeout */
    bool gen_done, stop;
    /* tallies */
    uint64_t ev_sent, fr_sent, retx, acked_frames, acked_events, stale, accepted, dups, late,
        refused, overloaded, malformed, lost_frames, lost_events, send_errors, reconnects;
    hist lat;
    procmon pm;
    uint64_t tick_ns, tick_ev, tick_acc;
} load;

static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
    interrupted = interrupted + 1; /* a second signal ends the drain too */
}

static uint8_t *frame_at(load *L, uint64_t id)
{
    return L->frames + (id & L->mask) * L->frame_bytes;
}

static void note_next_scan(load *L, uint64_t due)
{
    if (due < L->next_scan_ns) L->next_scan_ns = due;
}

/* ---- Transports ------------------------------------------------------------------------- */

static int resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len, int type)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host) return -1;
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = type}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int open_socket(load *L)
{
    int type = L->tcp ? SOCK_STREAM : SOCK_DGRAM;
    int fd = socket(L->addr.ss_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (L->tcp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else {
        int sz = 8 << 20;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    if (connect(fd, (struct sockaddr *)&L->addr, L->addrlen) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    L->fd = fd;
    return 0;
}

/* UDP: sends the frames ids[0..n) with sendmmsg. A refused or dropped send is left to
 * the retransmit timer. */
static void udp_send(load *L, const uint64_t *ids, int n)
{
    struct mmsghdr mm[SEND_BATCH];
    struct iovec iov[SEND_BATCH];
    memset(mm, 0, sizeof(struct mmsghdr) * (size_t)n);
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = frame_at(L, ids[i]);
        iov[i].iov_len = FF_FRAME_HEADER + FF_FRAME_RECORD * L->slots[ids[i] & L->mask].count;
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    int done = 0;
    while (done < n) {
        int r = sendmmsg(L->fd, mm + done, (unsigned)(n - done), 0);
        if (r > 0) {
            done += r;
        } else if (errno == EINTR) {
            continue;
        } else {
            L->send_errors++; /* ECONNREFUSED (no server yet), ENOBUFS: drop this one */
            done++;
        }
    }
}

/* TCP: writes what the socket takes. Returns 0 or -1 when the connection broke. */
static int tcp_flush(load *L)
{
    while (L->out_off < L->out_len) {
        ssize_t r =
            send(L->fd, L->out + L->out_off, L->out_len - L->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            L->out_off += (size_t)r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    if (L->out_off == L->out_len) L->out_off = L->out_len = 0;
    return 0;
}

static void tcp_queue(load *L, uint64_t id)
{
    size_t n = FF_FRAME_HEADER + FF_FRAME_RECORD * L->slots[id & L->mask].count;
    if (L->out_off > 0 && L->out_len + n > TCP_OUT_MAX + FF_FRAME_MAX) {
        memmove(L->out, L->out + L->out_off, L->out_len - L->out_off);
        L->out_len -= L->out_off;
        L->out_off = 0;
    }
    FF_ASSERT(L->out_len + n <= 2 * (TCP_OUT_MAX + FF_FRAME_MAX));
    memcpy(L->out + L->out_len, frame_at(L, id), n);
    L->out_len += n;
}

static void send_frames(load *L, const uint64_t *ids, int n)
{
    if (L->tcp) {
        for (int i = 0; i < n; i++) tcp_queue(L, ids[i]);
    } else {
        udp_send(L, ids, n);
    }
}

/* TCP: a broken connection is reopened and every unacked frame queued again, in order. */
static int tcp_reconnect(load *L)
{
    close(L->fd);
    L->fd = -1;
    L->out_off = L->out_len = 0;
    L->in_len = 0;
    if (++L->reconnects > (uint64_t)L->o->retries) return -1;
    for (int attempt = 0; attempt < 50; attempt++) {
        if (open_socket(L) == 0) break;
        usleep(20000);
    }
    if (L->fd < 0) return -1;
    for (uint64_t id = L->base; id < L->next; id++)
        if (L->slots[id & L->mask].state == SLOT_INFLIGHT) {
            tcp_queue(L, id);
            L->retx++;
        }
    return 0;
}

/* ---- Acks ------------------------------------------------------------------------------ */

static void advance_base(load *L)
{
    while (L->base < L->next && L->slots[L->base & L->mask].state == SLOT_DONE)
        L->slots[L->base++ & L->mask].state = SLOT_FREE;
}

/* RFC 6298: rto = srtt + 4 rttvar, at least --timeout, at most 10 s. */
static void update_rto(load *L, double r)
{
    if (L->srtt_ns == 0) {
        L->srtt_ns = r;
        L->rttvar_ns = r / 2;
    } else {
        L->rttvar_ns = 0.75 * L->rttvar_ns + 0.25 * fabs(L->srtt_ns - r);
        L->srtt_ns = 0.875 * L->srtt_ns + 0.125 * r;
    }
    double rto = L->srtt_ns + 4 * L->rttvar_ns, lo = (double)L->o->timeout_us * 1000;
    L->rto_ns = (uint64_t)(rto < lo ? lo : rto > 1e10 ? 1e10 : rto);
}

static void handle_ack(load *L, const uint8_t *bytes, uint64_t now)
{
    ff_ack a;
    if (ff_ack_decode(bytes, &a) < 0) {
        L->stale++;
        return;
    }
    slot *s = &L->slots[a.batch_id & L->mask];
    if (a.batch_id < L->base || a.batch_id >= L->next || s->id != a.batch_id ||
        s->state != SLOT_INFLIGHT) {
        L->stale++; /* the ack of a frame already acked (a retransmission's twin) */
        return;
    }
    if (a.status == FF_ACK_OVERLOAD) {
        L->overloaded++;
        s->due_ns = now + (uint64_t)L->o->timeout_us * 250; /* a quarter of the timeout */
        note_next_scan(L, s->due_ns);
        return;
    }
    s->state = SLOT_DONE;
    L->acked_frames++;
    L->acked_events += s->count;
    L->last_ack_ns = now;
    if (a.status == FF_ACK_MALFORMED) {
        L->malformed++;
    } else {
        L->accepted += a.accepted;
        L->dups += a.duplicates;
        L->late += a.late;
        L->refused += a.refused;
    }
    hist_add(&L->lat, now - s->first_ns);
    if (s->tries == 0) update_rto(L, (double)(now - s->first_ns)); /* Karn: first sends only */
    advance_base(L);
}

static void udp_recv_acks(load *L, uint64_t now)
{
    struct mmsghdr mm[SEND_BATCH];
    struct iovec iov[SEND_BATCH];
    uint8_t buf[SEND_BATCH][64];
    for (;;) {
        memset(mm, 0, sizeof mm);
        for (int i = 0; i < SEND_BATCH; i++) {
            iov[i] = (struct iovec){buf[i], sizeof buf[i]};
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int r = recvmmsg(L->fd, mm, SEND_BATCH, MSG_DONTWAIT, NULL);
        if (r <= 0) return; /* EAGAIN, or ECONNREFUSED from an earlier send: ignored */
        for (int i = 0; i < r; i++) {
            if (mm[i].msg_len == FF_ACK_SIZE)
                handle_ack(L, buf[i], now);
            else
                L->stale++;
        }
        if (r < SEND_BATCH) return;
    }
}

/* TCP: reads acks; returns -1 when the connection broke. */
static int tcp_recv_acks(load *L, uint64_t now)
{
    for (;;) {
        ssize_t r = recv(L->fd, L->in + L->in_len, sizeof L->in - L->in_len, MSG_DONTWAIT);
        if (r == 0) return -1;
        if (r < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        L->in_len += (size_t)r;
        size_t off = 0;
        for (; off + FF_ACK_SIZE <= L->in_len; off += FF_ACK_SIZE) handle_ack(L, L->in + off, now);
        memmove(L->in, L->in + off, L->in_len - off);
        L->in_len -= off;
    }
}

/* Resends the frames whose time is up; gives up on a frame after --retries. */
static void retransmit_due(load *L, uint64_t now)
{
    if (now < L->next_scan_ns) return;
    uint64_t ids[SEND_BATCH], next_scan = UINT64_MAX;
    int n = 0;
    for (uint64_t id = L->base; id < L->next; id++) {
        slot *s = &L->slots[id & L->mask];
        if (s->state != SLOT_INFLIGHT) continue;
        if (s->due_ns > now) {
            if (s->due_ns < next_scan) next_scan = s->due_ns;
            continue;
        }
        if (s->tries >= L->o->retries) {
            s->state = SLOT_DONE;
            L->lost_frames++;
            L->lost_events += s->count;
            continue;
        }
        s->tries++;
        s->due_ns = L->tcp ? UINT64_MAX : now + L->rto_ns * (1u << (s->tries < 3 ? s->tries : 3));
        if (s->due_ns < next_scan) next_scan = s->due_ns;
        ids[n++] = id;
        L->retx++;
        if (n == SEND_BATCH) {
            send_frames(L, ids, n);
            n = 0;
        }
    }
    if (n) send_frames(L, ids, n);
    L->next_scan_ns = next_scan;
    advance_base(L);
}

/* ---- Generation ------------------------------------------------------------------------ */

/* The run's progress p in [0, 1] and the events allowed by the pace right now. */
static double progress(const load *L, uint64_t now)
{
    double el = (double)(now - L->t0_ns) / 1e9;
    double p = L->run_seconds > 0 ? el / L->run_seconds : (double)L->ev_sent / (double)L->o->events;
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

static int64_t sim_ts(const load *L, double p)
{
    if (L->o->span_us == 0) return wall_us();
    double x = L->o->rate > 0 ? p : shape_inv(p);
    return L->t0_us - L->o->span_us + (int64_t)(x * (double)L->o->span_us);
}

/* How many events the pace allows now (unbounded with --rate 0). */
static uint64_t pace_allowance(load *L, uint64_t now, double p)
{
    if (L->o->rate <= 0) return UINT64_MAX;
    double r = L->o->rate * shape_at(p);
    L->credit += r * (double)(now - L->last_ns) / 1e9;
    double cap = r * 0.01 > 2.0 * L->o->batch ? r * 0.01 : 2.0 * L->o->batch;
    if (L->credit > cap) L->credit = cap;
    L->last_ns = now;
    return L->credit > 0 ? (uint64_t)L->credit : 0;
}

/* Builds frame `id` of n events with timestamps spread from L->last_ts to ts. */
static void build_frame(load *L, uint64_t id, int n, int64_t ts, uint64_t now)
{
    ff_event ev[FF_FRAME_MAX_COUNT];
    int64_t from = L->last_ts < ts ? L->last_ts : ts;
    for (int j = 0; j < n; j++) gen_event(&L->g, from + (ts - from) * (j + 1) / n, &ev[j]);
    L->last_ts = ts;
    ff_frame_encode(frame_at(L, id), id, L->o->ack, ev, (size_t)n);
    slot *s = &L->slots[id & L->mask];
    s->id = id;
    s->count = (uint16_t)n;
    s->tries = 0;
    s->first_ns = now;
    s->state = L->o->ack ? SLOT_INFLIGHT : SLOT_FREE;
    s->due_ns = L->tcp ? UINT64_MAX : now + L->rto_ns;
}

/* Generates and sends up to SEND_BATCH new frames; returns how many. */
static int send_new(load *L, uint64_t now)
{
    double p = progress(L, now);
    uint64_t allow = pace_allowance(L, now, p);
    uint64_t room = SEND_BATCH;
    if (L->o->ack) {
        uint64_t inflight = L->next - L->base;
        room = inflight >= (uint64_t)L->o->window ? 0 : (uint64_t)L->o->window - inflight;
        if (room > SEND_BATCH) room = SEND_BATCH;
    }
    if (L->tcp && L->out_len - L->out_off > TCP_OUT_MAX) room = 0;
    uint64_t ids[SEND_BATCH];
    int n = 0;
    /* The frames share the span from the last timestamp sent to now's, each its slice:
     * given the same ts, a batch of frames put up to 4,000 events on one microsecond, in
     * random DPU order, which a server must sort in (not a load DPUs make). nf: about
     * how many frames the room, the pace and --events let this call build. */
    uint64_t b = (uint64_t)L->o->batch, nf = room;
    if (allow / b < nf) nf = allow / b;
    if (L->o->events && (L->o->events - L->ev_sent + b - 1) / b < nf)
        nf = (L->o->events - L->ev_sent + b - 1) / b;
    if (nf == 0) nf = 1; /* a last, partial frame */
    int64_t ts = sim_ts(L, p), from = L->last_ts < ts ? L->last_ts : ts;
    while ((uint64_t)n < room) {
        uint64_t want = b;
        if (L->o->events && L->o->events - L->ev_sent < want) want = L->o->events - L->ev_sent;
        if (want == 0 || allow < want) break;
        uint64_t k = (uint64_t)n + 1 < nf ? (uint64_t)n + 1 : nf;
        build_frame(L, L->next, (int)want, from + (ts - from) * (int64_t)k / (int64_t)nf, now);
        ids[n++] = L->next++;
        L->ev_sent += want;
        L->credit -= (double)want;
        allow -= want;
        if (L->o->ack) note_next_scan(L, L->slots[ids[n - 1] & L->mask].due_ns);
    }
    if (n) send_frames(L, ids, n);
    L->fr_sent += (uint64_t)n;
    if (!L->o->ack) L->base = L->next;
    return n;
}

/* ---- Progress and summary -------------------------------------------------------------- */

static void human(double v, char *out, size_t n)
{
    if (v >= 1e6)
        snprintf(out, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(out, n, "%.1fk", v / 1e3);
    else
        snprintf(out, n, "%.0f", v);
}

static void tick(load *L, uint64_t now, bool tty)
{
    if (now < L->tick_ns + 1000000000u) return;
    double dt = (double)(now - L->tick_ns) / 1e9;
    proc_sample(&L->pm, now);
    if (tty) {
        char s[32], a[32];
        human((double)(L->ev_sent - L->tick_ev) / dt, s, sizeof s);
        human((double)(L->accepted - L->tick_acc) / dt, a, sizeof a);
        fprintf(stderr,
                "\r\033[K%5.0fs  sent %s ev/s  accepted %s ev/s  in flight %llu  p99 %.2f ms"
                "  retx %llu  lost %llu",
                (double)(now - L->t0_ns) / 1e9, s, a, (unsigned long long)(L->next - L->base),
                (double)hist_pct(&L->lat, 0.99) / 1e6, (unsigned long long)L->retx,
                (unsigned long long)L->lost_frames);
        if (L->pm.ok)
            fprintf(stderr, "  server %.0f%% cpu %ld MiB", L->pm.cpu_now, L->pm.rss_kib / 1024);
        fflush(stderr);
    }
    L->tick_ns = now;
    L->tick_ev = L->ev_sent;
    L->tick_acc = L->accepted;
}

static double rate_of(uint64_t n, uint64_t from, uint64_t to)
{
    return to > from ? (double)n / ((double)(to - from) / 1e9) : 0;
}

static double self_cpu_pct(uint64_t elapsed_ns)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return elapsed_ns ? 100.0 * cpu / ((double)elapsed_ns / 1e9) : 0;
}

static const char *shape_name(int s)
{
    return s == SHAPE_FLAT ? "flat" : s == SHAPE_PEAK ? "peak" : "daily";
}

static void summary(load *L, uint64_t end)
{
    const opts *o = L->o;
    double gen_s = (double)(L->gen_end_ns - L->t0_ns) / 1e9;
    double sent_eps = rate_of(L->ev_sent, L->t0_ns, L->gen_end_ns);
    uint64_t ack_end = L->last_ack_ns > L->gen_end_ns ? L->last_ack_ns : L->gen_end_ns;
    double acc_eps = rate_of(L->accepted, L->t0_ns, ack_end);
    double p50 = (double)hist_pct(&L->lat, 0.5) / 1e3, p99 = (double)hist_pct(&L->lat, 0.99) / 1e3;
    double p999 = (double)hist_pct(&L->lat, 0.999) / 1e3, mx = (double)L->lat.max / 1e3;
    printf("result transport=%s dpus=%llu batch=%d ack=%d window=%d rate=%.0f shape=%s span_s=%lld "
           "seconds=%.3f events_sent=%llu frames_sent=%llu retransmits=%llu sent_eps=%.0f "
           "acked_frames=%llu accepted=%llu accepted_eps=%.0f duplicates=%llu late=%llu "
           "refused=%llu overloaded=%llu malformed=%llu stale_acks=%llu lost_frames=%llu "
           "lost_events=%llu ack_p50_us=%.1f ack_p99_us=%.1f ack_p999_us=%.1f ack_max_us=%.1f "
           "gen_ooo=%llu gen_late=%llu gen_dup=%llu send_errors=%llu reconnects=%llu "
           "rto_ms=%.1f gen_cpu_pct=%.1f server_cpu_pct=%.1f server_rss_kib=%ld "
           "server_rss_max_kib=%ld "
           "server_hwm_kib=%ld\n",
           L->tcp ? "tcp" : "udp", (unsigned long long)o->dpus, o->batch, o->ack, o->window,
           o->rate, shape_name(o->shape), (long long)(o->span_us / FF_SECOND), gen_s,
           (unsigned long long)L->ev_sent, (unsigned long long)L->fr_sent,
           (unsigned long long)L->retx, sent_eps, (unsigned long long)L->acked_frames,
           (unsigned long long)L->accepted, acc_eps, (unsigned long long)L->dups,
           (unsigned long long)L->late, (unsigned long long)L->refused,
           (unsigned long long)L->overloaded, (unsigned long long)L->malformed,
           (unsigned long long)L->stale, (unsigned long long)L->lost_frames,
           (unsigned long long)L->lost_events, p50, p99, p999, mx, (unsigned long long)L->g.n_ooo,
           (unsigned long long)L->g.n_late, (unsigned long long)L->g.n_dup,
           (unsigned long long)L->send_errors, (unsigned long long)L->reconnects,
           (double)L->rto_ns / 1e6, self_cpu_pct(end - L->t0_ns), proc_cpu_avg(&L->pm),
           L->pm.rss_kib, L->pm.rss_max_kib, L->pm.hwm_kib);
    printf("%s, %llu DPUs, %d events/frame: sent %llu events in %.2f s = %.0f events/s\n",
           L->tcp ? "TCP" : "UDP", (unsigned long long)o->dpus, o->batch,
           (unsigned long long)L->ev_sent, gen_s, sent_eps);
    if (o->ack) {
        printf("acked: %llu accepted (%.0f events/s), %llu duplicates, %llu late, %llu refused; "
               "%llu retransmits, %llu overloaded acks, lost %llu frames (%llu events)\n",
               (unsigned long long)L->accepted, acc_eps, (unsigned long long)L->dups,
               (unsigned long long)L->late, (unsigned long long)L->refused,
               (unsigned long long)L->retx, (unsigned long long)L->overloaded,
               (unsigned long long)L->lost_frames, (unsigned long long)L->lost_events);
        printf("ack latency: p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n", p50, p99,
               p999, mx);
    } else {
        printf("no acks asked (--ack): acceptance not measured\n");
    }
    if (L->pm.ok)
        printf("server: %.1f%% CPU on average, RSS %ld MiB at the end, %ld MiB peak (VmHWM)\n",
               proc_cpu_avg(&L->pm), L->pm.rss_kib / 1024, L->pm.hwm_kib / 1024);
}

/* ---- The run ----------------------------------------------------------------------------- */

static void wait_io(load *L, uint64_t now)
{
    uint64_t wait = 1000000; /* 1 ms at most: pacing and timers are checked at least then */
    if (L->o->rate > 0 && !L->gen_done && L->credit < L->o->batch) {
        double r = L->o->rate * shape_at(progress(L, now));
        uint64_t need = (uint64_t)(((double)L->o->batch - L->credit) / r * 1e9);
        if (need < wait) wait = need;
    }
    if (L->o->ack && L->next_scan_ns > now && L->next_scan_ns - now < wait)
        wait = L->next_scan_ns - now;
    struct pollfd pfd = {.fd = L->fd, .events = POLLIN};
    if (L->tcp && L->out_len > L->out_off) pfd.events |= POLLOUT;
    if (!L->o->ack && !L->tcp) pfd.events = 0;
    struct timespec ts = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
    ppoll(&pfd, 1, &ts, NULL);
}

static bool generation_over(load *L, uint64_t now)
{
    if (interrupted) return true;
    if (L->o->events && L->ev_sent >= L->o->events) return true;
    return L->o->seconds > 0 && (double)(now - L->t0_ns) / 1e9 >= L->o->seconds;
}

/* One turn: generate, send, read acks, retransmit. Returns false once the run is over. */
static bool turn(load *L, bool tty)
{
    uint64_t now = now_ns();
    tick(L, now, tty);
    if (!L->gen_done && generation_over(L, now)) {
        L->gen_done = true;
        L->gen_end_ns = now;
        L->drain_end_ns = now + (uint64_t)L->o->drain_us * 1000u;
    }
    bool unsent = L->tcp && L->out_len > L->out_off;
    if (L->gen_done &&
        ((L->base == L->next && !unsent) || now >= L->drain_end_ns || interrupted > 1))
        return false;
    int sent = L->gen_done ? 0 : send_new(L, now);
    if (L->tcp) {
        if (tcp_flush(L) < 0 || (L->o->ack && tcp_recv_acks(L, now_ns()) < 0)) {
            if (tcp_reconnect(L) < 0) {
                fprintf(stderr, "ff_load: connection lost for good after %llu reconnects\n",
                        (unsigned long long)L->reconnects);
                return false;
            }
        }
    } else if (L->o->ack) {
        udp_recv_acks(L, now_ns());
    }
    if (L->o->ack) retransmit_due(L, now);
    if (sent == 0) wait_io(L, now);
    return true;
}

static int run_load(const opts *o)
{
    static load st;
    load *L = &st;
    L->o = o;
    L->tcp = o->tcp != NULL;
    L->fd = -1;
    const char *target = L->tcp ? o->tcp : o->udp;
    if (resolve(target, &L->addr, &L->addrlen, L->tcp ? SOCK_STREAM : SOCK_DGRAM) < 0) {
        fprintf(stderr, "ff_load: %s: expected HOST:PORT that resolves\n", target);
        return 2;
    }
    int rc = open_socket(L);
    if (rc < 0) {
        fprintf(stderr, "ff_load: connect %s: %s\n", target, ff_strerror(rc));
        return 2;
    }
    size_t cap = 64;
    while (cap < (size_t)o->window) cap <<= 1;
    L->mask = cap - 1;
    L->frame_bytes = FF_FRAME_HEADER + FF_FRAME_RECORD * (size_t)o->batch;
    L->slots = ff_xcalloc(cap, sizeof(slot));
    L->frames = ff_xmalloc(cap * L->frame_bytes);
    if (L->tcp) L->out = ff_xmalloc(2 * (TCP_OUT_MAX + FF_FRAME_MAX));
    gen_init(&L->g, o);
    L->next_scan_ns = UINT64_MAX;
    L->rto_ns = (uint64_t)o->timeout_us * 1000u;
    L->run_seconds = o->seconds > 0
                         ? o->seconds
                         : (o->rate > 0 ? (double)o->events / (o->rate * shape_mean) : 0);
    L->pm.pid = o->pid;
    L->t0_us = wall_us();
    L->t0_ns = L->last_ns = L->tick_ns = now_ns();
    L->last_ts = sim_ts(L, 0);
    proc_sample(&L->pm, L->t0_ns);
    bool tty = !o->quiet && (o->progress || isatty(2));
    while (turn(L, tty)) {
    }
    uint64_t end = now_ns();
    if (!L->gen_done) L->gen_end_ns = end;
    for (uint64_t id = L->base; id < L->next; id++) {
        slot *s = &L->slots[id & L->mask];
        if (o->ack && s->state == SLOT_INFLIGHT) {
            L->lost_frames++;
            L->lost_events += s->count;
        }
    }
    proc_sample(&L->pm, end);
    if (tty) fputc('\n', stderr);
    summary(L, end);
    return L->lost_frames || L->malformed ? 1 : 0;
}

/* ---- The topology document and the event CSV --------------------------------------------- */

static uint64_t spaces_of(const opts *o)
{
    uint64_t s = o->spaces ? o->spaces : o->dpus / 2;
    return s < 2 ? 2 : s;
}

static int write_topology(const opts *o)
{
    FILE *f = fopen(o->topo_file, "w");
    if (!f) return fprintf(stderr, "ff_load: %s: %s\n", o->topo_file, strerror(errno)), 2;
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    uint64_t S = spaces_of(o);
    fputs("{\"spaces\":[", f);
    for (uint64_t s = 1; s <= S; s++)
        fprintf(f, "%s{\"id\":%llu,\"name\":\"S%llu\"}", s > 1 ? ",\n" : "\n",
                (unsigned long long)s, (unsigned long long)s);
    fputs("],\n\"doorways\":[", f);
    for (uint64_t d = 1; d <= S; d++)
        fprintf(f, "%s{\"id\":%llu,\"name\":\"D%llu\"}", d > 1 ? ",\n" : "\n",
                (unsigned long long)d, (unsigned long long)d);
    fputs("],\n\"dpus\":[", f);
    for (uint64_t d = 1; d <= o->dpus; d++) {
        uint64_t k = d - 1;
        fprintf(
            f, "%s{\"id\":%llu,\"doorway_id\":%llu,\"entry_space_id\":%llu,\"exit_space_id\":%llu}",
            d > 1 ? ",\n" : "\n", (unsigned long long)d, (unsigned long long)(k % S + 1),
            (unsigned long long)(k % S + 1), (unsigned long long)((k + 1) % S + 1));
    }
    fputs("]}\n", f);
    if (fclose(f) != 0)
        return fprintf(stderr, "ff_load: %s: %s\n", o->topo_file, strerror(errno)), 2;
    printf("wrote %s: %llu spaces, %llu doorways, %llu DPUs\n", o->topo_file, (unsigned long long)S,
           (unsigned long long)S, (unsigned long long)o->dpus);
    return 0;
}

/* Events over [now - span, now] following the daily shape, millisecond timestamps. */
static int write_csv(const opts *o)
{
    FILE *f = fopen(o->csv_file, "w");
    if (!f) return fprintf(stderr, "ff_load: %s: %s\n", o->csv_file, strerror(errno)), 2;
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    gen g;
    gen_init(&g, o);
    int64_t t0 = wall_us(), span = o->span_us ? o->span_us : FF_DAY;
    fputs("timestamp,direction,dpu_id,seq\n", f);
    for (uint64_t i = 0; i < o->events; i++) {
        double x = shape_inv(((double)i + 0.5) / (double)o->events);
        ff_event e;
        gen_event(&g, t0 - span + (int64_t)(x * (double)span), &e);
        char ts[FF_TIME_STRLEN];
        ff_time_format(e.ts - e.ts % 1000, ts);
        fprintf(f, "%s,%d,%u,%u\n", ts, e.direction, e.dpu_id, e.seq);
    }
    free(g.seq);
    if (fclose(f) != 0)
        return fprintf(stderr, "ff_load: %s: %s\n", o->csv_file, strerror(errno)), 2;
    printf("wrote %s: %llu events of %llu DPUs (%llu out of order, %llu late, %llu duplicates)\n",
           o->csv_file, (unsigned long long)o->events, (unsigned long long)o->dpus,
           (unsigned long long)g.n_ooo, (unsigned long long)g.n_late, (unsigned long long)g.n_dup);
    return 0;
}

/* ---- Flags ------------------------------------------------------------------------------- */

static const char usage[] =
    "usage: ff_load --udp HOST:PORT | --tcp HOST:PORT [options]\n"
    "       ff_load --write-topology FILE [--dpus N] [--spaces S]\n"
    "       ff_load --write-csv FILE --events N [--dpus N] [--span DUR] [--out-of-order F]\n"
    "\n"
    "Simulates N DPUs sending events to footfalld (SPEC §3 frames) and reports the\n"
    "send and accept rates, ack latency, loss, and the server's RSS and CPU.\n"
    "\n"
    "  --dpus N            simulated DPUs, ids 1..N (default 100000; up to 10000000)\n"
    "  --spaces S          spaces in the written topology (default N/2)\n"
    "  --events N          stop after N events\n"
    "  --seconds S         stop after S seconds (default 10 when no --events)\n"
    "  --rate R            mean events/s over the simulated day; 0 = as fast as possible\n"
    "  --per-dpu-day K     sets --rate to N*K/86400 (e.g. 500 events per DPU per day)\n"
    "  --shape daily|flat|peak  traffic shape (default daily: night 0.1x, 17h at 5x)\n"
    "  --span DUR          timestamps cover [start - DUR, start] (default 24h; 0 = wall clock)\n"
    "  --batch B           events per frame, 1..4096 (default 64)\n"
    "  --out-of-order F    fraction of events moved back up to 60 s (default 0; CSV 0.01)\n"
    "  --late F            fraction of events sent behind the horizon (default 0)\n"
    "  --duplicate F       fraction of events repeated exactly (default 0)\n"
    "  --settle DUR        the server's settle delay, to aim --late (default 5m)\n"
    "  --ack               ask for acks; window, retransmit, latency, loss\n"
    "  --window W          frames in flight with --ack (default 512)\n"
    "  --timeout DUR       least UDP retransmit timeout (default 200ms; adapts to the\n"
    "                      measured RTT as TCP's does), doubling per retry\n"
    "  --retries N         resends before a frame counts as lost (default 8)\n"
    "  --drain DUR         wait this long for the last acks (default 3s)\n"
    "  --pid PID           sample this process's RSS and CPU (the server)\n"
    "  --seed N            random seed (default 1)\n"
    "  --progress          progress line even when stderr is not a terminal\n"
    "  --quiet             no progress line\n";

enum {
    O_UDP = 256,
    O_TCP,
    O_TOPO,
    O_CSV,
    O_DPUS,
    O_SPACES,
    O_EVENTS,
    O_SECONDS,
    O_RATE,
    O_PERDAY,
    O_SHAPE,
    O_SPAN,
    O_BATCH,
    O_OOO,
    O_LATE,
    O_DUP,
    O_SETTLE,
    O_ACK,
    O_WINDOW,
    O_TIMEOUT,
    O_RETRIES,
    O_DRAIN,
    O_PID,
    O_SEED,
    O_PROGRESS,
    O_QUIET,
    O_HELP
};

static const struct option longopts[] = {{"udp", 1, 0, O_UDP},
                                         {"tcp", 1, 0, O_TCP},
                                         {"write-topology", 1, 0, O_TOPO},
                                         {"write-csv", 1, 0, O_CSV},
                                         {"dpus", 1, 0, O_DPUS},
                                         {"spaces", 1, 0, O_SPACES},
                                         {"events", 1, 0, O_EVENTS},
                                         {"seconds", 1, 0, O_SECONDS},
                                         {"rate", 1, 0, O_RATE},
                                         {"per-dpu-day", 1, 0, O_PERDAY},
                                         {"shape", 1, 0, O_SHAPE},
                                         {"span", 1, 0, O_SPAN},
                                         {"batch", 1, 0, O_BATCH},
                                         {"out-of-order", 1, 0, O_OOO},
                                         {"late", 1, 0, O_LATE},
                                         {"duplicate", 1, 0, O_DUP},
                                         {"settle", 1, 0, O_SETTLE},
                                         {"ack", 0, 0, O_ACK},
                                         {"window", 1, 0, O_WINDOW},
                                         {"timeout", 1, 0, O_TIMEOUT},
                                         {"retries", 1, 0, O_RETRIES},
                                         {"drain", 1, 0, O_DRAIN},
                                         {"pid", 1, 0, O_PID},
                                         {"seed", 1, 0, O_SEED},
                                         {"progress", 0, 0, O_PROGRESS},
                                         {"quiet", 0, 0, O_QUIET},
                                         {"help", 0, 0, O_HELP},
                                         {0, 0, 0, 0}};

static bool num(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static bool dur(const char *s, int64_t *out)
{
    return ff_duration_parse(s, strlen(s), out) == 0 && *out >= 0;
}

static void opts_default(opts *o)
{
    memset(o, 0, sizeof(*o));
    o->dpus = 100000;
    o->batch = 64;
    o->window = 512;
    o->retries = 8;
    o->span_us = FF_DAY;
    o->settle_us = 5 * FF_MINUTE;
    o->timeout_us = 200000;
    o->drain_us = 3 * FF_SECOND;
    o->seed = 1;
}

/* Applies one flag; returns false when its value is bad. */
static bool apply_flag(opts *o, int c, const char *v)
{
    double d = 0;
    switch (c) {
    case O_UDP:
        o->udp = v;
        return true;
    case O_TCP:
        o->tcp = v;
        return true;
    case O_TOPO:
        o->topo_file = v;
        return true;
    case O_CSV:
        o->csv_file = v;
        return true;
    case O_DPUS:
        return num(v, 1, 4294967295.0, &d) && (o->dpus = (uint64_t)d, true);
    case O_SPACES:
        return num(v, 1, 4294967295.0, &d) && (o->spaces = (uint64_t)d, true);
    case O_EVENTS:
        return num(v, 1, 1e15, &d) && (o->events = (uint64_t)d, true);
    case O_SECONDS:
        return num(v, 0.001, 1e7, &o->seconds);
    case O_RATE:
        return num(v, 0, 1e10, &o->rate);
    case O_PERDAY:
        return num(v, 0.001, 1e9, &o->per_dpu_day);
    case O_BATCH:
        return num(v, 1, FF_FRAME_MAX_COUNT, &d) && (o->batch = (int)d, true);
    case O_OOO:
        o->ooo_set = true;
        return num(v, 0, 1, &o->ooo);
    case O_LATE:
        return num(v, 0, 1, &o->late);
    case O_DUP:
        return num(v, 0, 1, &o->dup);
    case O_WINDOW:
        return num(v, 1, 1 << 20, &d) && (o->window = (int)d, true);
    case O_RETRIES:
        return num(v, 0, 255, &d) && (o->retries = (int)d, true);
    case O_PID:
        return num(v, 1, 1 << 30, &d) && (o->pid = (int)d, true);
    case O_SEED:
        return num(v, 0, 1e18, &d) && (o->seed = (uint64_t)d, true);
    case O_SPAN:
        return dur(v, &o->span_us);
    case O_SETTLE:
        return dur(v, &o->settle_us);
    case O_TIMEOUT:
        return dur(v, &o->timeout_us) && o->timeout_us >= 1000;
    case O_DRAIN:
        return dur(v, &o->drain_us);
    case O_ACK:
        o->ack = true;
        return true;
    case O_PROGRESS:
        o->progress = true;
        return true;
    case O_QUIET:
        o->quiet = true;
        return true;
    case O_SHAPE:
        o->shape = !strcmp(v, "flat") ? SHAPE_FLAT : !strcmp(v, "peak") ? SHAPE_PEAK : SHAPE_DAILY;
        return !strcmp(v, "flat") || !strcmp(v, "peak") || !strcmp(v, "daily");
    }
    return false;
}

int main(int argc, char **argv)
{
    opts o;
    opts_default(&o);
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == O_HELP || c == 'h') return fputs(usage, stdout), 0;
        if (c == '?' || !apply_flag(&o, c, optarg)) {
            if (c != '?')
                fprintf(stderr, "ff_load: %s: bad value '%s'\n", argv[optind - 1], optarg);
            fputs("(see ff_load --help)\n", stderr);
            return 2;
        }
    }
    rng_state = o.seed * 0x2545f4914f6cdd1dULL + 1;
    shape_init(o.shape);
    if (o.per_dpu_day > 0) o.rate = (double)o.dpus * o.per_dpu_day / 86400.0;
    if (o.topo_file) return write_topology(&o);
    if (o.csv_file) {
        if (!o.events) return fputs("ff_load: --write-csv needs --events N\n", stderr), 2;
        if (!o.ooo_set) o.ooo = 0.01;
        return write_csv(&o);
    }
    if (!o.udp == !o.tcp) return fputs("ff_load: one of --udp or --tcp (see --help)\n", stderr), 2;
    if (!o.events && o.seconds <= 0) o.seconds = 10;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    return run_load(&o);
}
