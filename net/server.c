/*
 * server.c -- footfalld's loop: UDP and TCP ingest, group commit, the tick, shutdown.
 *
 * One loop thread, one libuv loop, plus one msync at a time on libuv's thread pool and
 * one seal job at a time on the seal thread.
 * Each wake-up does bounded work, so one busy socket cannot starve the others or the
 * HTTP server: the UDP socket is read by our own recvmmsg loop (UDP_BATCH datagrams
 * per call, at most UDP_BUDGET per wake-up; uv_poll is level-triggered, so what is
 * left is read on the next turn, after the other handles had theirs), a TCP stream by
 * libuv (at most 32 reads per wake-up).
 *
 * Group commit (the durability policy of SPEC §5). Every frame is admitted by the
 * engine when it is read; the engine appends its accepted events to the mmap'd log and
 * returns; the frame's ack is queued with the log position (written LSN) that covers
 * it. With --fsync=always the sync runs OFF the loop thread, one job at a time:
 *   - the uv_prepare handle `commit` runs once per loop turn, right before the loop
 *     blocks. If written > durable and no job is in flight, it begins one
 *     (ff_engine_sync_begin: captures the dirty range and the target LSN = written
 *     now) and queues its msync on the thread pool (uv_queue_work). The loop goes on
 *     admitting events into the mapping meanwhile; they wait for the next job.
 *   - when the msync returns, sync_done runs on the loop thread: ff_engine_sync_end
 *     advances durable to the captured LSN, and every queued UDP ack, TCP ack and
 *     suspended HTTP answer whose position is <= durable is released, in order. If
 *     more was written meanwhile, the next job begins at once.
 * An answer is therefore never released before the sync that covers its position has
 * completed: durable moves only in ff_engine_sync_end (or in a synchronous
 * ff_engine_sync, which syncs everything written). If a sync fails nothing is
 * released, the error is counted, and the next turn tries again (the log's error is
 * sticky: see storage/log.c); the senders retransmit. Under --fsync=interval:MS a timer
 * begins the same jobs and answers are released right away; under --fsync=never the OS
 * writes the mapping back when it likes. At shutdown one synchronous sync covers
 * everything and the job in flight, if any, is waited for before the log is closed.
 *
 * Sealing runs off the loop thread too (engine.h, ff_engine_seal_begin): after each
 * tick, if a seal or merge is due, its rows are copied into a job on the loop thread
 * (a few ms per million rows) and the job -- encode, lz4, write, fsync, rename -- goes
 * to the seal thread; its end, back on the loop, attaches the segment and commits a
 * checkpoint. One job at a time; shutdown waits for it like for the sync job.
 *
 * The seal thread is footfalld's own, not the thread pool's, so that it can run at a
 * lower priority (nice +SEAL_NICE) than the loop and the msync: a job is seconds of
 * CPU at 10 M DPUs, and on two cores a job woken at the loop's priority took the
 * loop's core for one time slice after another, 5-36 ms at a time, while the acks
 * waited (docs/BENCHMARKS.md). At a lower priority the job takes what the loop and the
 * sync leave, and the loop preempts it at once when it wakes.
 *
 * UDP: the records of the well-formed frames of one recvmmsg are copied side by side
 * (one memcpy a frame: on a little-endian host the wire record is the in-memory
 * ff_event) and taken in one ff_engine_ingest (udp_take). Acks go out in batches
 * through sendmmsg on the same socket.
 *
 * TCP: each connection reads into its own buffer of two maximal frames; complete frames
 * are admitted in order and their acks queued on the connection in frame order. A
 * malformed frame is acked with status 2 after the acks before it, and the connection
 * is closed. A connection with too many acks waiting stops being read until they drain.
 */
#include "net/server_int.h"
#include "net/timefmt.h"
#include "net/wire.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define UDP_SLICE            (64 * 1024) /* one datagram: the largest UDP payload fits */
#define UDP_BATCH            64          /* datagrams per recvmmsg */
#define UDP_BUDGET           512         /* datagrams per wake-up, then back to the loop */
#define UDP_TAKE_EVENTS      16384       /* records per ff_engine_ingest of several frames */
#define TCP_BUF              (2 * FF_FRAME_MAX)
#define TCP_MAX_PENDING_ACKS 4096
#define UDP_MAX_PENDING_ACKS 65536
#define TICK_MS              100

struct tcp_conn {
    uv_tcp_t h;
    ff_server *s;
    tcp_conn *next, *prev;
    uint8_t *buf; /* TCP_BUF bytes, 16-aligned: frames stay aligned */
    size_t len;
    struct tcp_ack {
        uint64_t lsn;
        uint64_t read_at; /* uv_hrtime() when its frame was read */
        uint8_t bytes[FF_ACK_SIZE];
        bool close_after;
    } * acks;
    size_t ack_head, ack_len, ack_cap;
    bool reading, closing;
    bool doomed; /* a malformed frame was seen: never read again, close after its ack */
};

