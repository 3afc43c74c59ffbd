/*
 * ingest -- the engine's per-event ingest path in process: how many events a second
 * does ff_engine_ingest admit and count when every event misses the cache?
 *
 * No network: the engine (engine/engine.h) is driven directly, the way footfalld's loop
 * drives it, with footfalld's defaults (settle 5m, seal-lag 5m, seal-rows 1,048,576,
 * seal jobs through ff_engine_seal_begin/run/end, its malloc tuning) and a data
 * directory, so every batch is written to the log.
 *
 * The site is ff_load's (bench/ff_load.c): DPUs 1..N, spaces 1..S (default N/2), DPU d
 * (k = d - 1) between entry space k % S + 1 and exit space (k + 1) % S + 1, so every
 * event makes two rows. The load: batches of --batch events (64, one datagram of
 * ff_load's) from uniformly random DPUs, direction +1/-1 with equal odds, the DPU's next
 * seq, timestamps increasing by 1e6 / --rate us per event (simulated time; the pending
 * window then holds about 2 x rate x 300 rows). The engine's clock is the newest
 * timestamp, so nothing is refused as future and H follows max_ts - settle.
 * --out-of-order F moves a fraction F of the timestamps back by up to 60 s (still
 * pending: the insert path instead of the append).
 *
 * Each round generates its events first (not timed), then ingests them as footfalld's
 * loop would with --fsync always: a log sync job (ff_engine_sync_begin/run/end) is
 * always in flight, the next one beginning as soon as the last one ended; every 100 ms
 * of wall time (footfalld's TICK_MS) the engine ticks and a seal job begins if one is
 * due. The jobs' run steps (msync; encode, write, fsync) run on a second thread, as on
 * footfalld's thread pool (--fsync never: no sync jobs, as footfalld --fsync never;
 * --no-seal: no seals, the settled rows stay in memory -- both make A/B comparisons of
 * the ingest path on a shared 2-core machine less noisy). Timed:
 * everything on the engine's thread. Output per round: events/s, ns/event (wall, CPU time of the
 * engine's thread, inside ff_engine_ingest), then "result key=value ..." with medians over the
 * rounds.
 *
 * Checks (exit status 1 if one fails): the outcome counts (everything accepted); every
 * space's latest occupancy and row count equal the bench's own fold of the deltas it
 * generated; --check-invariants also runs ff_engine_check. --wrong-on-purpose adds one
 * to one space's expected occupancy: the check must then fail (a test of the test).
 */
#include "engine/engine.h"

#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define START_US   ((int64_t)1767571200 * FF_SECOND) /* 2026-01-05T00:00:00Z */
#define TICK_NS    100000000                         /* footfalld's TICK_MS */
#define MAX_ROUNDS 64

typedef struct opts {
    uint64_t dpus, spaces, events, rate, seed;
    unsigned rounds, batch;
    double ooo;
    bool check_invariants, wrong, no_sync, no_seal;
} opts;

/* ---- random numbers (splitmix64), clocks ------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rnd() * n) >> 64);
}

static int64_t clock_ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The engine's clock: the newest timestamp generated so far. */
static int64_t sim_now;
static int64_t sim_clock(void *ctx)
{
    (void)ctx;
    return sim_now;
}

/* ---- footfalld's thread pool: one job at a time per worker -------------------------- */

typedef struct worker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int (*fn)(void *arg); /* the job; NULL when idle */
    void *arg;
    bool busy, done, quit; /* busy: from post until collected */
    int rc;
} worker;

static void *worker_main(void *p)
{
    worker *w = p;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->fn && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit) break;
        int (*fn)(void *) = w->fn;
        pthread_mutex_unlock(&w->mu);
        int rc = fn(w->arg);
        pthread_mutex_lock(&w->mu);
        w->rc = rc;
        w->fn = NULL;
        __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void worker_start(worker *w, const char *name)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->th, NULL, worker_main, w)) abort();
    pthread_setname_np(w->th, name); /* for perf report --comm */
}

