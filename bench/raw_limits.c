/*
 * raw_limits -- the physical limits of this machine, measured in the same run as the
 * footfall figures they bound (issue 4, item 2). No footfall code is on these paths.
 *
 *   1. Loopback UDP: one sender thread runs sendmmsg (64 datagrams per call) at a
 *      receiver thread's socket, which drains it with recvmmsg (64 per call). Every
 *      datagram is a footfall-sized frame: a 16-byte header and 64 records of 16 bytes
 *      (1040 bytes). The figure is what the receiver got per second (the sender runs
 *      faster and the kernel drops the rest), as datagrams/s and records/s (x64).
 *      The receiver's buffer is asked for 32 MiB (capped by net.core.rmem_max).
 *   2. mmap append: a preallocated file (fallocate) of --records 16-byte records is
 *      mapped MAP_SHARED and written front to back, one record at a time, as the log
 *      does; records/s without any sync, then including a final msync(MS_SYNC).
 *   3. fdatasync: 8 KiB pwrite + fdatasync, --syncs times; the median and p99.
 *   4. (--gated S) the floor under an ack that waits for durability: a writer appends
 *      4 KiB every 0.7 ms (5.9 MB/s, the log of 10 M DPUs at their peak hour, 370,000
 *      events/s) for S seconds, while sync threads loop on "note the written end,
 *      fdatasync, publish it as durable"; each append's latency is the time until a
 *      published end covers it. Run with one sync thread, then two (a second sync
 *      started while the first is slow can only help if the disk completes them out of
 *      order), into a file preallocated with fallocate as footfall's log files are;
 *      then with one sync thread into a file written with zeros first, whose blocks are
 *      overwritten instead of converted from unwritten extents (through the journal)
 *      at their first sync. No footfall code: what any fsync-per-ack server gets from
 *      this disk.
 *   5. (--stalls S) the machine's own pauses: one thread per CPU, pinned, reads the
 *      monotonic clock in a loop for S seconds; a gap of 1 ms or more between two reads
 *      is time its CPU did not run it (an interrupt, another task, or, in a VM, the
 *      host not running the vCPU). Run on an otherwise idle machine, it shows how often
 *      any thread here stalls for that long, whatever the server does: a floor under
 *      every latency percentile. The gaps per second of 1 ms and 5 ms or more, the
 *      share of time lost in them, and the longest.
 *
 * Usage: raw_limits [--seconds S] [--dir DIR] [--records N] [--syncs N] [--gated S]
 *                   [--stalls S]
 * The files go to DIR (default: the current directory; put it on the server's data
 * disk) and are removed. Output: one "raw key=value ..." line, then the same as text;
 * with --gated, one more "raw gated_..." line and its text per run (three); with
 * --stalls, one "raw stalls_..." line and its text.
 * Exit status 1 when the gated or stalls measurement failed (the others print their error and
 * report 0).
 */
#include "engine/ff.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define DGRAM_RECORDS 64
#define DGRAM_BYTES   (16 + 16 * DGRAM_RECORDS)
#define MMSG          64

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- 1. loopback UDP --------------------------------------------------------------------- */

typedef struct udp_bench {
    int rx, tx;
    atomic_bool stop, counting;
    uint64_t received, sent;
} udp_bench;