/* The UDP receive side: UDP_BATCH slices of UDP_SLICE bytes and their vectors. */
struct udp_rx {
    struct mmsghdr msgs[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    struct sockaddr_storage addrs[UDP_BATCH];
    uint8_t *buf; /* UDP_BATCH * UDP_SLICE bytes, 64-aligned: frames stay aligned */
    /* the well-formed frames of one recvmmsg, taken together (udp_take) */
    struct udp_frame {
        uint64_t batch_id;
        uint32_t first, count; /* their records: ev[first .. first + count) */
        uint8_t msg;           /* index into msgs / addrs */
        bool ack;
    } fr[UDP_BATCH];
    unsigned nfr;
    uint32_t nev;
    ff_event *ev; /* UDP_TAKE_EVENTS */
    uint8_t *out; /* their outcomes */
};

static ff_event *scratch_events; /* big-endian hosts decode here */

/* ---- Addresses --------------------------------------------------------------------- */

int ff_parse_hostport(const char *s, struct sockaddr_storage *out)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || strlen(colon + 1) == 0) return FF_EFORMAT;
    size_t hl = (size_t)(colon - s);
    if (hl >= sizeof(host)) return FF_EFORMAT;
    memcpy(host, s, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) return FF_EFORMAT;
    memset(out, 0, sizeof(*out));
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) != 0) return FF_EFORMAT;
        return 0;
    }
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) != 0) return FF_EFORMAT;
    return 0;
}

static void name_of(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)sa;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        snprintf(out, n, "[%s]:%d", ip, port);
        return;
    }
    const struct sockaddr_in *a = (const void *)sa;
    uv_ip4_name(a, ip, sizeof(ip));
    port = ntohs(a->sin_port);
    snprintf(out, n, "%s:%d", ip, port);
}

/* ---- Release of answers ------------------------------------------------------------ */

uint64_t ff__server_release_point(const ff_server *s)
{
    if (s->opts.fsync_mode == FF_FSYNC_ALWAYS) return ff_engine_durable(s->eng);
    return ff_engine_written(s->eng);
}

static void flush_udp_acks(ff_server *s, uint64_t rel)
{
    int fd = s->udp_fd;
    if (s->uack_len == 0 || fd < 0) return;
    struct mmsghdr msgs[64];
    struct iovec iov[64];
    uint64_t now = uv_hrtime();
    while (s->uack_len > 0) {
        unsigned n = 0;
        while (n < 64 && n < s->uack_len) {
            udp_ack *a = &s->uacks[(s->uack_head + n) & (s->uack_cap - 1)];
            if (a->lsn > rel) break;
            ff__hist_add(&s->m.ack_wait, now - a->read_at);
            iov[n] = (struct iovec){a->bytes, FF_ACK_SIZE};
            msgs[n].msg_hdr = (struct msghdr){
                .msg_name = &a->addr,
                .msg_namelen = a->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                             : sizeof(struct sockaddr_in),
                .msg_iov = &iov[n],
                .msg_iovlen = 1,
            };
            n++;
        }
        if (n == 0) break;
        int sent = sendmmsg(fd, msgs, n, MSG_DONTWAIT);
        if (sent < (int)n) s->m.udp_acks_dropped += n - (sent < 0 ? 0 : (unsigned)sent);
        s->uack_head = (s->uack_head + n) & (s->uack_cap - 1);
        s->uack_len -= n;
    }
}

static void tcp_close(tcp_conn *c);
static void tcp_flush_acks(tcp_conn *c, uint64_t rel);

/* Releases every queued answer whose position is <= the release point. */
static void release(ff_server *s)
{
    uint64_t rel = ff__server_release_point(s);
    flush_udp_acks(s, rel);
    for (tcp_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->ack_len) tcp_flush_acks(c, rel);
    }
    if (s->http) ff__http_release(s->http, rel);
}

static void sync_failed(ff_server *s, int rc)
{
    s->m.sync_errors++;
    fprintf(stderr, "footfalld: log sync failed: %s\n", ff_strerror(rc));
}

static int64_t wall_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * FF_SECOND + t.tv_nsec / 1000;
}

/* ---- What answers wait for ------------------------------------------------------------
 *
 * An answer waits for the loop thread and, under --fsync always, for the sync that covers
 * it; both are measured. The busy time of one loop turn is everything but the wait for
 * events: the prepare handle `watch` runs once per turn, right before the loop waits, and
 * a turn's busy time is the time since the last one minus what libuv spent waiting
 * meanwhile (UV_METRICS_IDLE_TIME). A sync's time runs from its begin to its end on the
 * loop. Both go into histograms for /metrics (footfall_loop_busy_seconds,
 * footfall_log_sync_seconds); one slower than SLOW_MS is also told on stderr, at most one
 * line every SLOW_EVERY_S seconds. */

#define SLOW_MS      100
#define SLOW_EVERY_S 10

const double ff__hist_bounds[FF_HIST_BUCKETS] = {0.0001, 0.001, 0.005, 0.025, 0.1, 0.5, 2.5};

