/*
 * query_time -- a year of history built in process, then the server-side time of the
 * occupancy queries of issue 4 (a 1-day / 15-minute counts query, count at T, current
 * count), without any network in the way.
 *
 *   query_time --data-dir DIR --build [--dpus N] [--spaces S] [--days D] [--per-dpu-day E]
 *   query_time --data-dir DIR [--queries Q] [--seed X]
 *
 * --build writes the history through the engine API (ff_engine_ingest), as footfalld
 * would store it, into an empty DIR: the topology of ff_load (DPU d = k + 1 over doorway
 * k % S + 1, entry space k % S + 1, exit space (k + 1) % S + 1, so every event counts
 * in two spaces), then D days ending at the start of today (UTC), E events per DPU and
 * day. The engine's clock is injected: it reads the newest timestamp written so far, so
 * the horizon moves through the year, rows settle and are sealed into segments and old
 * segments are merged exactly as on a live server, only faster. Within a day, events
 * follow an hourly shape (nights 0.1x, the 17:00 hour 5x, as ff_load's), pick their DPU
 * uniformly at random, and walk in (+1) with odds 0.7 before noon and 0.3 after it. The
 * engine is ticked after every batch of 4,096 events; at the end a checkpoint is written
 * and the engine closed, so footfalld --data-dir DIR opens the same history.
 *
 * Without --build, DIR is opened (the recovery time is printed) and Q queries of each
 * kind are timed one by one with CLOCK_MONOTONIC, each on a random space and day:
 *   engine:  ff_engine_counts (one day, 15 minutes: 96 buckets), ff_engine_count at a
 *            random T, ff_engine_count latest;
 *   cpu:     the two counts queries again, as this thread's CPU time
 *            (CLOCK_THREAD_CPUTIME_ID);
 *   handler: the same through ff__api_handle, the HTTP API's routing, argument parsing,
 *            engine call and JSON writing, as footfalld runs it per request, minus
 *            libmicrohttpd and the socket (net/server_int.h: a bench-only use of an
 *            internal header).
 * Output: "result key=value ..." on stdout (p50/p99/max in microseconds), then text.
 */
#include "engine/engine.h"
#include "net/server_int.h"
#include "net/timefmt.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH  4096
#define NKINDS 8 /* timed query kinds: see names[] in query() */

typedef struct opts {
    const char *dir;
    bool build;
    uint32_t dpus, spaces, days, per_dpu_day, queries;
    uint64_t seed;
} opts;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* This thread's CPU time: what a query costs without the waits for a CPU that the
 * wall clock also counts on a shared machine. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rng_state;
static uint64_t rnd(void) /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static uint64_t rnd_below(uint64_t n)
{
    return rnd() % n;
}

/* The engine's injected clock: the newest timestamp ingested so far. */
static int64_t sim_now;
static int64_t sim_clock(void *ctx)
{
    (void)ctx;
    return sim_now;
}

static const double shape[24] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3, 1.0, 2.0, 1.6, 1.2, 1.2,
                                 1.8, 1.6, 1.1, 1.1, 1.6, 5.0, 1.9, 0.9, 0.5, 0.3, 0.2, 0.1};

static int64_t today_midnight(void)
{
    return (int64_t)(time(NULL) / 86400) * FF_DAY;
}

static void die_rc(const char *what, int rc)
{
    fprintf(stderr, "query_time: %s: %s\n", what, ff_strerror(rc));
    exit(1);
}

static void open_engine(const opts *o, ff_engine **e, ff_engine_recovery *rep)
{
    ff_engine_opts eo;
    ff_engine_opts_default(&eo);
    eo.data_dir = o->dir;
    eo.clock = o->build ? sim_clock : NULL;
    int rc = ff_engine_open(e, &eo, rep);
    if (rc < 0) {
        fprintf(stderr, "query_time: open %s: %s %s\n", o->dir, ff_strerror(rc), rep->error);
        exit(1);
    }
}