static void *receiver(void *arg)
{
    udp_bench *u = arg;
    static uint8_t buf[MMSG][2048];
    struct mmsghdr mm[MMSG];
    struct iovec iov[MMSG];
    for (int i = 0; i < MMSG; i++) {
        iov[i] = (struct iovec){buf[i], sizeof buf[i]};
        memset(&mm[i], 0, sizeof mm[i]);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    struct timespec to = {0, 100000000};
    while (!atomic_load(&u->stop)) {
        int r = recvmmsg(u->rx, mm, MMSG, MSG_WAITFORONE, &to);
        if (r > 0 && atomic_load_explicit(&u->counting, memory_order_relaxed))
            u->received += (uint64_t)r;
    }
    return NULL;
}

static void *sender(void *arg)
{
    udp_bench *u = arg;
    static uint8_t buf[MMSG][DGRAM_BYTES];
    struct mmsghdr mm[MMSG];
    struct iovec iov[MMSG];
    for (int i = 0; i < MMSG; i++) {
        memcpy(buf[i], "FFE1", 4);
        buf[i][4] = DGRAM_RECORDS;
        iov[i] = (struct iovec){buf[i], DGRAM_BYTES};
        memset(&mm[i], 0, sizeof mm[i]);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    while (!atomic_load(&u->stop)) {
        int r = sendmmsg(u->tx, mm, MMSG, 0);
        if (r > 0 && atomic_load_explicit(&u->counting, memory_order_relaxed))
            u->sent += (uint64_t)r;
    }
    return NULL;
}

static int udp_pair(udp_bench *u)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    u->rx = socket(AF_INET, SOCK_DGRAM, 0);
    u->tx = socket(AF_INET, SOCK_DGRAM, 0);
    if (u->rx < 0 || u->tx < 0) return -errno;
    int sz = 32 << 20;
    setsockopt(u->rx, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(u->tx, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    /* recvmmsg's own timeout is checked only after a datagram arrives: without this the
     * receiver could wait forever once the sender has stopped */
    struct timeval tv = {0, 100000};
    setsockopt(u->rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (bind(u->rx, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(u->rx, (struct sockaddr *)&a, &len) < 0 ||
        connect(u->tx, (struct sockaddr *)&a, sizeof a) < 0)
        return -errno;
    return 0;
}

/* Runs sender and receiver for `seconds` after a 0.3 s warm-up; fills dgram/s. */
static int bench_udp(double seconds, double *rx_per_s, double *tx_per_s)
{
    udp_bench u;
    memset(&u, 0, sizeof u);
    int rc = udp_pair(&u);
    if (rc < 0) return rc;
    pthread_t r, s;
    pthread_create(&r, NULL, receiver, &u);
    pthread_create(&s, NULL, sender, &u);
    usleep(300000);
    atomic_store(&u.counting, true);
    double t0 = now_s();
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&u.counting, false);
    double t1 = now_s();
    atomic_store(&u.stop, true);
    pthread_join(s, NULL);
    pthread_join(r, NULL);
    close(u.rx);
    close(u.tx);
    *rx_per_s = (double)u.received / (t1 - t0);
    *tx_per_s = (double)u.sent / (t1 - t0);
    return 0;
}

/* ---- 2. mmap append ---------------------------------------------------------------------- */

static int bench_mmap(const char *dir, uint64_t records, double *rate, double *rate_sync)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/raw_limits.%d.tmp", dir, (int)getpid());
    size_t bytes = (size_t)records * sizeof(ff_event);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -errno;
    int rc = 0;
    if (fallocate(fd, 0, 0, (off_t)bytes) < 0) {
        rc = -errno;
        goto out_close;
    }
    ff_event *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        goto out_close;
    }
    double t0 = now_s();
    ff_event e = {.dpu_id = 1, .direction = 1, .ts = 1700000000000000};
    for (uint64_t i = 0; i < records; i++) {
        e.dpu_id = (uint32_t)(i * 2654435761u);
        e.seq = (uint16_t)i;
        e.ts += 17;
        map[i] = e;
    }
    double t1 = now_s();
    if (msync(map, bytes, MS_SYNC) < 0) rc = -errno;
    double t2 = now_s();
    *rate = (double)records / (t1 - t0);
    *rate_sync = (double)records / (t2 - t0);
    munmap(map, bytes);
out_close:
    close(fd);
    unlink(path);
    return rc;
}

/* ---- 3. fdatasync of 8 KiB --------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench_fdatasync(const char *dir, int n, double *p50_us, double *p99_us)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/raw_limits_sync.%d.tmp", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -errno;
    static uint8_t block[8192];
    memset(block, 0x5a, sizeof block);
    double *t = ff_xmalloc(sizeof(double) * (size_t)n);
    int rc = 0;
    if (fallocate(fd, 0, 0, (off_t)sizeof block * n) < 0) rc = -errno;
    for (int i = 0; i < n && rc == 0; i++) {
        double t0 = now_s();
        if (pwrite(fd, block, sizeof block, (off_t)sizeof block * i) != (ssize_t)sizeof block ||
            fdatasync(fd) < 0)
            rc = -errno;
        t[i] = (now_s() - t0) * 1e6;
    }
    if (rc == 0) {
        qsort(t, (size_t)n, sizeof(double), cmp_double);
        *p50_us = t[n / 2];
        *p99_us = t[(n * 99) / 100];
    }
    free(t);
    close(fd);
    unlink(path);
    return rc;
}

/* ---- 5. stalls ---------------------------------------------------------------------- */

typedef struct stall_probe {
    pthread_t th;
    int cpu;
    double seconds;
    uint64_t over1, over5; /* gaps of >= 1 ms, >= 5 ms */
    double lost, max;      /* seconds in gaps >= 1 ms; the longest gap */
    bool unpinned;
} stall_probe;

static void *stall_spin(void *arg)
{
    stall_probe *p = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set)) {
        p->unpinned = true; /* two probes on one CPU would count each other's slices */
        return NULL;
    }
    double t0 = now_s(), prev = t0;
    while (prev - t0 < p->seconds) {
        double t = now_s(), gap = t - prev;
        if (gap >= 1e-3) {
            p->over1++;
            p->over5 += gap >= 5e-3;
            p->lost += gap;
            if (gap > p->max) p->max = gap;
        }
        prev = t;
    }
    return NULL;
}