void ff__hist_add(ff_hist *h, uint64_t ns)
{
    int b = 0;
    while (b < FF_HIST_BUCKETS && (double)ns > ff__hist_bounds[b] * 1e9) b++;
    h->n[b]++;
    h->sum_ns += ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

static void tell_slow(ff_server *s, uint64_t now, uint64_t ns, const char *what)
{
    if (ns < SLOW_MS * 1000000ull || now - s->slow_told < SLOW_EVERY_S * 1000000000ull) return;
    s->slow_told = now;
    char t[FF_TIME_STRLEN];
    ff_time_format(wall_us(), t);
    fprintf(stderr, "footfalld: %s: %s %.1f ms; answers waited as long\n", t, what,
            (double)ns / 1e6);
}

static void on_watch(uv_prepare_t *p)
{
    ff_server *s = p->data;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(s->loop);
    uint64_t busy = now - s->watch_at - (idle - s->watch_idle);
    if (idle - s->watch_idle > now - s->watch_at) busy = 0; /* clocks read apart */
    s->watch_at = now;
    s->watch_idle = idle;
    ff__hist_add(&s->m.loop_busy, busy);
    tell_slow(s, now, busy, "one loop turn was busy");
}

/* ---- Group commit ------------------------------------------------------------------- */

/* Thread pool: the msync of the captured range, nothing else. */
static void sync_work(uv_work_t *w)
{
    ff_server *s = w->data;
    s->sync_rc = ff_engine_sync_run(&s->sync_job);
}

static void sync_start(ff_server *s);

/* Loop thread, once the msync returned: durable advances, the answers it covers go. */
static void sync_done(uv_work_t *w, int status)
{
    ff_server *s = w->data;
    int rc = ff_engine_sync_end(s->eng, &s->sync_job, status < 0 ? status : s->sync_rc);
    s->sync_busy = false;
    s->m.syncs++;
    uint64_t now = uv_hrtime();
    ff__hist_add(&s->m.sync_wait, now - s->sync_began);
    if (s->opts.fsync_mode == FF_FSYNC_ALWAYS) /* else no answer waits for it */
        tell_slow(s, now, now - s->sync_began, "a log sync took");
    if (rc < 0) sync_failed(s, rc);
    if (s->stopping) return; /* answered by the final sync; handles are closing */
    release(s);
    sync_start(s);
}

/* Begins a sync job covering everything written so far, unless one is in flight. */
static void sync_start(ff_server *s)
{
    if (s->sync_busy || ff_engine_written(s->eng) <= ff_engine_durable(s->eng)) return;
    int rc = ff_engine_sync_begin(s->eng, &s->sync_job);
    if (rc < 0) {
        s->m.syncs++;
        sync_failed(s, rc);
        return;
    }
    if (rc == 0) return;
    s->sync_busy = true;
    s->sync_began = uv_hrtime();
    s->sync_req.data = s;
    uv_queue_work(s->loop, &s->sync_req, sync_work, sync_done);
}

static void on_commit(uv_prepare_t *p)
{
    ff_server *s = p->data;
    if (s->opts.fsync_mode == FF_FSYNC_ALWAYS) sync_start(s);
    release(s);
}

/* ---- Admission of one frame -------------------------------------------------------- */

/* Admits the records of a well-formed frame and fills the ack. */
static void admit_frame(ff_server *s, const uint8_t *rec, const ff_frame_header *h, ff_ack *ack)
{
    const ff_event *ev;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (((uintptr_t)rec & 7) == 0) {
        ev = (const ff_event *)(const void *)rec;
    } else
#endif
    {
        if (scratch_events == NULL)
            scratch_events = ff_xmalloc(sizeof(ff_event) * FF_FRAME_MAX_COUNT);
        ff_frame_records(rec, h->count, scratch_events);
        ev = scratch_events;
    }
    ff_ingest_result r;
    int rc = ff_engine_ingest(s->eng, ev, h->count, NULL, &r);
    memset(ack, 0, sizeof(*ack));
    ack->batch_id = h->batch_id;
    if (rc < 0) {
        ack->status = FF_ACK_OVERLOAD;
        return;
    }
    ack->status = r.refused ? FF_ACK_PARTIAL : FF_ACK_OK;
    ack->accepted = (uint16_t)r.accepted;
    ack->duplicates = (uint16_t)r.duplicates;
    ack->late = (uint16_t)r.late;
    ack->refused = (uint16_t)r.refused;
}

/* ---- UDP --------------------------------------------------------------------------- */

/* The log position an ack waits for: a frame that took nothing (malformed, overloaded)
 * has nothing to make durable. */
static uint64_t ack_lsn(ff_server *s, const ff_ack *ack)
{
    bool took = ack->status == FF_ACK_OK || ack->status == FF_ACK_PARTIAL;
    return took ? ff_engine_written(s->eng) : 0;
}

static void udp_queue_ack(ff_server *s, const struct sockaddr *addr, const ff_ack *ack)
{
    if (s->uack_len >= UDP_MAX_PENDING_ACKS) { /* the disk is stuck: senders retransmit */
        s->m.udp_acks_dropped++;
        return;
    }
    if (s->uack_len == s->uack_cap) {
        size_t ncap = s->uack_cap ? s->uack_cap * 2 : 1024;
        udp_ack *n = ff_xmalloc(ncap * sizeof(*n));
        for (size_t i = 0; i < s->uack_len; i++)
            n[i] = s->uacks[(s->uack_head + i) & (s->uack_cap - 1)];
        free(s->uacks);
        s->uacks = n;
        s->uack_cap = ncap;
        s->uack_head = 0;
    }
    udp_ack *a = &s->uacks[(s->uack_head + s->uack_len) & (s->uack_cap - 1)];
    a->lsn = ack_lsn(s, ack);
    a->read_at = s->read_at;
    memset(&a->addr, 0, sizeof(a->addr));
    memcpy(&a->addr, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    ff_ack_encode(a->bytes, ack);
    s->uack_len++;
}

/*
 * The frames of one recvmmsg are taken in one ff_engine_ingest, in arrival order, which
 * gives every event the outcome it would have had one frame at a time. One call per
 * frame restarted ingest's prefetch pipeline (engine/engine.c) every 64 events and paid
 * its fixed costs (a log record, the clock) per frame. Each frame's ack is then counted
 * from the outcomes of its own records.
 */
static void udp_take(ff_server *s, struct udp_rx *rx)
{
    if (rx->nfr == 0) return;
    int rc = ff_engine_ingest(s->eng, rx->ev, rx->nev, rx->out, NULL);
    for (unsigned f = 0; f < rx->nfr; f++) {
        const struct udp_frame *fr = &rx->fr[f];
        ff_ack ack = {.batch_id = fr->batch_id, .status = FF_ACK_OVERLOAD};
        if (rc == 0) {
            unsigned n[FF_OUT__COUNT] = {0};
            for (uint32_t i = fr->first; i < fr->first + fr->count; i++) n[rx->out[i]]++;
            ack.duplicates = (uint16_t)n[FF_OUT_DUPLICATE];
            ack.late = (uint16_t)n[FF_OUT_LATE];
            ack.accepted = (uint16_t)(n[FF_OUT_ACCEPTED] + n[FF_OUT_LATE]);
            ack.refused = (uint16_t)(fr->count - ack.accepted - ack.duplicates);
            ack.status = ack.refused ? FF_ACK_PARTIAL : FF_ACK_OK;
        } else {
            s->m.udp_overloaded++;
        }
        if (fr->ack) udp_queue_ack(s, (const struct sockaddr *)&rx->addrs[fr->msg], &ack);
    }
    rx->nfr = 0;
    rx->nev = 0;
}

/* Datagram i of the last recvmmsg: a malformed one is counted (and acked as such when
 * it asked and is recognisably ours); a frame joins the ones to take. */
static void udp_datagram(ff_server *s, struct udp_rx *rx, unsigned i)
{
    const uint8_t *p = rx->buf + (size_t)i * UDP_SLICE;
    size_t n = rx->msgs[i].msg_len;
    const struct sockaddr *addr = (const struct sockaddr *)&rx->addrs[i];
    ff_frame_header h;
    s->m.udp_datagrams++;
    int rc = ff_frame_parse_header(p, n, &h);
    if (rc == 0 && n != ff_frame_size(&h)) rc = FF_EFORMAT;
    if (rc < 0) {
        s->m.udp_malformed++;
        if (n >= FF_FRAME_HEADER && memcmp(p, "FFE1", 4) == 0 && (p[6] & 1)) {
            ff_ack ack = {.status = FF_ACK_MALFORMED, .batch_id = h.batch_id};
            udp_queue_ack(s, addr, &ack);
        }
        return;
    }
    s->m.udp_events += h.count;
    if (rx->nev + h.count > UDP_TAKE_EVENTS) udp_take(s, rx);
    ff_frame_records(p + FF_FRAME_HEADER, h.count, rx->ev + rx->nev);
    rx->fr[rx->nfr++] = (struct udp_frame){.batch_id = h.batch_id,
                                           .first = rx->nev,
                                           .count = h.count,
                                           .msg = (uint8_t)i,
                                           .ack = h.flags & FF_FRAME_FLAG_ACK};
    rx->nev += h.count;
}

/*
 * The socket is readable: up to UDP_BUDGET datagrams, UDP_BATCH per recvmmsg, the frames
 * of each recvmmsg taken together. Stops early when the socket is drained; whatever is
 * left keeps the (level-triggered) poll ready for the next turn.
 */
static void udp_readable(uv_poll_t *p, int status, int events)
{
    ff_server *s = p->data;
    struct udp_rx *rx = s->udp_rx;
    if (status < 0) return;
    for (unsigned total = 0; total < UDP_BUDGET;) {
        for (unsigned i = 0; i < UDP_BATCH; i++) {
            rx->msgs[i].msg_hdr.msg_namelen = sizeof(rx->addrs[i]);
            rx->msgs[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(s->udp_fd, rx->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) break; /* EAGAIN, or an error the next readiness will show again */
        s->read_at = uv_hrtime();
        for (int i = 0; i < n; i++) {
            if (rx->msgs[i].msg_len == 0) continue;
            if (rx->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                s->m.udp_malformed++;
                continue;
            }
            udp_datagram(s, rx, (unsigned)i);
        }
        udp_take(s, rx); /* before the next recvmmsg reuses the addresses */
        total += (unsigned)n;
        if (n < UDP_BATCH) break;
    }
}

static struct udp_rx *udp_rx_new(void)
{
    struct udp_rx *rx = ff_xcalloc(1, sizeof(*rx));
    rx->buf = aligned_alloc(64, (size_t)UDP_BATCH * UDP_SLICE);
    if (rx->buf == NULL) FF_PANIC("out of memory");
    rx->ev = ff_xmalloc(UDP_TAKE_EVENTS * sizeof(*rx->ev));
    rx->out = ff_xmalloc(UDP_TAKE_EVENTS);
    for (unsigned i = 0; i < UDP_BATCH; i++) {
        rx->iov[i] = (struct iovec){rx->buf + (size_t)i * UDP_SLICE, UDP_SLICE};
        rx->msgs[i].msg_hdr =
            (struct msghdr){.msg_name = &rx->addrs[i], .msg_iov = &rx->iov[i], .msg_iovlen = 1};
    }
    return rx;
}

static void udp_rx_free(struct udp_rx *rx)
{
    if (rx) {
        free(rx->buf);
        free(rx->ev);
        free(rx->out);
    }
    free(rx);
}

static int udp_start(ff_server *s, const struct sockaddr_storage *addr)
{
    socklen_t alen =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    s->udp_fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->udp_fd < 0) return -errno;
    if (bind(s->udp_fd, (const struct sockaddr *)addr, alen) != 0) return -errno;
    int want = s->opts.udp_rcvbuf ? s->opts.udp_rcvbuf : 32 << 20;
    /* SO_RCVBUFFORCE passes net.core.rmem_max when we may; else take what we get. */
    if (setsockopt(s->udp_fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
        setsockopt(s->udp_fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
    s->udp_rx = udp_rx_new();
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(s->udp_fd, (struct sockaddr *)&bound, &blen);
    name_of((struct sockaddr *)&bound, s->udp_name, sizeof(s->udp_name));
    int rc = uv_poll_init_socket(s->loop, &s->udp_poll, s->udp_fd);
    if (rc < 0) return rc;
    s->udp_poll.data = s;
    s->udp_on = true;
    return uv_poll_start(&s->udp_poll, UV_READABLE, udp_readable);
}

/* ---- TCP --------------------------------------------------------------------------- */

static void tcp_on_close(uv_handle_t *h)
{
    tcp_conn *c = h->data;
    free(c->buf);
    free(c->acks);
    free(c);
}

static void tcp_close(tcp_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    ff_server *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->h, tcp_on_close);
}

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    tcp_conn *c = h->data;
    *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(TCP_BUF - c->len));
}

static void tcp_queue_ack(tcp_conn *c, const ff_ack *ack, bool close_after)
{
    if (c->ack_len == c->ack_cap) {
        size_t ncap = c->ack_cap ? c->ack_cap * 2 : 64;
        struct tcp_ack *n = ff_xmalloc(ncap * sizeof(*n));
        for (size_t i = 0; i < c->ack_len; i++)
            n[i] = c->acks[(c->ack_head + i) & (c->ack_cap - 1)];
        free(c->acks);
        c->acks = n;
        c->ack_cap = ncap;
        c->ack_head = 0;
    }
    struct tcp_ack *a = &c->acks[(c->ack_head + c->ack_len) & (c->ack_cap - 1)];
    a->lsn = ack_lsn(c->s, ack);
    a->read_at = c->s->read_at;
    a->close_after = close_after;
    ff_ack_encode(a->bytes, ack);
    c->ack_len++;
}

typedef struct tcp_write {
    uv_write_t req;
    tcp_conn *c;
    bool close_after;
    uint8_t data[];
} tcp_write;

static void tcp_write_done(uv_write_t *req, int status)
{
    tcp_write *w = (tcp_write *)req;
    if ((status < 0 || w->close_after) && !w->c->closing) tcp_close(w->c);
    free(w);
}

static void tcp_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Sends every releasable ack of c in one write, in frame order. */
static void tcp_flush_acks(tcp_conn *c, uint64_t rel)
{
    uint8_t out[64 * FF_ACK_SIZE];
    uint64_t now = uv_hrtime();
    while (c->ack_len > 0 && !c->closing) {
        size_t n = 0;
        bool close_after = false;
        while (n < 64 && n < c->ack_len && !close_after) {
            struct tcp_ack *a = &c->acks[(c->ack_head + n) & (c->ack_cap - 1)];
            if (a->lsn > rel) break;
            ff__hist_add(&c->s->m.ack_wait, now - a->read_at);
            memcpy(out + n * FF_ACK_SIZE, a->bytes, FF_ACK_SIZE);
            close_after = a->close_after;
            n++;
        }
        if (n == 0) break;
        c->ack_head = (c->ack_head + n) & (c->ack_cap - 1);
        c->ack_len -= n;
        size_t len = n * FF_ACK_SIZE;
        uv_buf_t b = uv_buf_init((char *)out, (unsigned)len);
        int wrote = uv_try_write((uv_stream_t *)&c->h, &b, 1);
        if (wrote == (int)len && !close_after) continue;
        if (wrote < 0 && wrote != UV_EAGAIN) {
            tcp_close(c);
            return;
        }
        size_t done = wrote > 0 ? (size_t)wrote : 0;
        tcp_write *w = ff_xmalloc(sizeof(*w) + len - done);
        w->c = c;
        w->close_after = close_after;
        memcpy(w->data, out + done, len - done);
        b = uv_buf_init((char *)w->data, (unsigned)(len - done));
        if (uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, tcp_write_done) < 0) {
            free(w);
            tcp_close(c);
            return;
        }
    }
    if (!c->reading && !c->closing && !c->doomed && c->ack_len < TCP_MAX_PENDING_ACKS / 2) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->h, tcp_alloc, tcp_read);
    }
}