static void build_topology(ff_engine *e, const opts *o)
{
    for (uint32_t s = 1; s <= o->spaces; s++) {
        ff_space_def sd = {.id = s};
        snprintf(sd.name, sizeof sd.name, "space-%u", s);
        ff_doorway_def dd = {.id = s};
        snprintf(dd.name, sizeof dd.name, "doorway-%u", s);
        int rc = ff_engine_space_put(e, &sd, NULL);
        if (rc >= 0) rc = ff_engine_doorway_put(e, &dd, NULL);
        if (rc < 0) die_rc("topology", rc);
    }
    for (uint32_t k = 0; k < o->dpus; k++) {
        ff_assignment a = {.doorway_id = k % o->spaces + 1,
                           .entry_space_id = k % o->spaces + 1,
                           .exit_space_id = (k + 1) % o->spaces + 1,
                           .effective_from = FF_TS_MIN};
        int rc = ff_engine_dpu_assign(e, k + 1, &a, false, NULL);
        if (rc < 0) die_rc("dpu", rc);
    }
    int rc = ff_engine_checkpoint(e);
    if (rc < 0) die_rc("checkpoint", rc);
}

static void flush(ff_engine *e, ff_event *buf, size_t *n, uint64_t *accepted)
{
    if (*n == 0) return;
    ff_ingest_result r;
    sim_now = buf[*n - 1].ts;
    int rc = ff_engine_ingest(e, buf, *n, NULL, &r);
    if (rc < 0) die_rc("ingest", rc);
    *accepted += r.accepted;
    *n = 0;
    ff_engine_tick(e);
}

/* One simulated day from t0: per hour, its share of the day's events at even steps
 * with a jitter below the step, so timestamps increase. */
static void build_day(ff_engine *e, const opts *o, int64_t t0, ff_event *buf, size_t *n,
                      uint64_t *accepted, uint16_t *seq)
{
    double total = 0;
    for (int h = 0; h < 24; h++) total += shape[h];
    double per_day = (double)o->dpus * o->per_dpu_day;
    for (int h = 0; h < 24; h++) {
        uint64_t cnt = (uint64_t)(per_day * shape[h] / total + 0.5);
        if (cnt == 0) continue;
        int64_t step = FF_HOUR / (int64_t)cnt;
        uint64_t in_pct = h < 12 ? 70 : 30;
        for (uint64_t i = 0; i < cnt; i++) {
            uint32_t k = (uint32_t)rnd_below(o->dpus);
            if (++seq[k] == 0) seq[k] = 1;
            buf[(*n)++] = (ff_event){.dpu_id = k + 1,
                                     .direction = rnd_below(100) < in_pct ? 1 : -1,
                                     .seq = seq[k],
                                     .ts = t0 + h * FF_HOUR + (int64_t)i * step +
                                           (int64_t)rnd_below((uint64_t)(step > 1 ? step : 1))};
            if (*n == BATCH) flush(e, buf, n, accepted);
        }
    }
}

static int build(const opts *o)
{
    ff_engine *e;
    ff_engine_recovery rep;
    int64_t start = today_midnight() - (int64_t)o->days * FF_DAY;
    sim_now = start;
    open_engine(o, &e, &rep);
    double t0 = now_s();
    build_topology(e, o);
    ff_event *buf = ff_xmalloc(sizeof(ff_event) * BATCH);
    uint16_t *seq = ff_xcalloc(o->dpus, sizeof(uint16_t));
    size_t n = 0;
    uint64_t accepted = 0;
    for (uint32_t d = 0; d < o->days; d++) {
        build_day(e, o, start + (int64_t)d * FF_DAY, buf, &n, &accepted, seq);
        if ((d + 1) % 30 == 0)
            fprintf(stderr, "query_time: day %u of %u, %llu events, %.0f s\n", d + 1, o->days,
                    (unsigned long long)accepted, now_s() - t0);
    }
    flush(e, buf, &n, &accepted);
    /* the last events settle, as they would after settle_delay on a server */
    sim_now += 10 * FF_MINUTE;
    ff_engine_tick(e);
    int rc = ff_engine_checkpoint(e);
    if (rc < 0) die_rc("checkpoint", rc);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    ff_engine_close(e);
    double secs = now_s() - t0;
    printf("result build=1 dpus=%u spaces=%u days=%u per_dpu_day=%u events=%llu seconds=%.1f "
           "events_per_s=%.0f segments=%u sealed_rows=%llu pending_row_bytes=%zu\n",
           o->dpus, o->spaces, o->days, o->per_dpu_day, (unsigned long long)accepted, secs,
           (double)accepted / secs, st.segments, (unsigned long long)st.sealed_rows,
           st.pending_row_bytes);
    free(buf);
    free(seq);
    return 0;
}