/* Sums the probes of every CPU this process may run on into out; returns the number of
 * CPUs, or -errno. */
static int bench_stalls(double seconds, stall_probe *out)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed)) return -errno;
    int ncpu = CPU_COUNT(&allowed);
    stall_probe *p = ff_xcalloc((size_t)ncpu, sizeof(*p));
    int started = 0, rc = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && started < ncpu; cpu++) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        p[started] = (stall_probe){.cpu = cpu, .seconds = seconds};
        if (pthread_create(&p[started].th, NULL, stall_spin, &p[started])) {
            rc = -EAGAIN;
            break;
        }
        started++;
    }
    *out = (stall_probe){.seconds = seconds};
    for (int i = 0; i < started; i++) {
        pthread_join(p[i].th, NULL);
        if (p[i].unpinned && rc == 0) rc = -EINVAL;
        out->over1 += p[i].over1;
        out->over5 += p[i].over5;
        out->lost += p[i].lost;
        if (p[i].max > out->max) out->max = p[i].max;
    }
    free(p);
    return rc < 0 ? rc : started;
}

/* ---- 4. durability-gated appends ----------------------------------------------------- */

#define GATED_BLOCK    4096
#define GATED_EVERY_US 700

typedef struct gated {
    int fd;
    atomic_llong written, durable; /* bytes */
    atomic_int err;                /* a sync thread's failed fdatasync */
    atomic_bool stop;
    int stagger_us;
} gated;

static void *gated_syncer(void *arg)
{
    gated *g = arg;
    if (g->stagger_us) usleep((useconds_t)g->stagger_us);
    while (!atomic_load(&g->stop)) {
        long long w = atomic_load(&g->written), d = atomic_load(&g->durable);
        if (w <= d) {
            usleep(50);
            continue;
        }
        if (fdatasync(g->fd) < 0) {
            atomic_store(&g->err, -errno);
            break;
        }
        while (w > d && !atomic_compare_exchange_weak(&g->durable, &d, w)) {
        }
    }
    return NULL;
}