/* Admits every complete frame in c->buf; returns false once the connection must close. */
static bool tcp_consume(tcp_conn *c)
{
    ff_server *s = c->s;
    size_t off = 0;
    bool ok = true;
    while (c->len - off >= FF_FRAME_HEADER) {
        ff_frame_header h;
        ff_ack ack;
        int rc = ff_frame_parse_header(c->buf + off, c->len - off, &h);
        if (rc < 0) {
            s->m.tcp_malformed++;
            memset(&ack, 0, sizeof(ack));
            ack.status = FF_ACK_MALFORMED;
            ack.batch_id = memcmp(c->buf + off, "FFE1", 4) == 0 ? h.batch_id : 0;
            tcp_queue_ack(c, &ack, true);
            c->doomed = true;
            ok = false;
            break;
        }
        size_t need = ff_frame_size(&h);
        if (c->len - off < need) break;
        s->m.tcp_frames++;
        s->m.tcp_events += h.count;
        admit_frame(s, c->buf + off + FF_FRAME_HEADER, &h, &ack);
        if (ack.status == FF_ACK_OVERLOAD) s->m.tcp_overloaded++;
        if (h.flags & FF_FRAME_FLAG_ACK) tcp_queue_ack(c, &ack, false);
        off += need;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return ok;
}

static void tcp_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    tcp_conn *c = st->data;
    if (nread < 0) {
        /* EOF or error: acks still owed are dropped with the connection; the sender
         * retransmits what it did not see acknowledged. */
        tcp_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->s->read_at = uv_hrtime();
    if (!tcp_consume(c) || c->ack_len >= TCP_MAX_PENDING_ACKS) {
        uv_read_stop(st);
        c->reading = false;
    }
}

static void tcp_accept(uv_stream_t *server, int status)
{
    ff_server *s = server->data;
    if (status < 0 || s->stopping) return;
    tcp_conn *c = ff_xcalloc(1, sizeof(*c));
    c->s = s;
    c->buf = aligned_alloc(64, (TCP_BUF + 63) & ~(size_t)63);
    if (c->buf == NULL) FF_PANIC("out of memory");
    uv_tcp_init(s->loop, &c->h);
    c->h.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->h) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->h, tcp_on_close);
        return;
    }
    uv_tcp_nodelay(&c->h, 1);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->m.tcp_connections++;
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->h, tcp_alloc, tcp_read);
}