/* ---- Timing ---------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stat3 {
    double p50, p99, max;
} stat3;

static stat3 summarize(double *us, size_t n)
{
    qsort(us, n, sizeof(double), cmp_double);
    return (stat3){us[n / 2], us[(size_t)((double)n * 0.99)], us[n - 1]};
}

/* The query arguments of one handler call. */
typedef struct args {
    const char *k[3];
    const char *v[3];
} args;

static const char *arg_get(void *ctx, const char *name)
{
    const args *a = ctx;
    for (int i = 0; i < 3; i++)
        if (a->k[i] && strcmp(a->k[i], name) == 0) return a->v[i];
    return NULL;
}
static const char *no_header(void *ctx, const char *name)
{
    (void)ctx;
    (void)name;
    return NULL;
}

/* Times one handler call; exits if the answer is not a 200. */
static double handler_us(ff_server *s, const char *path, args *a, size_t *bytes)
{
    ff_api_req q = {.method = "GET", .path = path, .arg = arg_get, .header = no_header, .ctx = a};
    ff_api_reply r = {0};
    ff_buf_init(&r.body);
    double t = now_s();
    ff__api_handle(s, &q, &r);
    t = (now_s() - t) * 1e6;
    if (r.status != 200) {
        fprintf(stderr, "query_time: GET %s: status %u\n", path, r.status);
        exit(1);
    }
    *bytes = r.body.len;
    ff_buf_release(&r.body);
    return t;
}

typedef struct range {
    int64_t first_day; /* midnight of the first whole day of history */
    uint32_t days, spaces;
} range;

static int first_row(void *ctx, const ff_occ_row *w)
{
    *(int64_t *)ctx = w->ts;
    return 1;
}

/* The whole days between space 1's first event and the newest event. */
static range history_range(ff_engine *e)
{
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    range r = {.spaces = (uint32_t)ff_engine_space_count(e)};
    int64_t first = st.max_ts;
    ff_engine_rows(e, 1, FF_TS_MIN, FF_TS_MAX, NULL, first_row, &first);
    r.first_day = (first + FF_DAY - 1) / FF_DAY * FF_DAY;
    int64_t last = st.max_ts / FF_DAY * FF_DAY;
    r.days = last > r.first_day ? (uint32_t)((last - r.first_day) / FF_DAY) : 0;
    if (r.days == 0) {
        fprintf(stderr, "query_time: %s holds less than one whole day of history\n", "DIR");
        exit(1);
    }
    return r;
}