/* Appends for `seconds` with nsync sync threads; the p50/p99/max append-to-durable. */
static int bench_gated(const char *dir, double seconds, int nsync, bool written, double out_us[3])
{
    char path[4096];
    snprintf(path, sizeof path, "%s/raw_limits_gated.%d.tmp", dir, (int)getpid());
    size_t cap = (size_t)(seconds * 1e6 / GATED_EVERY_US) + 16;
    off_t bytes = (off_t)cap * GATED_BLOCK;
    gated g = {.fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), .stagger_us = 300};
    if (g.fd < 0) return -errno;
    int rc = 0;
    static uint8_t block[GATED_BLOCK];
    memset(block, 0, sizeof block); /* static: an earlier run left its pattern in it */
    for (off_t o = 0; written && rc == 0 && o < bytes; o += GATED_BLOCK) /* zeros */
        if (pwrite(g.fd, block, sizeof block, o) != (ssize_t)sizeof block)
            rc = errno ? -errno : -EIO;
    if (rc == 0 && ((!written && fallocate(g.fd, 0, 0, bytes) < 0) || fsync(g.fd) < 0)) rc = -errno;
    double *at = ff_xmalloc(cap * sizeof(double)), *lat = ff_xmalloc(cap * sizeof(double));
    memset(block, 0x5a, sizeof block);
    pthread_t th[2];
    int started = 0;
    while (rc == 0 && started < nsync)
        if (pthread_create(&th[started], NULL, gated_syncer, &g))
            rc = -EAGAIN;
        else
            started++;
    size_t n = 0, done = 0;
    double t0 = now_s(), next = t0;
    while (rc == 0 && n < cap && now_s() - t0 < seconds && !(rc = atomic_load(&g.err))) {
        if (pwrite(g.fd, block, sizeof block, (off_t)n * GATED_BLOCK) != (ssize_t)sizeof block) {
            rc = -errno;
            break;
        }
        at[n++] = now_s();
        atomic_store(&g.written, (long long)n * GATED_BLOCK);
        next += GATED_EVERY_US / 1e6;
        while (now_s() < next) { /* watch for covered appends while waiting */
            long long d = atomic_load(&g.durable);
            double t = now_s();
            for (; done < n && (long long)(done + 1) * GATED_BLOCK <= d; done++)
                lat[done] = (t - at[done]) * 1e6;
            usleep(20);
        }
    }
    while (rc == 0 && done < n && !(rc = atomic_load(&g.err))) {
        long long d = atomic_load(&g.durable);
        double t = now_s();
        for (; done < n && (long long)(done + 1) * GATED_BLOCK <= d; done++)
            lat[done] = (t - at[done]) * 1e6;
        usleep(20);
    }
    atomic_store(&g.stop, true);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    if (rc == 0 && n) {
        qsort(lat, n, sizeof(double), cmp_double);
        out_us[0] = lat[n / 2], out_us[1] = lat[n * 99 / 100], out_us[2] = lat[n - 1];
    }
    free(at);
    free(lat);
    close(g.fd);
    unlink(path);
    return rc;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    const char *dir = ".";
    uint64_t records = 32u << 20;
    int syncs = 200;
    double gated_s = 0, stalls_s = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--records") && i + 1 < argc)
            records = strtoull(argv[++i], 0, 10);
        else if (!strcmp(argv[i], "--syncs") && i + 1 < argc)
            syncs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gated") && i + 1 < argc)
            gated_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--stalls") && i + 1 < argc)
            stalls_s = atof(argv[++i]);
        else {
            fputs("usage: raw_limits [--seconds S] [--dir DIR] [--records N] [--syncs N] "
                  "[--gated S] [--stalls S]\n",
                  strcmp(argv[i], "--help") ? stderr : stdout);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (seconds <= 0 || records == 0 || syncs <= 0 || gated_s < 0 || stalls_s < 0)
        return fputs("raw_limits: bad value\n", stderr), 2;
    double rx = 0, tx = 0, mm = 0, mms = 0, s50 = 0, s99 = 0;
    int rc = bench_udp(seconds, &rx, &tx);
    if (rc < 0) fprintf(stderr, "raw_limits: udp: %s\n", ff_strerror(rc));
    rc = bench_mmap(dir, records, &mm, &mms);
    if (rc < 0) fprintf(stderr, "raw_limits: mmap in %s: %s\n", dir, ff_strerror(rc));
    rc = bench_fdatasync(dir, syncs, &s50, &s99);
    if (rc < 0) fprintf(stderr, "raw_limits: fdatasync in %s: %s\n", dir, ff_strerror(rc));
    printf("raw udp_dgram_s=%.0f udp_records_s=%.0f udp_sent_dgram_s=%.0f mmap_records_s=%.0f "
           "mmap_msync_records_s=%.0f fdatasync_8k_p50_us=%.1f fdatasync_8k_p99_us=%.1f\n",
           rx, rx * DGRAM_RECORDS, tx, mm, mms, s50, s99);
    printf(
        "loopback UDP sendmmsg -> recvmmsg, %d records (%d bytes) per datagram: %.0f datagrams/s "
        "received = %.1f M records/s (sender pushed %.0f/s)\n",
        DGRAM_RECORDS, DGRAM_BYTES, rx, rx * DGRAM_RECORDS / 1e6, tx);
    printf("mmap append of %llu 16-byte records: %.1f M records/s, %.1f M/s with the final msync\n",
           (unsigned long long)records, mm / 1e6, mms / 1e6);
    printf("8 KiB pwrite + fdatasync: p50 %.0f us, p99 %.0f us (%d runs)\n", s50, s99, syncs);
    int status = 0;
    for (int run = 0; gated_s > 0 && run < 3; run++) {
        int k = run == 1 ? 2 : 1; /* sync threads */
        bool written = run == 2;
        double g[3] = {0, 0, 0};
        rc = bench_gated(dir, gated_s, k, written, g);
        if (rc < 0) {
            fprintf(stderr, "raw_limits: gated appends in %s: %s\n", dir, ff_strerror(rc));
            status = 1;
            continue;
        }
        printf("raw gated_syncers=%d gated_file=%s gated_p50_us=%.0f gated_p99_us=%.0f "
               "gated_max_us=%.0f\n",
               k, written ? "written" : "fallocated", g[0], g[1], g[2]);
        printf("4 KiB appends every %d us, each waiting for a covering fdatasync, %d sync "
               "thread%s, %s file: p50 %.0f us, p99 %.0f us, max %.0f us\n",
               GATED_EVERY_US, k, k > 1 ? "s" : "", written ? "zero-written" : "fallocated", g[0],
               g[1], g[2]);
    }
    if (stalls_s > 0) {
        stall_probe st = {0};
        int ncpu = bench_stalls(stalls_s, &st);
        if (ncpu < 0) {
            fprintf(stderr, "raw_limits: stalls: %s\n",
                    ncpu == -EINVAL ? "a probe thread could not be pinned to its CPU"
                                    : ff_strerror(ncpu));
            return 1;
        }
        double cpu_s = stalls_s * ncpu;
        printf("raw stalls_cpus=%d stalls_1ms_per_s=%.2f stalls_5ms_per_s=%.3f "
               "stalls_lost_pct=%.3f stalls_max_us=%.0f\n",
               ncpu, (double)st.over1 / cpu_s, (double)st.over5 / cpu_s, 100 * st.lost / cpu_s,
               st.max * 1e6);
        printf("a thread per CPU spinning on the clock, %d CPUs x %g s: %.2f gaps of 1 ms or "
               "more per CPU-second, %.3f of 5 ms or more, %.3f %% of the time lost in them, "
               "the longest %.1f ms\n",
               ncpu, stalls_s, (double)st.over1 / cpu_s, (double)st.over5 / cpu_s,
               100 * st.lost / cpu_s, st.max * 1e3);
    }
    return status;
}