static int tcp_start(ff_server *s, const struct sockaddr_storage *addr)
{
    int rc = uv_tcp_init(s->loop, &s->tcp);
    if (rc < 0) return rc;
    s->tcp.data = s;
    s->tcp_on = true;
    if ((rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *)addr, 0)) < 0) return rc;
    if ((rc = uv_listen((uv_stream_t *)&s->tcp, 512, tcp_accept)) < 0) return rc;
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &blen);
    name_of((struct sockaddr *)&bound, s->tcp_name, sizeof(s->tcp_name));
    return 0;
}

/* ---- Timers, signals, shutdown ----------------------------------------------------- */

/* ---- The seal thread (see the top) -------------------------------------------------- */

#define SEAL_NICE 10

static void sealer_main(void *arg)
{
    ff_server *s = arg;
    (void)pthread_setname_np(pthread_self(), "ff-seal"); /* for top -H, ps -L */
    /* Linux: a thread's own nice value. A hint: a failure leaves the job at the loop's
     * priority, as it was on the thread pool. */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), SEAL_NICE);
    uv_mutex_lock(&s->sealer_mu);
    for (;;) {
        while (s->sealer_todo == NULL && !s->sealer_quit)
            uv_cond_wait(&s->sealer_cv, &s->sealer_mu);
        if (s->sealer_todo == NULL) break; /* told to quit, nothing left to do */
        ff_seal_job *j = s->sealer_todo;
        uv_mutex_unlock(&s->sealer_mu);
        int rc = ff_engine_seal_run(j);
        uv_mutex_lock(&s->sealer_mu);
        s->sealer_todo = NULL;
        s->seal_rc = rc;
        s->sealer_done = true;
        uv_async_send(&s->sealer_async);
    }
    uv_mutex_unlock(&s->sealer_mu);
}