static void worker_post(worker *w, int (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&w->mu);
    w->fn = fn;
    w->arg = arg;
    w->busy = true;
    w->done = false;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Whether the posted job has ended (then *rc is its result); wait: until it has. */
static bool worker_collect(worker *w, bool wait, int *rc)
{
    if (!w->busy) return false;
    if (!wait && !__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) return false;
    pthread_mutex_lock(&w->mu);
    while (wait && w->fn) {
        pthread_mutex_unlock(&w->mu);
        sched_yield();
        pthread_mutex_lock(&w->mu);
    }
    *rc = w->rc;
    w->busy = false;
    pthread_mutex_unlock(&w->mu);
    return true;
}

static void worker_stop(worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static int sync_run(void *job)
{
    return ff_engine_sync_run(job);
}

static int seal_run(void *job)
{
    return ff_engine_seal_run(job);
}

/* ---- the site and the truth ---------------------------------------------------------- */

typedef struct bench {
    const opts *o;
    ff_engine *e;
    uint64_t nspaces;
    uint16_t *seq;   /* by DPU id - 1 */
    int64_t *occ;    /* by space id: the bench's fold of its own deltas */
    uint64_t *nrows; /* by space id */
    int64_t ts;      /* timestamp of the next in-order event */
    worker syncer, sealer;
    ff_log_sync_job sync_job;
    ff_seal_job *seal_job;
    uint64_t syncs, seals;
    uint64_t accepted, refused, other;
} bench;

static void dpu_spaces(const bench *b, uint32_t d, uint32_t *entry, uint32_t *exit)
{
    uint64_t k = d - 1;
    *entry = (uint32_t)(k % b->nspaces + 1);
    *exit = (uint32_t)((k + 1) % b->nspaces + 1);
}

static int build_topology(bench *b)
{
    for (uint64_t i = 1; i <= b->nspaces; i++) {
        ff_space_def s = {.id = (uint32_t)i};
        ff_doorway_def d = {.id = (uint32_t)i};
        snprintf(s.name, sizeof s.name, "S%" PRIu64, i);
        snprintf(d.name, sizeof d.name, "D%" PRIu64, i);
        int rc = ff_engine_space_put(b->e, &s, NULL);
        if (rc == 0) rc = ff_engine_doorway_put(b->e, &d, NULL);
        if (rc < 0) return rc;
    }
    for (uint64_t i = 1; i <= b->o->dpus; i++) {
        ff_assignment a = {.doorway_id = (uint32_t)((i - 1) % b->nspaces + 1),
                           .effective_from = FF_TS_MIN};
        dpu_spaces(b, (uint32_t)i, &a.entry_space_id, &a.exit_space_id);
        int rc = ff_engine_dpu_assign(b->e, (uint32_t)i, &a, false, NULL);
        if (rc < 0) return rc;
    }
    return ff_engine_checkpoint(b->e); /* as footfalld does after --topology */
}

/* Fills ev[0..n) with the round's events and folds them into the truth. */
static void generate(bench *b, ff_event *ev, uint64_t n)
{
    int64_t step = (int64_t)(FF_SECOND / b->o->rate);
    if (step < 1) step = 1;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t d = (uint32_t)rnd_below(b->o->dpus);
        uint16_t s = ++b->seq[d];
        if (s == 0) s = b->seq[d] = 1;
        ev[i] =
            (ff_event){.dpu_id = d + 1, .direction = (rnd() & 1) ? 1 : -1, .seq = s, .ts = b->ts};
        if (b->o->ooo > 0 && (double)(rnd() >> 11) * 0x1.0p-53 < b->o->ooo)
            ev[i].ts -= 1 + (int64_t)rnd_below(60 * FF_SECOND);
        b->ts += step;
        uint32_t en, ex;
        dpu_spaces(b, d + 1, &en, &ex);
        b->occ[en] += ev[i].direction;
        b->occ[ex] -= ev[i].direction;
        b->nrows[en]++;
        b->nrows[ex]++;
    }
}

/* ---- one round ----------------------------------------------------------------------- */

/* Ends the sync job if it has ended (wait: waits for it), and begins the next one
 * (unless wait) if anything was written since: footfalld's group commit. */
static int sync_step(bench *b, bool wait)
{
    int rc;
    if (worker_collect(&b->syncer, wait, &rc)) {
        rc = ff_engine_sync_end(b->e, &b->sync_job, rc);
        b->syncs++;
        if (rc < 0) return rc;
    }
    if (wait || b->o->no_sync || b->syncer.busy ||
        ff_engine_written(b->e) <= ff_engine_durable(b->e))
        return 0;
    rc = ff_engine_sync_begin(b->e, &b->sync_job);
    if (rc == 1) worker_post(&b->syncer, sync_run, &b->sync_job);
    return rc < 0 ? rc : 0;
}

/* footfalld's seal_step: ends the seal job if it has ended (wait: waits for it), and
 * unless wait takes the next step of a seal's capture or commit, posting the job once
 * ff_engine_seal_begin hands it over. */
static int seal_step(bench *b, bool wait)
{
    int rc = 0;
    if (worker_collect(&b->sealer, wait, &rc)) {
        rc = ff_engine_seal_end(b->e, b->seal_job, rc);
        b->seal_job = NULL;
        if (rc < 0) return rc;
    }
    if (wait || b->sealer.busy) return 0;
    if (ff_engine_seal_begin(b->e, &b->seal_job) == 1) {
        b->seals++;
        worker_post(&b->sealer, seal_run, b->seal_job);
    }
    return 0;
}

/* The tick, then footfalld's on_tick: a seal step. */
static int tick(bench *b, bool wait)
{
    if (!wait) ff_engine_tick(b->e);
    return seal_step(b, wait);
}

typedef struct round_fig {
    double wall_ns, cpu_ns, ingest_ns; /* per event */
    double ev_s;
} round_fig;

static int run_round(bench *b, const ff_event *ev, uint64_t n, round_fig *f)
{
    uint32_t batch = b->o->batch;
    uint8_t out[4096];
    int64_t ingest = 0;
    int64_t w0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    int64_t next_tick = w0 + TICK_NS;
    int rc = 0;
    for (uint64_t i = 0; i < n && rc == 0; i += batch) {
        size_t k = n - i < batch ? (size_t)(n - i) : batch;
        sim_now = ev[i + k - 1].ts > sim_now ? ev[i + k - 1].ts : sim_now;
        int64_t t0 = clock_ns(CLOCK_MONOTONIC);
        ff_ingest_result r;
        rc = ff_engine_ingest(b->e, ev + i, k, out, &r);
        int64_t t1 = clock_ns(CLOCK_MONOTONIC);
        ingest += t1 - t0;
        b->accepted += r.accepted;
        b->refused += r.refused;
        b->other += r.duplicates + r.late;
        if (rc == 0) rc = sync_step(b, false);
        /* footfalld steps a seal's capture every loop turn while there is one */
        if (rc == 0 && (b->sealer.busy || ff_engine_seal_stepping(b->e))) rc = seal_step(b, false);
        if (rc == 0 && t1 >= next_tick) {
            rc = tick(b, false);
            next_tick = t1 + TICK_NS;
        }
    }
    if (rc == 0) rc = tick(b, false); /* so that short runs (the tests) settle and seal too */
    if (rc < 0) return rc;
    int64_t wall = clock_ns(CLOCK_MONOTONIC) - w0;
    int64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    f->wall_ns = (double)wall / (double)n;
    f->cpu_ns = (double)cpu / (double)n;
    f->ingest_ns = (double)ingest / (double)n;
    f->ev_s = (double)n * 1e9 / (double)wall;
    return 0;
}

/* ---- checks -------------------------------------------------------------------------- */

static int verify(bench *b)
{
    uint64_t failed = 0;
    char first[256] = "";
    uint64_t made = b->o->events * b->o->rounds;
    if (b->accepted != made || b->refused || b->other) {
        snprintf(first, sizeof first,
                 "outcomes: accepted %" PRIu64 " (want %" PRIu64 "), refused %" PRIu64
                 ", duplicate or late %" PRIu64,
                 b->accepted, made, b->refused, b->other);
        failed++;
    }
    if (b->o->wrong) b->occ[b->nspaces / 2 + 1]++; /* a control: the check must fail */
    for (uint64_t id = 1; id <= b->nspaces; id++) {
        ff_space_info si;
        int rc = ff_engine_space_get(b->e, (uint32_t)id, &si);
        if (rc == 0 && si.occupancy == b->occ[id] && si.rows == b->nrows[id]) continue;
        if (!failed++)
            snprintf(first, sizeof first,
                     "space %" PRIu64 ": occupancy %" PRId64 " (want %" PRId64 "), rows %" PRIu64
                     " (want %" PRIu64 ")%s",
                     id, si.occupancy, b->occ[id], si.rows, b->nrows[id], rc ? " (not found)" : "");
    }
    if (b->o->check_invariants) ff_engine_check(b->e);
    if (failed) {
        printf("check FAILED: %" PRIu64 " wrong; first: %s\n", failed, first);
        return 1;
    }
    printf("check ok: %" PRIu64 " events accepted; the occupancy and row count of all %" PRIu64
           " spaces equal the bench's fold%s\n",
           made, b->nspaces, b->o->check_invariants ? "; invariants hold" : "");
    return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const round_fig *f, unsigned n, size_t off)
{
    double v[MAX_ROUNDS];
    for (unsigned i = 0; i < n; i++) v[i] = *(const double *)((const char *)&f[i] + off);
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int run(const opts *o)
{
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/ff-ingest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return fprintf(stderr, "ingest: %s: %s\n", dir, strerror(errno)), 2;
    bench b = {.o = o, .nspaces = o->spaces ? o->spaces : o->dpus / 2, .ts = START_US};
    if (b.nspaces < 2) b.nspaces = 2;
    b.seq = ff_xcalloc(o->dpus, sizeof *b.seq);
    b.occ = ff_xcalloc(b.nspaces + 1, sizeof *b.occ);
    b.nrows = ff_xcalloc(b.nspaces + 1, sizeof *b.nrows);
    ff_event *ev = ff_xmalloc(o->events * sizeof *ev);
    rng_state = o->seed;
    sim_now = START_US;
    ff_engine_opts eo;
    ff_engine_opts_default(&eo); /* footfalld's defaults (net/server.c) */
    eo.data_dir = dir;
    eo.seal_lag_us = 5 * FF_MINUTE;
    eo.seal_async = true;
    if (o->no_seal) eo.seal_rows = UINT64_MAX, eo.seal_age_us = INT64_MAX;
    eo.clock = sim_clock;
    ff_engine_recovery rec;
    worker_start(&b.syncer, "ff-sync");
    worker_start(&b.sealer, "ff-seal");
    int status = 2, rc = ff_engine_open(&b.e, &eo, &rec);
    if (rc == 0) rc = build_topology(&b);
    if (rc < 0) {
        fprintf(stderr, "ingest: engine: %s %s\n", ff_strerror(rc), b.e ? "" : rec.error);
        goto out;
    }
    printf("ingest: %" PRIu64 " DPUs, %" PRIu64 " spaces, %u rounds of %" PRIu64
           " events in batches of %u, %" PRIu64
           " simulated events/s, out-of-order %.3f, fsync %s\n",
           o->dpus, b.nspaces, o->rounds, o->events, o->batch, o->rate, o->ooo,
           o->no_sync ? "never" : "always");
    round_fig f[MAX_ROUNDS];
    for (unsigned r = 0; r < o->rounds; r++) {
        generate(&b, ev, o->events);
        if ((rc = run_round(&b, ev, o->events, &f[r])) < 0) {
            fprintf(stderr, "ingest: round %u: %s\n", r + 1, ff_strerror(rc));
            goto out;
        }
        printf("round %u: %.0f events/s, %.1f ns/event wall, %.1f CPU, %.1f in ingest\n", r + 1,
               f[r].ev_s, f[r].wall_ns, f[r].cpu_ns, f[r].ingest_ns);
        fflush(stdout);
    }
    if ((rc = sync_step(&b, true)) < 0 || (rc = tick(&b, true)) < 0) {
        fprintf(stderr, "ingest: %s\n", ff_strerror(rc));
        goto out;
    }
    ff_engine_stats st;
    ff_engine_stats_get(b.e, &st);
    printf("result ev_per_s=%.0f ns_per_event=%.1f cpu_ns_per_event=%.1f ingest_ns_per_event=%.1f "
           "syncs=%" PRIu64 " seals=%" PRIu64 " pending_rows=%" PRIu64 " settled_rows=%" PRIu64
           " sealed_rows=%" PRIu64 "\n",
           median(f, o->rounds, offsetof(round_fig, ev_s)),
           median(f, o->rounds, offsetof(round_fig, wall_ns)),
           median(f, o->rounds, offsetof(round_fig, cpu_ns)),
           median(f, o->rounds, offsetof(round_fig, ingest_ns)), b.syncs, b.seals, st.pending_rows,
           st.settled_rows, st.sealed_rows);
    status = verify(&b);
out:
    if (b.e) { /* a job in flight must end before the engine closes */
        int jrc;
        if (worker_collect(&b.syncer, true, &jrc)) ff_engine_sync_end(b.e, &b.sync_job, jrc);
        if (worker_collect(&b.sealer, true, &jrc)) ff_engine_seal_end(b.e, b.seal_job, jrc);
        ff_engine_close(b.e);
    }
    worker_stop(&b.syncer);
    worker_stop(&b.sealer);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(ev);
    free(b.seq);
    free(b.occ);
    free(b.nrows);
    return status;
}

static const char usage[] =
    "usage: ingest [options]\n"
    "  --dpus N                 DPUs (default 100000)\n"
    "  --spaces S               spaces (default DPUs / 2)\n"
    "  --events N               events per round (default 2000000)\n"
    "  --rounds N               rounds (default 5; figures are their medians)\n"
    "  --batch N                events per ff_engine_ingest call (default 64, max 4096)\n"
    "  --rate R                 simulated events per second (default 1000)\n"
    "  --out-of-order F         fraction of timestamps moved back up to 60 s (default 0)\n"
    "  --seed N                 random seed (default 1)\n"
    "  --fsync always|never     a log sync job always in flight, or none (default always)\n"
    "  --no-seal                never seal (settled rows stay in memory)\n"
    "  --check-invariants       also run ff_engine_check at the end\n"
    "  --wrong-on-purpose       expect one space off by one (tests that the check can fail)\n";

static bool num(const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return false;
    *out = x;
    return true;
}

int main(int argc, char **argv)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 256 * 1024); /* footfalld's malloc tuning */
    mallopt(M_ARENA_MAX, 2);
#endif
    opts o = {.dpus = 100000, .events = 2000000, .rate = 1000, .seed = 1, .rounds = 5, .batch = 64};
    enum {
        O_DPUS = 256,
        O_SPACES,
        O_EVENTS,
        O_ROUNDS,
        O_BATCH,
        O_RATE,
        O_OOO,
        O_SEED,
        O_INV,
        O_WRONG,
        O_FSYNC,
        O_NOSEAL
    };
    static const struct option longopts[] = {{"dpus", 1, 0, O_DPUS},
                                             {"spaces", 1, 0, O_SPACES},
                                             {"events", 1, 0, O_EVENTS},
                                             {"rounds", 1, 0, O_ROUNDS},
                                             {"batch", 1, 0, O_BATCH},
                                             {"rate", 1, 0, O_RATE},
                                             {"out-of-order", 1, 0, O_OOO},
                                             {"seed", 1, 0, O_SEED},
                                             {"check-invariants", 0, 0, O_INV},
                                             {"wrong-on-purpose", 0, 0, O_WRONG},
                                             {"fsync", 1, 0, O_FSYNC},
                                             {"no-seal", 0, 0, O_NOSEAL},
                                             {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        uint64_t v = 0;
        bool ok = true;
        switch (c) {
        case 'h':
            return fputs(usage, stdout), 0;
        case O_DPUS:
            ok = num(optarg, 1, UINT32_MAX - 1, &o.dpus);
            break;
        case O_SPACES:
            ok = num(optarg, 2, UINT32_MAX - 1, &o.spaces);
            break;
        case O_EVENTS:
            ok = num(optarg, 1, (uint64_t)1 << 32, &o.events);
            break;
        case O_ROUNDS:
            ok = num(optarg, 1, MAX_ROUNDS, &v) && (o.rounds = (unsigned)v, true);
            break;
        case O_BATCH:
            ok = num(optarg, 1, 4096, &v) && (o.batch = (unsigned)v, true);
            break;
        case O_RATE:
            ok = num(optarg, 1, FF_SECOND, &o.rate);
            break;
        case O_OOO:
            o.ooo = strtod(optarg, NULL);
            ok = o.ooo >= 0 && o.ooo <= 1;
            break;
        case O_SEED:
            ok = num(optarg, 0, UINT64_MAX, &o.seed);
            break;
        case O_INV:
            o.check_invariants = true;
            break;
        case O_FSYNC:
            o.no_sync = strcmp(optarg, "never") == 0;
            ok = o.no_sync || strcmp(optarg, "always") == 0;
            break;
        case O_NOSEAL:
            o.no_seal = true;
            break;
        case O_WRONG:
            o.wrong = true;
            break;
        default:
            ok = false;
        }
        if (!ok) return fputs("ingest: bad option (see ingest --help)\n", stderr), 2;
    }
    if (optind < argc) return fprintf(stderr, "ingest: unexpected '%s'\n", argv[optind]), 2;
    return run(&o);
}