static void query(const opts *o)
{
    ff_engine *e;
    ff_engine_recovery rep;
    double t0 = now_s();
    open_engine(o, &e, &rep);
    double open_s = now_s() - t0;
    range hr = history_range(e);
    fprintf(stderr,
            "query_time: opened %s in %.3f s (%u segments, %llu log events replayed), %u "
            "spaces, %u days of history\n",
            o->dir, open_s, rep.segments, (unsigned long long)rep.events_replayed, hr.spaces,
            hr.days);
    static ff_server srv; /* what ff__api_handle reads: the engine, no token */
    srv.eng = e;
    size_t q = o->queries;
    double *t[NKINDS];
    for (int i = 0; i < NKINDS; i++) t[i] = ff_xmalloc(sizeof(double) * q);
    ff_bucket *bk = ff_xmalloc(sizeof(ff_bucket) * FF_MAX_BUCKETS);
    size_t bytes_counts = 0, bytes_count = 0, nb = 0;
    uint64_t rev, sink = 0;
    for (size_t i = 0; i < q; i++) {
        uint32_t sp = (uint32_t)rnd_below(hr.spaces) + 1;
        int64_t day = hr.first_day + (int64_t)rnd_below(hr.days) * FF_DAY;
        int64_t at = day + (int64_t)rnd_below((uint64_t)FF_DAY);
        double a = now_s();
        double ca = cpu_s();
        int rc = ff_engine_counts(e, sp, day, day + FF_DAY, 15 * FF_MINUTE, bk, &nb, &rev);
        t[6][i] = (cpu_s() - ca) * 1e6;
        t[0][i] = (now_s() - a) * 1e6;
        if (rc < 0 || nb != 96) die_rc("counts", rc < 0 ? rc : FF_EINVAL);
        sink += bk[95].entrances;
        ff_count c;
        a = now_s();
        rc = ff_engine_count(e, sp, true, at, &c);
        t[1][i] = (now_s() - a) * 1e6;
        if (rc < 0) die_rc("count at", rc);
        a = now_s();
        rc = ff_engine_count(e, sp, false, 0, &c);
        t[2][i] = (now_s() - a) * 1e6;
        if (rc < 0) die_rc("count", rc);
        sink += (uint64_t)c.occupancy;

        char path[64], s1[FF_TIME_STRLEN], s2[FF_TIME_STRLEN], s3[FF_TIME_STRLEN];
        ff_time_format(day, s1);
        ff_time_format(day + FF_DAY, s2);
        ff_time_format(at, s3);
        snprintf(path, sizeof path, "/v1/spaces/%u/counts", sp);
        args ac = {{"start", "end", "interval"}, {s1, s2, "15m"}};
        double ca2 = cpu_s();
        t[3][i] = handler_us(&srv, path, &ac, &bytes_counts);
        t[7][i] = (cpu_s() - ca2) * 1e6;
        snprintf(path, sizeof path, "/v1/spaces/%u/count", sp);
        args aa = {{"at", NULL, NULL}, {s3, NULL, NULL}};
        t[4][i] = handler_us(&srv, path, &aa, &bytes_count);
        args al = {{NULL, NULL, NULL}, {NULL, NULL, NULL}};
        t[5][i] = handler_us(&srv, path, &al, &bytes_count);
    }
    static const char *names[NKINDS] = {"engine_counts_1d15m",     "engine_count_at",
                                        "engine_count_now",        "handler_counts_1d15m",
                                        "handler_count_at",        "handler_count_now",
                                        "engine_counts_1d15m_cpu", "handler_counts_1d15m_cpu"};
    stat3 s[NKINDS];
    for (int i = 0; i < NKINDS; i++) s[i] = summarize(t[i], q);
    printf("result queries=%zu open_s=%.3f spaces=%u days=%u first_day_s=%lld", q, open_s,
           hr.spaces, hr.days, (long long)(hr.first_day / FF_SECOND));
    for (int i = 0; i < NKINDS; i++)
        printf(" %s_p50_us=%.2f %s_p99_us=%.2f %s_max_us=%.2f", names[i], s[i].p50, names[i],
               s[i].p99, names[i], s[i].max);
    printf(" counts_json_bytes=%zu\n", bytes_counts);
    for (int i = 0; i < NKINDS; i++)
        printf("%-22s p50 %8.2f us  p99 %8.2f us  max %8.2f us\n", names[i], s[i].p50, s[i].p99,
               s[i].max);
    fprintf(stderr, "(checksum %llu)\n", (unsigned long long)sink);
    for (int i = 0; i < NKINDS; i++) free(t[i]);
    free(bk);
    ff_engine_close(e);
}

static void usage(FILE *f)
{
    fputs("usage: query_time --data-dir DIR --build [--dpus N (2000)] [--spaces S (1000)]\n"
          "                  [--days D (365)] [--per-dpu-day E (100)]\n"
          "       query_time --data-dir DIR [--queries Q (2000)] [--seed X]\n"
          "Builds a history in DIR through the engine API with an injected clock, or times\n"
          "the counts/count queries on it in process (engine, and the HTTP API handler).\n",
          f);
}

int main(int argc, char **argv)
{
    opts o = {
        .dpus = 2000, .spaces = 1000, .days = 365, .per_dpu_day = 100, .queries = 2000, .seed = 42};
    static const struct option lo[] = {
        {"data-dir", required_argument, 0, 'd'}, {"build", no_argument, 0, 'b'},
        {"dpus", required_argument, 0, 'n'},     {"spaces", required_argument, 0, 's'},
        {"days", required_argument, 0, 'D'},     {"per-dpu-day", required_argument, 0, 'e'},
        {"queries", required_argument, 0, 'q'},  {"seed", required_argument, 0, 'x'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.dir = optarg;
            break;
        case 'b':
            o.build = true;
            break;
        case 'n':
            o.dpus = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 's':
            o.spaces = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'D':
            o.days = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'e':
            o.per_dpu_day = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'q':
            o.queries = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'x':
            o.seed = strtoull(optarg, NULL, 10);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!o.dir || o.dpus == 0 || o.spaces < 2 || o.days == 0 || o.queries == 0) {
        usage(stderr);
        return 2;
    }
    rng_state = o.seed | 1;
    if (o.build) return build(&o);
    query(&o);
    return 0;
}