static int sealer_start(ff_server *s)
{
    int rc;
    if ((rc = uv_mutex_init(&s->sealer_mu)) < 0) return rc;
    if ((rc = uv_cond_init(&s->sealer_cv)) < 0) goto out_mu;
    if ((rc = uv_thread_create(&s->sealer, sealer_main, s)) < 0) goto out_cv;
    s->sealer_on = true;
    return 0;
out_cv:
    uv_cond_destroy(&s->sealer_cv);
out_mu:
    uv_mutex_destroy(&s->sealer_mu);
    return rc;
}

static void seal_failed(ff_server *s, int rc);

/* Loop thread: ends the job the seal thread finished (attaches the segment and commits,
 * or discards it if stale). */
static void seal_finish(ff_server *s)
{
    uv_mutex_lock(&s->sealer_mu);
    bool done = s->sealer_done;
    s->sealer_done = false;
    int run_rc = s->seal_rc;
    uv_mutex_unlock(&s->sealer_mu);
    if (!done) return;
    int rc = ff_engine_seal_end(s->eng, s->seal_job, run_rc);
    s->seal_job = NULL;
    if (rc < 0 && rc != -EINTR) seal_failed(s, rc);
}

/* Waits for the job in flight, ends it, and stops the thread. */
static void sealer_stop(ff_server *s)
{
    if (!s->sealer_on) return;
    uv_mutex_lock(&s->sealer_mu);
    s->sealer_quit = true;
    uv_cond_signal(&s->sealer_cv);
    uv_mutex_unlock(&s->sealer_mu);
    uv_thread_join(&s->sealer);
    seal_finish(s);
    uv_cond_destroy(&s->sealer_cv);
    uv_mutex_destroy(&s->sealer_mu);
    s->sealer_on = false;
}

static void seal_step(ff_server *s);

/* A failed job is retried on the next tick, so a lasting cause (a full disk) fails every
 * 100 ms: it is counted every time, and the same message is told at most once every
 * SLOW_EVERY_S seconds (a different one at once). */
static void seal_failed(ff_server *s, int rc)
{
    s->m.seal_errors++;
    uint64_t now = uv_hrtime();
    char why[sizeof s->seal_err_last];
    const char *e = ff_engine_seal_error(s->eng); /* names the file, when there is one */
    snprintf(why, sizeof why, "%s", e[0] ? e : ff_strerror(rc));
    if (s->seal_err_told && now - s->seal_err_told < SLOW_EVERY_S * 1000000000ull &&
        strcmp(why, s->seal_err_last) == 0) { /* another failure is told at once */
        s->seal_err_untold++;
        return;
    }
    memcpy(s->seal_err_last, why, sizeof why);
    fprintf(stderr, "footfalld: sealing, merging or checkpoint failed (retried later): %s", why);
    if (s->seal_err_untold)
        fprintf(stderr, " (and %llu times since the last such line)",
                (unsigned long long)s->seal_err_untold);
    fputc('\n', stderr);
    s->seal_err_told = now;
    s->seal_err_untold = 0;
}

/* Loop thread, woken by the seal thread: the job's end, then the commit that follows a
 * seal or merge. */
static void on_sealer_done(uv_async_t *a)
{
    ff_server *s = a->data;
    seal_finish(s);
    seal_step(s);
}

static void on_seal_idle(uv_idle_t *h);

/* A seal job's begin: its rows are copied a step at a time (engine.h), one step per
 * loop turn through the idle handle, so that I/O goes on between steps. */
static void seal_step(ff_server *s)
{
    if (s->seal_job || s->stopping) return;
    if (ff_engine_seal_begin(s->eng, &s->seal_job) == 1) {
        uv_mutex_lock(&s->sealer_mu);
        s->sealer_todo = s->seal_job;
        uv_cond_signal(&s->sealer_cv);
        uv_mutex_unlock(&s->sealer_mu);
    }
    if (ff_engine_seal_stepping(s->eng))
        uv_idle_start(&s->seal_idle, on_seal_idle);
    else
        uv_idle_stop(&s->seal_idle);
}

static void on_seal_idle(uv_idle_t *h)
{
    seal_step(h->data);
}

static void on_tick(uv_timer_t *t)
{
    ff_server *s = t->data;
    ff_engine_tick(s->eng);
    seal_step(s);
}

static void on_fsync_timer(uv_timer_t *t)
{
    ff_server *s = t->data;
    sync_start(s);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) uv_close(h, h->type == UV_TCP && h->data != arg ? tcp_on_close : NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    ff_server *s = sig->data;
    if (s->stopping) return;
    s->stopping = true;
    if (!s->opts.quiet)
        fprintf(stderr, "footfalld: %s: stopping\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    /* Stop taking input; what was taken is made durable and answered before we go. */
    if (s->udp_on) uv_poll_stop(&s->udp_poll);
    for (tcp_conn *c = s->conns; c; c = c->next)
        if (c->reading) uv_read_stop((uv_stream_t *)&c->h), c->reading = false;
    int rc = ff_engine_sync(s->eng);
    if (rc < 0) fprintf(stderr, "footfalld: final sync failed: %s\n", ff_strerror(rc));
    s->final_rc = rc;
    on_commit(&s->commit);
    uv_stop(s->loop);
}

void ff_server_opts_default(ff_server_opts *o)
{
    memset(o, 0, sizeof(*o));
    ff_engine_opts_default(&o->engine);
    o->engine.data_dir = "./footfall-data";
    o->engine.seal_lag_us = 5 * 60 * (int64_t)1000000; /* late events of minutes stay cheap */
    o->udp = "127.0.0.1:7070";
    o->tcp = "127.0.0.1:7071";
    o->http = "127.0.0.1:8080";
    o->fsync_mode = FF_FSYNC_ALWAYS;
}

static int load_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -errno;
    ff_buf b;
    ff_buf_init(&b);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) ff_buf_add(&b, tmp, n);
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    if (err) {
        ff_buf_release(&b);
        return err;
    }
    *out = ff_buf_steal(&b, len);
    return 0;
}

static int apply_topology_file(ff_server *s, const char *path)
{
    char *text, err[512];
    size_t len;
    int status, rc = load_file(path, &text, &len);
    if (rc < 0) {
        fprintf(stderr, "footfalld: --topology %s: %s\n", path, ff_strerror(rc));
        return rc;
    }
    rc = ff__api_apply_topology(s->eng, text, len, err, sizeof(err), &status);
    free(text);
    if (rc < 0) {
        fprintf(stderr, "footfalld: --topology %s: %s\n", path, err);
        return rc;
    }
    /* Snapshot a changed topology now, before the ready line: at 10 million DPUs that
     * is seconds of writing that the first seal would otherwise spend on the loop. */
    rc = ff_engine_checkpoint(s->eng);
    if (rc < 0) fprintf(stderr, "footfalld: checkpoint after --topology: %s\n", ff_strerror(rc));
    return rc;
}

static int open_listeners(ff_server *s)
{
    struct sockaddr_storage a;
    const char *which[3] = {s->opts.udp, s->opts.tcp, s->opts.http};
    const char *flag[3] = {"--udp", "--tcp", "--http"};
    for (int i = 0; i < 3; i++) {
        if (which[i] == NULL || which[i][0] == '\0') continue;
        int rc = ff_parse_hostport(which[i], &a);
        if (rc < 0) {
            fprintf(stderr, "footfalld: %s %s: expected HOST:PORT\n", flag[i], which[i]);
            return rc;
        }
        rc = i == 0   ? udp_start(s, &a)
             : i == 1 ? tcp_start(s, &a)
                      : ff__http_start(s, &a, &s->http);
        if (rc < 0) {
            fprintf(stderr, "footfalld: %s %s: %s\n", flag[i], which[i],
                    rc > -4096 ? uv_strerror(rc) : ff_strerror(rc));
            return rc;
        }
    }
    if (s->http) snprintf(s->http_name, sizeof(s->http_name), "%s", s->opts.http);
    if (s->http) {
        char *colon = strrchr(s->http_name, ':');
        if (colon) snprintf(colon + 1, 8, "%d", ff__http_port(s->http));
    }
    return 0;
}

static void report_recovery(const ff_server *s, const ff_engine_recovery *r)
{
    if (s->opts.quiet) return;
    fprintf(stderr,
            "footfalld: recovered %u segments, then %llu events and %llu topology changes from "
            "%u log files (%llu events already sealed) in %.3f s\n",
            r->segments, (unsigned long long)r->events_replayed,
            (unsigned long long)r->topo_ops_replayed, r->log.files,
            (unsigned long long)r->events_skipped, r->seconds);
    if (r->log.cut_offset >= 0)
        fprintf(stderr, "footfalld: log tail cut: %s at offset %lld, %llu bytes (%s)\n",
                r->log.cut_file, (long long)r->log.cut_offset, (unsigned long long)r->log.cut_bytes,
                r->log.cut_reason);
}

static void server_stop_all(ff_server *s)
{
    if (s->http) ff__http_stop(s->http);
    s->http = NULL;
    sealer_stop(s); /* waits for the job in flight */
    uv_walk(s->loop, close_walk, s);
    uv_run(s->loop, UV_RUN_DEFAULT); /* also waits for the sync job in flight */
    FF_ASSERT(!s->sync_busy && !s->seal_job);
}

int ff_server_run(const ff_server_opts *o)
{
    ff_server *s = ff_xcalloc(1, sizeof(*s));
    s->opts = *o;
    s->udp_fd = -1;
    s->started_us = wall_us();
    s->loop = ff_xmalloc(sizeof(uv_loop_t));
    uv_loop_init(s->loop);
    uv_loop_configure(s->loop, UV_METRICS_IDLE_TIME); /* for on_watch */
    signal(SIGPIPE, SIG_IGN);
    if (o->engine.data_dir) mkdir(o->engine.data_dir, 0755);

    ff_engine_recovery rec;
    ff_engine_opts eo = o->engine;
    eo.seal_async = true; /* on the seal thread: see the top */
    eo.on_archived = ff__metrics_archived;
    eo.on_archived_ctx = s;
    int rc = ff_engine_open(&s->eng, &eo, &rec);
    if (rc < 0) {
        const char *why = rec.log.cut_reason[0] ? rec.log.cut_reason : rec.error;
        /* why names the file (log, segment, archive copy) and says what is wrong */
        fprintf(stderr, "footfalld: cannot start from data dir %s: %s\n", o->engine.data_dir,
                why[0] ? why : ff_strerror(rc));
        goto out_loop;
    }
    report_recovery(s, &rec);
    if (o->topology_file && (rc = apply_topology_file(s, o->topology_file)) < 0) goto out_engine;

    uv_prepare_init(s->loop, &s->commit);
    s->commit.data = s;
    uv_prepare_start(&s->commit, on_commit);
    uv_prepare_init(s->loop, &s->watch);
    s->watch.data = s;
    s->watch_at = uv_hrtime();
    uv_prepare_start(&s->watch, on_watch);
    uv_timer_init(s->loop, &s->tick);
    s->tick.data = s;
    uv_idle_init(s->loop, &s->seal_idle);
    s->seal_idle.data = s;
    uv_async_init(s->loop, &s->sealer_async, on_sealer_done);
    s->sealer_async.data = s;
    if ((rc = sealer_start(s)) < 0) {
        fprintf(stderr, "footfalld: cannot start the seal thread: %s\n", uv_strerror(rc));
        goto out_handles;
    }
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
    uv_timer_init(s->loop, &s->fsync_timer);
    s->fsync_timer.data = s;
    if (o->fsync_mode == FF_FSYNC_INTERVAL) {
        uint64_t ms = o->fsync_interval_ms > 0 ? (uint64_t)o->fsync_interval_ms : 1000;
        uv_timer_start(&s->fsync_timer, on_fsync_timer, ms, ms);
    }
    uv_signal_init(s->loop, &s->sigterm);
    uv_signal_init(s->loop, &s->sigint);
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);

    if ((rc = open_listeners(s)) < 0) goto out_handles;
    printf("footfalld: ready udp=%s tcp=%s http=%s\n", s->udp_on ? s->udp_name : "off",
           s->tcp_on ? s->tcp_name : "off", s->http ? s->http_name : "off");
    fflush(stdout);
    uv_run(s->loop, UV_RUN_DEFAULT);
    rc = s->final_rc; /* a failed final sync is a failed exit: not everything is durable */
out_handles:
    server_stop_all(s);
    if (rc == 0 && (rc = ff_engine_commit(s->eng)) < 0) /* only spares the next start work */
        fprintf(stderr, "footfalld: final checkpoint failed: %s\n", ff_strerror(rc)), rc = 0;
out_engine:
    ff_engine_close(s->eng);
out_loop:
    uv_loop_close(s->loop);
    free(s->loop);
    if (s->udp_fd >= 0) close(s->udp_fd);
    udp_rx_free(s->udp_rx);
    free(s->uacks);
    free(scratch_events);
    scratch_events = NULL;
    free(s);
    return rc;
}
