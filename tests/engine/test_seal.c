/*
 * test_seal.c -- sealing settled rows into segments (engine/seal.c): with tiny seal
 * thresholds and a temp data directory, the answers (revision and status included) are
 * byte-identical to those of the pure in-memory engine fed the same arrivals, memory
 * holds fewer rows once sealed, and a reopen -- clean, or after a crash at any step of
 * a seal -- gives the same answers again.
 */
#include "engine_testutil.h"
#include "engine/engine_int.h" /* the crash points of a seal, sealed_upto */

#include <dirent.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/stat.h>

enum { NSPACES = 4, NDPUS = 6, NEVENTS = 1500, NTIMES = 64 };
#define SETTLE   FF_MINUTE
#define LATENESS (20 * FF_MINUTE)
#define SPAN     (4 * FF_HOUR)

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11) % n;
}

/* One arrival: a batch of events delivered at clock `now`, then maybe a tick. */
typedef struct arrival {
    ff_event ev;
    int64_t now;
    bool tick;
} arrival;

typedef struct script {
    arrival a[NEVENTS];
    int64_t times[NTIMES];
} script;

static int cmp_arrival(const void *x, const void *y)
{
    const arrival *a = x, *b = y;
    return (a->now > b->now) - (a->now < b->now);
}

/* Events over SPAN, delivered with a random delay: mostly seconds (pending), some
 * minutes (late), a few more than LATENESS (too_old); 10% are exact repeats. */
static void make_script(script *s, uint64_t seed)
{
    rng_state = seed * 2654435761u + 7;
    for (int i = 0; i < NEVENTS; i++) {
        arrival *a = &s->a[i];
        if (i > 10 && rnd(10) == 0) {
            a->ev = s->a[rnd((uint32_t)i)].ev;
        } else {
            uint32_t dpu = 100 + rnd(NDPUS);
            int64_t ts = T0 + (int64_t)rnd((uint32_t)(SPAN / FF_SECOND)) * FF_SECOND;
            /* DPU 105 (into S4) is silent from 1 h to 3 h and DPU 103 leaves S4 at 2 h:
             * S4 has no rows in the segments of 2-3 h, so counts there walk back over
             * them and late events before them refold across them */
            if (dpu == 105 && ts >= T0 + FF_HOUR && ts < T0 + 3 * FF_HOUR)
                ts += ts < T0 + 2 * FF_HOUR ? -FF_HOUR : FF_HOUR;
            a->ev = ev_make(dpu, ts, rnd(2) ? 1 : -1, (uint16_t)rnd(3));
        }
        uint32_t r = rnd(100);
        int64_t delay = r < 80   ? rnd(30) * FF_SECOND
                        : r < 97 ? rnd(15) * FF_MINUTE
                                 : (int64_t)(21 + rnd(30)) * FF_MINUTE;
        a->now = a->ev.ts + delay;
        a->tick = rnd(4) == 0;
    }
    qsort(s->a, NEVENTS, sizeof(s->a[0]), cmp_arrival);
    for (int i = 0; i < NTIMES; i++)
        s->times[i] =
            T0 - FF_MINUTE + (int64_t)rnd((uint32_t)((SPAN + 2 * FF_HOUR) / FF_SECOND)) * FF_SECOND;
}

static ff_engine_opts seal_opts(fake_clock *clk, const char *dir)
{
    ff_engine_opts o = test_opts(clk);
    o.settle_us = SETTLE;
    o.max_lateness_us = LATENESS;
    o.data_dir = dir;
    o.seal_rows = 40;
    o.seal_age_us = 10 * FF_MINUTE;
    o.seal_merge_rows = 300;
    o.log_file_bytes = 64 * 1024;
    return o;
}

static void topology(ff_engine *e)
{
    for (uint32_t s = 1; s <= NSPACES; s++) {
        char name[16];
        snprintf(name, sizeof(name), "S%u", s);
        put_space(e, s, name, s % 2 == 1);
    }
    /* DPU 100..105: one into S1, one between S2 and S1, one out of S3, one moved from
     * S4 to S2 mid-span, one counted nowhere at first (orphans), one into S4 */
    cr_assert_eq(assign_at(e, 100, 0, 1, 0, FF_TS_MIN), 0);
    cr_assert_eq(assign_at(e, 101, 0, 1, 2, FF_TS_MIN), 0);
    cr_assert_eq(assign_at(e, 102, 0, 0, 3, FF_TS_MIN), 0);
    cr_assert_eq(assign_at(e, 103, 0, 4, 0, FF_TS_MIN), 0);
    cr_assert_eq(assign_at(e, 103, 0, 2, 0, T0 + 2 * FF_HOUR), 0);
    cr_assert_eq(assign_at(e, 104, 0, 0, 0, FF_TS_MIN), 0);
    cr_assert_eq(assign_at(e, 104, 0, 3, 0, T0 + FF_HOUR), 0);
    cr_assert_eq(assign_at(e, 105, 0, 4, 0, FF_TS_MIN), 0);
}

/* Plays arrivals [from, to) of the script; outcomes appended to out (may be NULL). */
static void play(ff_engine *e, fake_clock *clk, const script *s, int from, int to, uint8_t *out)
{
    for (int i = from; i < to; i++) {
        if (s->a[i].now > clk->now) clk->now = s->a[i].now;
        uint8_t o;
        cr_assert_eq(ff_engine_ingest(e, &s->a[i].ev, 1, &o, NULL), 0);
        if (out) out[i] = o;
        if (s->a[i].tick) ff_engine_tick(e);
    }
}

static int ans_event_cb(void *ctx, const ff_event *ev)
{
    ans_put(ctx, ev, sizeof(*ev));
    return 0;
}

static answers answers_all(ff_engine *e, const script *s)
{
    static const uint32_t ids[NSPACES] = {1, 2, 3, 4};
    answers a = {.with_revision = true, .with_status = true};
    ff_engine_check(e);
    answers_of(e, &a, ids, NSPACES, s->times, NTIMES, T0 - 7 * FF_MINUTE, T0 + SPAN + FF_HOUR,
               7 * FF_MINUTE);
    for (uint32_t d = 100; d < 100 + NDPUS; d++)
        cr_assert_eq(ff_engine_dpu_events(e, d, FF_TS_MIN, FF_TS_MAX, ans_event_cb, &a), 0);
    return a;
}

static void assert_same(const answers *x, const answers *y, const char *what)
{
    cr_assert_eq(x->n, y->n, "%s: %zu vs %zu answer bytes", what, x->n, y->n);
    cr_assert(memcmp(x->b, y->b, x->n) == 0, "%s: answers differ", what);
}

/* Opens the engine over o's data dir again and checks that it answers want. */
static void assert_reopened_same(const ff_engine_opts *o, const script *s, const answers *want,
                                 const char *what)
{
    ff_engine *e = open_engine(o);
    answers again = answers_all(e, s);
    assert_same(want, &again, what);
    ff_engine_close(e);
    free(again.b);
}

/* The in-memory engine's answers after the whole script. */
static answers reference(const script *s, uint8_t *outcomes)
{
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, NULL);
    ff_engine *e = open_engine(&o);
    topology(e);
    play(e, &clk, s, 0, NEVENTS, outcomes);
    clk.now += FF_HOUR; /* idle: H reaches the last event, everything settles */
    ff_engine_tick(e);
    ff_engine_tick(e);
    answers a = answers_all(e, s);
    ff_engine_close(e);
    return a;
}

/* The sealing engine over dir after the whole script, still open. */
/* An engine with options o after the whole script and an idle hour, still open. */
static ff_engine *run_with(const ff_engine_opts *o, const script *s, fake_clock *clk, uint8_t *out)
{
    clk->now = T0;
    ff_engine *e = open_engine(o);
    topology(e);
    play(e, clk, s, 0, NEVENTS, out);
    clk->now += FF_HOUR;
    ff_engine_tick(e);
    ff_engine_tick(e);
    return e;
}

static ff_engine *sealing_run(const script *s, const char *dir, fake_clock *clk, uint8_t *out)
{
    ff_engine_opts o = seal_opts(clk, dir);
    return run_with(&o, s, clk, out);
}

/* Files in dir whose names start with prefix. */
static size_t files_named(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static size_t segment_files(const char *dir)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/segments", dir);
    return files_named(path, "seg-");
}

Test(seal, answers_equal_the_in_memory_engine_and_survive_reopen)
{
    for (uint64_t seed = 1; seed <= 6; seed++) {
        static script s;
        make_script(&s, seed);
        uint8_t o_mem[NEVENTS], o_seal[NEVENTS];
        answers want = reference(&s, o_mem);
        char dir[64];
        make_tmpdir(dir, sizeof(dir));
        fake_clock clk;
        ff_engine *e = sealing_run(&s, dir, &clk, o_seal);
        cr_assert(memcmp(o_mem, o_seal, sizeof(o_mem)) == 0, "seed %llu: outcomes differ",
                  (unsigned long long)seed);
        ff_engine_stats st;
        ff_engine_stats_get(e, &st);
        cr_assert_gt(st.segments, 1, "seed %llu: only %u segments", (unsigned long long)seed,
                     st.segments);
        cr_assert_gt(st.sealed_rows, 0);
        cr_assert_gt(st.segments_rewritten, 0, "seed %llu: no late event amended a segment",
                     (unsigned long long)seed);
        cr_assert_eq(segment_files(dir), st.segments, "replaced versions left on disk");
        cr_assert_gt(st.segments_merged, 0, "seed %llu: no segments were merged",
                     (unsigned long long)seed);
        cr_assert_eq(st.segments, st.segments_sealed - st.segments_rewritten - st.segments_merged,
                     "seed %llu: %u live, %llu sealed, %llu rewritten, %llu merged",
                     (unsigned long long)seed, st.segments, (unsigned long long)st.segments_sealed,
                     (unsigned long long)st.segments_rewritten,
                     (unsigned long long)st.segments_merged);
        answers got = answers_all(e, &s);
        assert_same(&want, &got, "sealed");
        ff_engine_sync(e);
        ff_engine_close(e);

        ff_engine_opts oo = seal_opts(&clk, dir);
        e = open_engine(&oo);
        answers again = answers_all(e, &s);
        assert_same(&want, &again, "reopened");
        ff_engine_close(e);
        free(want.b), free(got.b), free(again.b);
        rm_tree(dir);
    }
}

/* With 4 KiB log files (about 100 single-event records each), the script fills dozens
 * of files; once their events are sealed (or in the checkpoint's orphan rows) they go,
 * and a reopen from what is left -- the checkpoint, segments, the last few files --
 * answers exactly as before, orphans included (DPU 104 counts nowhere at first). */
Test(seal, log_files_are_released_once_sealed_and_reopen_answers_the_same)
{
    for (uint64_t seed = 11; seed <= 14; seed++) {
        static script s;
        make_script(&s, seed);
        answers want = reference(&s, NULL);
        char dir[64];
        make_tmpdir(dir, sizeof(dir));
        fake_clock clk = {.now = T0};
        ff_engine_opts o = seal_opts(&clk, dir);
        o.log_file_bytes = 4096;
        ff_engine *e = run_with(&o, &s, &clk, NULL);
        ff_engine_stats st;
        ff_engine_stats_get(e, &st);
        cr_assert_gt(st.log_files_released, 8, "seed %llu: %llu files released",
                     (unsigned long long)seed, (unsigned long long)st.log_files_released);
        cr_assert_lt(st.log_files, 8, "seed %llu: %u log files kept", (unsigned long long)seed,
                     st.log_files);
        cr_assert_eq(files_named(dir, "log-"), st.log_files);
        answers got = answers_all(e, &s);
        assert_same(&want, &got, "after release");
        ff_engine_close(e);

        e = open_engine(&o);
        answers again = answers_all(e, &s);
        assert_same(&want, &again, "reopened after release");
        /* and once more: the first reopen kept everything the second needs */
        ff_engine_close(e);
        e = open_engine(&o);
        answers third = answers_all(e, &s);
        assert_same(&want, &third, "second reopen");
        ff_engine_close(e);
        free(want.b), free(got.b), free(again.b), free(third.b);
        rm_tree(dir);
    }
}

/* A log file removed by hand that no checkpoint covers is refused, by name of the gap. */
Test(seal, a_lost_first_log_file_that_the_checkpoint_needs_fails_the_open)
{
    static script s;
    make_script(&s, 21);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.log_file_bytes = 4096;
    o.seal_rows = 1u << 30; /* never seal: the checkpoint covers nothing */
    o.seal_age_us = 1000 * FF_HOUR;
    ff_engine *e = open_engine(&o);
    topology(e);
    play(e, &clk, &s, 0, NEVENTS / 2, NULL);
    ff_engine_close(e);
    char path[128];
    snprintf(path, sizeof(path), "%s/log-0000000000000000.ffl", dir);
    cr_assert_eq(unlink(path), 0);
    ff_engine *e2 = NULL;
    ff_engine_recovery rep;
    cr_assert_eq(ff_engine_open(&e2, &o, &rep), FF_ECORRUPT);
    cr_assert_null(e2);
    cr_assert_not_null(strstr(rep.error, "missing"), "error: %s", rep.error);
    rm_tree(dir);
}

/* A seal job's middle step on a thread of its own, as footfalld runs it. */
typedef struct job_thread {
    pthread_t t;
    ff_seal_job *job;
    int rc;
} job_thread;

/* Runs every job the engine has to give, synchronously, captures included. */
static void drain_jobs(ff_engine *e)
{
    for (ff_seal_job *j;;) {
        if (ff_engine_seal_begin(e, &j) == 1)
            cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
        else if (!ff_engine_seal_stepping(e))
            break;
    }
}

static void *job_main(void *arg)
{
    job_thread *jt = arg;
    jt->rc = ff_engine_seal_run(jt->job);
    return NULL;
}

/* Plays the script with seal_async: a job begins after a tick, its run goes on a thread
 * while `lag` more arrivals are ingested (late ones among them make it stale), then it
 * ends. With odd seeds the job's rows are captured one space per begin, with arrivals
 * between the steps. The answers must equal the in-memory engine's, before and after a
 * reopen. */
Test(seal, async_jobs_interleaved_with_ingest_give_the_same_answers)
{
    uint64_t discarded = 0, merged = 0;
    for (uint64_t seed = 31; seed <= 36; seed++) {
        ff__seal_capture_spaces = seed % 2 ? 1 : 1024;
        static script s;
        make_script(&s, seed);
        uint8_t o_mem[NEVENTS], o_async[NEVENTS];
        answers want = reference(&s, o_mem);
        char dir[64];
        make_tmpdir(dir, sizeof(dir));
        fake_clock clk = {.now = T0};
        ff_engine_opts o = seal_opts(&clk, dir);
        o.seal_async = true;
        ff_engine *e = open_engine(&o);
        topology(e);
        job_thread jt = {0};
        int lag = 0, jobs = 0;
        for (int i = 0; i < NEVENTS; i++) {
            play(e, &clk, &s, i, i + 1, o_async);
            if (jt.job && --lag == 0) {
                cr_assert_eq(pthread_join(jt.t, NULL), 0);
                cr_assert_eq(ff_engine_seal_end(e, jt.job, jt.rc), 0);
                jt.job = NULL;
            }
            if (!jt.job && s.a[i].tick && ff_engine_seal_begin(e, &jt.job) == 1) {
                jobs++;
                lag = 1 + (int)rnd(8);
                cr_assert_eq(pthread_create(&jt.t, NULL, job_main, &jt), 0);
            }
        }
        if (jt.job) {
            cr_assert_eq(pthread_join(jt.t, NULL), 0);
            cr_assert_eq(ff_engine_seal_end(e, jt.job, jt.rc), 0);
        }
        clk.now += FF_HOUR;
        ff_engine_tick(e);
        ff_engine_tick(e);
        drain_jobs(e);
        cr_assert(memcmp(o_mem, o_async, sizeof(o_mem)) == 0, "seed %llu: outcomes differ",
                  (unsigned long long)seed);
        ff_engine_stats st;
        ff_engine_stats_get(e, &st);
        cr_assert_gt(jobs, 3, "seed %llu: %d jobs", (unsigned long long)seed, jobs);
        cr_assert_gt(st.segments, 1, "seed %llu: %u segments", (unsigned long long)seed,
                     st.segments);
        cr_assert_eq(segment_files(dir), st.segments, "discarded or replaced files left");
        discarded += st.seal_jobs_discarded;
        merged += st.segments_merged;
        answers got = answers_all(e, &s);
        assert_same(&want, &got, "async sealed");
        ff_engine_close(e);
        assert_reopened_same(&o, &s, &want, "async sealed, reopened");
        free(want.b), free(got.b);
        rm_tree(dir);
    }
    cr_assert_gt(discarded, 0, "no job was ever made stale by a late event");
    cr_assert_gt(merged, 0, "no merge ran as a job");
    ff__seal_capture_spaces = 1024;
}

static size_t committed_segments(const char *dir)
{
    int64_t h;
    ff_seg_entry *segs;
    size_t n;
    char err[256];
    cr_assert_eq(ff__ckpt_peek(dir, &h, &segs, &n, err, sizeof(err)), 0, "%s", err);
    free(segs);
    return n;
}

/* Plays arrivals from *i on with seal_async, running every job at once, until a job of
 * `kind` is begun after an arrival past `after`: returned, not run, and *i is the next
 * arrival then. NULL if none by the end. */
static ff_seal_job *play_until_job(ff_engine *e, fake_clock *clk, const script *s, int *i, int kind,
                                   int after)
{
    ff_seal_job *j;
    for (; *i < NEVENTS; (*i)++) {
        play(e, clk, s, *i, *i + 1, NULL);
        while (ff_engine_seal_begin(e, &j) == 1) {
            if (ff__seal_job_kind(j) == kind && *i > after) {
                (*i)++;
                return j;
            }
            cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
        }
    }
    return NULL;
}

/* With seal_async a seal's end writes no checkpoint: the next job is a commit, which
 * names the new segment and releases log files. One that fails (the checkpoint cannot
 * be written) or crashes before its rename changes nothing on disk: the commit is
 * tried again after a tick, and a reopen answers as the in-memory engine. */
Test(seal, commits_run_as_jobs_and_a_failed_or_crashed_one_loses_nothing)
{
    static script s;
    make_script(&s, 43);
    uint8_t o_mem[NEVENTS];
    answers want = reference(&s, o_mem);
    char dir[64], path[128];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_async = true;
    o.log_file_bytes = 4096;
    ff_engine *e = open_engine(&o);
    topology(e);
    int i = 0;
    ff_seal_job *j = NULL;
    ff_engine_stats st;
    uint64_t released = 0;
    for (int round = 0; round < 3; round++) {
        j = play_until_job(e, &clk, &s, &i, FF__JOB_SEAL, -1);
        cr_assert_not_null(j, "round %d: no seal job", round);
        size_t before = committed_segments(dir);
        cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
        cr_assert_eq(committed_segments(dir), before, "the seal's end wrote a checkpoint");
        cr_assert(ff_engine_seal_stepping(e), "no commit is due");
        cr_assert_eq(ff_engine_seal_begin(e, &j), 1);
        cr_assert_eq(ff__seal_job_kind(j), FF__JOB_COMMIT);
        if (round == 1) { /* fails: the temp file's name is taken by a directory */
            snprintf(path, sizeof(path), "%s/checkpoint.ffc.tmp", dir);
            cr_assert_eq(mkdir(path, 0755), 0);
            cr_assert_lt(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
            cr_assert_eq(committed_segments(dir), before, "a failed commit wrote");
            cr_assert(!ff_engine_seal_stepping(e), "retried before a tick");
            if (ff_engine_seal_begin(e, &j) == 1) { /* a seal or merge may go meanwhile */
                cr_assert_neq(ff__seal_job_kind(j), FF__JOB_COMMIT, "retried before a tick");
                cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
            }
            cr_assert_eq(rmdir(path), 0);
            ff_engine_tick(e);
            cr_assert_eq(ff_engine_seal_begin(e, &j), 1);
            cr_assert_eq(ff__seal_job_kind(j), FF__JOB_COMMIT);
        }
        if (round == 2) { /* a crash between the checkpoint's write and its rename */
            ff__seal_test_stop = FF__STOP_CKPT_TMP;
            cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), -EINTR);
            cr_assert_eq(ff__seal_test_stop, FF__STOP_HIT);
            ff__seal_test_stop = FF__STOP_NONE;
            cr_assert_eq(committed_segments(dir), before);
            ff_engine_stats_get(e, &st);
            released = st.log_files_released;
            ff_engine_close(e);
            e = open_engine(&o); /* recovery: the new segment is unnamed, the log replays */
            break;
        }
        cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
        ff_engine_stats_get(e, &st);
        cr_assert_eq(committed_segments(dir), st.segments, "round %d: not committed", round);
    }
    play(e, &clk, &s, i, NEVENTS, NULL);
    clk.now += FF_HOUR;
    ff_engine_tick(e);
    ff_engine_tick(e);
    drain_jobs(e);
    ff_engine_stats_get(e, &st);
    cr_assert_gt(released + st.log_files_released, 8, "commit jobs released %llu log files",
                 (unsigned long long)(released + st.log_files_released));
    cr_assert_eq(files_named(dir, "log-"), st.log_files);
    cr_assert_eq(segment_files(dir), st.segments, "replaced files left");
    answers got = answers_all(e, &s);
    assert_same(&want, &got, "commit jobs");
    cr_assert_eq(ff_engine_commit(e), 0);
    ff_engine_close(e);
    assert_reopened_same(&o, &s, &want, "commit jobs, reopened");
    free(want.b), free(got.b);
    rm_tree(dir);
}

/* A writeback error of the log after its last sync, told already to the log's own
 * description (as to a sync job whose end is still to come), must not be missed by the
 * commit job begun next: it would write a checkpoint covering records the disk lost, and
 * the restart would refuse to start. The commit fails, the checkpoint stays, the log
 * fails (storage/log.c, DATASYNC JOBS). */
Test(seal, a_log_writeback_error_before_a_commit_job_fails_it_and_the_log)
{
    static script s;
    make_script(&s, 44);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_async = true;
    ff_engine *e = open_engine(&o);
    topology(e);
    int i = 0;
    ff_seal_job *j = play_until_job(e, &clk, &s, &i, FF__JOB_SEAL, -1);
    cr_assert_not_null(j);
    size_t before = committed_segments(dir);
    cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
    ff__log_test_wb_error(e->log, true);
    cr_assert_eq(ff_engine_seal_begin(e, &j), 1);
    cr_assert_eq(ff__seal_job_kind(j), FF__JOB_COMMIT);
    cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), -EIO);
    cr_assert_eq(committed_segments(dir), before, "a checkpoint covers lost records");
    cr_assert_eq(ff_engine_sync(e), -EIO, "the log goes on as if nothing was lost");
    ff_engine_tick(e);
    if (ff_engine_seal_begin(e, &j) == 1) {
        cr_assert_eq(ff__seal_job_kind(j), FF__JOB_COMMIT);
        cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), -EIO, "a retry commits");
    }
    cr_assert_eq(committed_segments(dir), before);
    ff_engine_close(e);
    rm_tree(dir);
}

/* A late event into sealed history during every commit job leaves the next commit due
 * at once; seals must still get their turn (every other job), or memory and the log
 * would grow for as long as the late events came. */
Test(seal, late_events_during_every_commit_do_not_starve_sealing)
{
    static script s;
    make_script(&s, 47);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_async = true;
    o.max_lateness_us = 10 * FF_HOUR;
    ff_engine *e = open_engine(&o);
    topology(e);
    int i = 0, seals = 0, commits = 0;
    ff_seal_job *j = play_until_job(e, &clk, &s, &i, FF__JOB_SEAL, -1);
    cr_assert_not_null(j);
    cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
    for (; i < NEVENTS && (seals <= 3 || commits <= 3); i++) { /* enough to tell */
        play(e, &clk, &s, i, i + 1, NULL);
        for (int k = 0; k < 4 && ff_engine_seal_begin(e, &j) == 1; k++) {
            int kind = ff__seal_job_kind(j);
            if (kind == FF__JOB_COMMIT) {
                commits++;
                ff_event late = ev_make(101, T0 + FF_SECOND / 2 + commits, 1, (uint16_t)commits);
                uint8_t out;
                cr_assert_eq(ff_engine_ingest(e, &late, 1, &out, NULL), 0);
                cr_assert_eq(out, FF_OUT_LATE);
            }
            seals += kind == FF__JOB_SEAL;
            cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
        }
    }
    cr_assert_gt(commits, 3, "%d commits", commits);
    cr_assert_gt(seals, 3, "%d seals after the first, %d commits", seals, commits);
    ff_engine_close(e);
    rm_tree(dir);
}

/* A capture taken a space at a time: a topology change between its steps discards it
 * (the slots it noted may have moved), and closing the engine in the middle of one
 * frees it. The answers stay those of the in-memory engine. */
Test(seal, a_capture_in_steps_is_discarded_by_a_topology_change_and_freed_at_close)
{
    static script s;
    make_script(&s, 41);
    uint8_t o_mem[NEVENTS], o_async[NEVENTS];
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_async = true;
    ff_engine *e = open_engine(&o);
    topology(e);
    ff__seal_capture_spaces = 1;
    int i = 0;
    ff_seal_job *j = NULL;
    while (i < NEVENTS && !ff_engine_seal_capturing(e)) { /* until a capture begins */
        play(e, &clk, &s, i, i + 1, o_async);
        i++;
        cr_assert_eq(ff_engine_seal_begin(e, &j), 0, "four spaces take more than one step");
    }
    cr_assert(ff_engine_seal_capturing(e), "no seal became due");
    put_space(e, 9, "S9", false); /* a new space between two steps */
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    uint64_t discarded = st.seal_jobs_discarded;
    cr_assert_eq(ff_engine_seal_begin(e, &j), 0);
    cr_assert(!ff_engine_seal_capturing(e));
    ff_engine_stats_get(e, &st);
    cr_assert_eq(st.seal_jobs_discarded, discarded + 1, "the capture was not discarded");
    while (i < NEVENTS && !ff_engine_seal_capturing(e)) { /* the next one, then close */
        play(e, &clk, &s, i, i + 1, o_async);
        i++;
        if (ff_engine_seal_begin(e, &j) == 1)
            cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
    }
    cr_assert(ff_engine_seal_capturing(e));
    ff_engine_close(e); /* leak-checked in the sanitizer build */
    ff__seal_capture_spaces = 1024;
    e = open_engine(&o);
    play(e, &clk, &s, i, NEVENTS, o_async);
    clk.now += FF_HOUR; /* as reference(): everything settles */
    ff_engine_tick(e);
    ff_engine_tick(e);
    answers want = reference(&s, o_mem);
    answers got = answers_all(e, &s);
    assert_same(&want, &got, "captures discarded and abandoned");
    cr_assert(memcmp(o_mem, o_async, sizeof(o_mem)) == 0, "outcomes differ");
    ff_engine_close(e);
    free(want.b), free(got.b);
    rm_tree(dir);
}

/* With a seal lag, rows younger than H - lag stay in memory: a late event into them is
 * a refold, never a segment rewrite, and the answers are the same. */
Test(seal, a_seal_lag_keeps_recent_history_in_memory_and_late_events_there_cheap)
{
    static script s;
    make_script(&s, 57);
    answers want = reference(&s, NULL);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_lag_us = LATENESS; /* every late event of the script lands in the lag */
    ff_engine *e = run_with(&o, &s, &clk, NULL);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.segments_sealed, 1);
    cr_assert_eq(st.segments_rewritten, 0, "%llu rewrites for late events",
                 (unsigned long long)st.segments_rewritten);
    cr_assert_leq(e->sealed_upto, e->h - LATENESS, "a row inside the lag was sealed");
    cr_assert_gt(st.settled_rows, 0, "the lag's rows are in memory");
    answers got = answers_all(e, &s);
    assert_same(&want, &got, "with a seal lag");
    ff_engine_close(e);
    assert_reopened_same(&o, &s, &want, "with a seal lag, reopened");
    free(want.b), free(got.b);
    rm_tree(dir);
}

/* A late event that lands among the settled rows still in memory (the seal lag) is a
 * settled row to seal like any other: it counts towards --seal-rows. */
Test(seal, late_rows_into_the_settled_rows_count_towards_the_next_seal)
{
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0 + FF_HOUR};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_lag_us = LATENESS;
    o.seal_age_us = 100 * FF_HOUR; /* by row count only */
    ff_engine *e = open_engine(&o);
    topology(e);
    uint16_t seq = 1;
    cr_assert_eq(ingest1(e, 101, T0 + FF_HOUR - 2 * SETTLE, 1, seq++), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 101, T0 + FF_HOUR, 1, seq++), FF_OUT_ACCEPTED); /* H passes it */
    ff_engine_tick(e);
    uint64_t before = e->settled_since_seal;
    cr_assert_eq(before, 2, "the first event's two rows settled");
    /* behind H, ahead of anything sealed: into the settled rows of S1 and S2 */
    cr_assert_eq(ingest1(e, 101, T0 + FF_HOUR - 3 * SETTLE, 1, seq++), FF_OUT_LATE);
    cr_assert_eq(e->settled_since_seal, before + 2, "%llu settled rows counted",
                 (unsigned long long)e->settled_since_seal);
    ff_engine_close(e);
    rm_tree(dir);
}

Test(seal, resident_rows_drop_after_sealing)
{
    static script s;
    make_script(&s, 42);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk;
    ff_engine *e = sealing_run(&s, dir, &clk, NULL);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    uint64_t total = 0;
    for (uint32_t id = 1; id <= NSPACES; id++) {
        ff_space_info info;
        cr_assert_eq(ff_engine_space_get(e, id, &info), 0);
        total += info.rows;
    }
    cr_assert_eq(st.settled_rows + st.pending_rows + st.sealed_rows, total);
    cr_assert_lt(st.settled_rows + st.pending_rows, total / 2, "resident %llu of %llu rows",
                 (unsigned long long)(st.settled_rows + st.pending_rows),
                 (unsigned long long)total);
    cr_assert_gt(st.segments_sealed, 1);
    ff_engine_close(e);
    rm_tree(dir);
}

static ff_engine *reopen(const char *dir, fake_clock *clk, ff_engine_recovery *rep);

/* KiB of the segment files of dir resident in this process (/proc/self/smaps). */
static long segments_rss_kib(const char *dir)
{
    char want[128], line[4096];
    snprintf(want, sizeof(want), "%s/segments/seg-", dir);
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert_not_null(f);
    long kib = 0;
    bool in = false;
    while (fgets(line, sizeof(line), f)) {
        long v;
        if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'))
            in = strstr(line, want) != NULL;
        else if (in && sscanf(line, "Rss: %ld", &v) == 1)
            kib += v;
    }
    fclose(f);
    return kib;
}

Test(seal, segment_pages_leave_the_resident_set_at_each_commit)
{
    static script s;
    make_script(&s, 7);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk;
    ff_engine *e = sealing_run(&s, dir, &clk, NULL);
    answers want = answers_all(e, &s); /* reads every segment: their pages come in */
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.segments, 1);
    cr_assert_gt(segments_rss_kib(dir), 0, "the reads faulted no segment page in");
    cr_assert_eq(ff_engine_checkpoint(e), 0);
    cr_assert_eq(segments_rss_kib(dir), 0, "a commit left segment pages resident");
    answers again = answers_all(e, &s);
    assert_same(&want, &again, "after the pages were dropped");
    ff_engine_close(e);
    ff_engine_recovery rep;
    e = reopen(dir, &clk, &rep);
    cr_assert_eq(segments_rss_kib(dir), 0, "recovery left segment pages resident");
    answers reopened = answers_all(e, &s);
    assert_same(&want, &reopened, "reopened");
    ff_engine_close(e);
    free(want.b), free(again.b), free(reopened.b);
    rm_tree(dir);
}

Test(seal, without_a_data_dir_nothing_is_sealed)
{
    static script s;
    make_script(&s, 5);
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, NULL);
    ff_engine *e = open_engine(&o);
    topology(e);
    play(e, &clk, &s, 0, NEVENTS, NULL);
    clk.now += FF_HOUR;
    ff_engine_tick(e);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_eq(st.segments, 0);
    cr_assert_eq(st.sealed_rows, 0);
    ff_engine_close(e);
}

/* ---- crash points ---- */

/* The in-memory engine's answers after arrivals [0, n). */
static answers reference_prefix(const script *s, int n, int64_t now)
{
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, NULL);
    ff_engine *e = open_engine(&o);
    topology(e);
    play(e, &clk, s, 0, n, NULL);
    cr_assert_eq(clk.now, now);
    answers a = answers_all(e, s);
    ff_engine_close(e);
    return a;
}

/* A late event rewrites the segments a merge job is reading, before the job runs: the
 * job must still read the old versions (kept open until it ends), and its end must see
 * the new versions and discard the merge. Answers equal the in-memory engine's. */
Test(seal, a_late_event_into_segments_being_merged_discards_the_merge)
{
    static script s;
    make_script(&s, 71);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_async = true;
    o.max_lateness_us = 10 * FF_HOUR; /* every segment is in reach of a late event */
    ff_engine *e = open_engine(&o);
    topology(e);
    int n = 0;
    ff_seal_job *j = play_until_job(e, &clk, &s, &n, FF__JOB_MERGE, NEVENTS / 2);
    cr_assert_not_null(j, "no merge job was begun");
    ff_engine_stats before;
    ff_engine_stats_get(e, &before);
    /* DPU 101 counts out of S2 (unclamped) from the start: a change before every segment
     * shifts all of S2's later occupancies, so every segment holding S2 is rewritten */
    ff_event late = ev_make(101, T0 + FF_SECOND / 2, 1, 9);
    uint8_t out;
    cr_assert_eq(ff_engine_ingest(e, &late, 1, &out, NULL), 0);
    cr_assert_eq(out, FF_OUT_LATE);
    cr_assert_eq(ff_engine_seal_run(j), 0, "the job read its segments after the rewrite");
    cr_assert_eq(ff_engine_seal_end(e, j, 0), 0);
    cr_assert_eq(ff_engine_seal_begin(e, &j), 1); /* the rewrites' commit removes the old */
    cr_assert_eq(ff__seal_job_kind(j), FF__JOB_COMMIT);
    cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
    ff_engine_stats after;
    ff_engine_stats_get(e, &after);
    cr_assert_gt(after.segments_rewritten, before.segments_rewritten);
    cr_assert_eq(after.seal_jobs_discarded, before.seal_jobs_discarded + 1);
    cr_assert_eq(segment_files(dir), after.segments, "the discarded merge left its file");
    answers got = answers_all(e, &s);
    ff_engine_close(e);

    fake_clock rclk = {.now = T0};
    ff_engine_opts ro = seal_opts(&rclk, NULL);
    ro.max_lateness_us = o.max_lateness_us;
    ff_engine *r = open_engine(&ro);
    topology(r);
    play(r, &rclk, &s, 0, n, NULL);
    cr_assert_eq(ff_engine_ingest(r, &late, 1, &out, NULL), 0);
    answers want = answers_all(r, &s);
    ff_engine_close(r);
    assert_same(&want, &got, "after the discarded merge");
    free(want.b), free(got.b);
    rm_tree(dir);
}

static ff_engine *reopen(const char *dir, fake_clock *clk, ff_engine_recovery *rep)
{
    ff_engine_opts o = seal_opts(clk, dir);
    ff_engine *e = NULL;
    int rc = ff_engine_open(&e, &o, rep);
    cr_assert_eq(rc, 0, "reopen: %s (%s)", ff_strerror(rc), rep->error);
    return e;
}

/* Plays the script until the armed crash point is hit (it is armed after a random
 * number of arrivals, so the crash hits a later seal too); returns the arrivals played. */
static int play_until_crash(ff_engine *e, fake_clock *clk, const script *s, int stop, int arm)
{
    for (int i = 0; i < NEVENTS; i++) {
        if (i == arm) ff__seal_test_stop = stop;
        if (i == arm && stop == FF__STOP_TOPO) /* a change the next checkpoint must snapshot */
            put_space(e, 77, "S77", false);
        play(e, clk, s, i, i + 1, NULL);
        if (ff__seal_test_stop == FF__STOP_HIT) {
            ff__seal_test_stop = FF__STOP_NONE;
            return i + 1;
        }
    }
    ff__seal_test_stop = FF__STOP_NONE;
    return NEVENTS;
}

Test(seal, a_crash_at_any_step_of_a_seal_loses_nothing)
{
    int stops[] = {FF__STOP_SEGMENT, FF__STOP_CKPT_TMP, FF__STOP_CKPT,
                   FF__STOP_AMEND,   FF__STOP_MERGE,    FF__STOP_TOPO};
    for (size_t k = 0; k < FF_ARRAY_LEN(stops); k++)
        for (uint64_t seed = 1; seed <= 4; seed++) {
            static script s;
            make_script(&s, seed + 10 * k);
            char dir[64];
            make_tmpdir(dir, sizeof(dir));
            fake_clock clk = {.now = T0};
            ff_engine_opts o = seal_opts(&clk, dir);
            ff_engine *e = open_engine(&o);
            topology(e);
            int n = play_until_crash(e, &clk, &s, stops[k], (int)rnd(NEVENTS / 2));
            cr_assert_lt(n, NEVENTS, "stop %d seed %llu: no seal reached the crash point", stops[k],
                         (unsigned long long)seed);
            ff_engine_close(e); /* the crash: what is on disk stays as it is */

            answers want = reference_prefix(&s, n, clk.now);
            ff_engine_recovery rep;
            e = reopen(dir, &clk, &rep);
            ff_engine_stats st;
            ff_engine_stats_get(e, &st);
            cr_assert_eq(segment_files(dir), st.segments, "unnamed segment files remain");
            cr_assert_leq(files_named(dir, "topology-"), 1, "unnamed snapshots remain");
            answers got = answers_all(e, &s);
            assert_same(&want, &got, "after the crash");

            play(e, &clk, &s, n, NEVENTS, NULL); /* and it keeps sealing */
            answers before = answers_all(e, &s);
            ff_engine_close(e);
            e = reopen(dir, &clk, &rep);
            answers after = answers_all(e, &s);
            assert_same(&before, &after, "reopened after the rest");
            ff_engine_close(e);
            free(want.b), free(got.b), free(before.b), free(after.b);
            rm_tree(dir);
        }
}

/* A sealing run of the whole script, closed; returns its answers. */
static answers sealed_and_closed(const script *s, const char *dir, fake_clock *clk)
{
    ff_engine *e = sealing_run(s, dir, clk, NULL);
    answers a = answers_all(e, s);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.segments, 1);
    ff_engine_close(e);
    return a;
}

Test(seal, without_the_checkpoint_the_log_rebuilds_everything)
{
    static script s;
    make_script(&s, 77);
    char dir[64], path[128];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk;
    answers want = sealed_and_closed(&s, dir, &clk);
    snprintf(path, sizeof(path), "%s/checkpoint.ffc", dir);
    cr_assert_eq(unlink(path), 0);
    ff_engine_recovery rep;
    ff_engine *e = reopen(dir, &clk, &rep);
    cr_assert_eq(rep.segments, 0);
    cr_assert_eq(segment_files(dir), 0);
    answers got = answers_all(e, &s);
    assert_same(&want, &got, "rebuilt from the log");
    ff_engine_close(e);
    free(want.b), free(got.b);
    rm_tree(dir);
}

/* Flips one byte at offset off (from the end when negative) of the first file of dir
 * whose name starts with prefix; returns its name. */
static void garble(const char *dir, const char *prefix, long off, char *name, size_t n)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *de;
    while ((de = readdir(d)) && strncmp(de->d_name, prefix, strlen(prefix)) != 0) continue;
    cr_assert_not_null(de, "no %s* in %s", prefix, dir);
    snprintf(name, n, "%s", de->d_name);
    closedir(d);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    off_t at = off >= 0 ? off : lseek(fd, off, SEEK_END);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x5a;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

Test(seal, a_corrupt_segment_or_checkpoint_fails_the_open_by_name)
{
    static script s;
    make_script(&s, 78);
    char dir[64], segdir[96], name[256];
    make_tmpdir(dir, sizeof(dir));
    snprintf(segdir, sizeof(segdir), "%s/segments", dir);
    fake_clock clk;
    answers want = sealed_and_closed(&s, dir, &clk);
    free(want.b);
    ff_engine_opts o = seal_opts(&clk, dir);
    ff_engine *e = NULL;
    ff_engine_recovery rep;

    garble(segdir, "seg-", -20, name, sizeof(name)); /* the trailer's checksum */
    cr_assert_eq(ff_engine_open(&e, &o, &rep), FF_ECORRUPT);
    cr_assert_not_null(strstr(rep.error, name), "error \"%s\" names %s", rep.error, name);
    garble(segdir, name, -20, name, sizeof(name)); /* repaired */
    e = reopen(dir, &clk, &rep);
    ff_engine_close(e);

    garble(dir, "topology-", 40, name, sizeof(name)); /* the topology snapshot */
    cr_assert_eq(ff_engine_open(&e, &o, &rep), FF_ECORRUPT);
    cr_assert_not_null(strstr(rep.error, name), "error \"%s\" names %s", rep.error, name);
    garble(dir, name, 40, name, sizeof(name)); /* repaired */
    e = reopen(dir, &clk, &rep);
    ff_engine_close(e);

    garble(dir, "checkpoint.ffc", 40, name, sizeof(name));
    cr_assert_eq(ff_engine_open(&e, &o, &rep), FF_ECORRUPT);
    cr_assert_not_null(strstr(rep.error, "checkpoint.ffc"), "error \"%s\"", rep.error);
    rm_tree(dir);
}

/* The names of the topology snapshots in dir (at most 4). */
static size_t snapshots(const char *dir, char names[4][256])
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "topology-", 9) == 0 && n < 4)
            snprintf(names[n++], 256, "%s", de->d_name);
    closedir(d);
    return n;
}

static size_t temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        n += len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0;
    }
    closedir(d);
    return n;
}

/* Checkpoints name a topology snapshot written only when the topology changed: many
 * seals share one, a change makes the next checkpoint write the next one and remove the
 * old, and a reopen rebuilds the topology from it (the log before it is released). */
Test(seal, the_topology_snapshot_is_rewritten_only_when_the_topology_changes)
{
    static script s;
    make_script(&s, 91);
    char dir[64], first[4][256], now[4][256];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.log_file_bytes = 4096;
    ff_engine *e = open_engine(&o);
    topology(e);
    play(e, &clk, &s, 0, NEVENTS / 2, NULL);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.segments_sealed, 2, "several checkpoints were written");
    cr_assert_eq(snapshots(dir, first), 1, "one snapshot for all of them");

    put_space(e, 9, "S9", false); /* a change: the next checkpoint takes a new snapshot */
    play(e, &clk, &s, NEVENTS / 2, NEVENTS, NULL);
    clk.now += FF_HOUR;
    ff_engine_tick(e);
    ff_engine_tick(e);
    cr_assert_eq(snapshots(dir, now), 1, "the old snapshot was removed");
    cr_assert_str_neq(now[0], first[0]);
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.log_files_released, 0);
    answers want = answers_all(e, &s);
    ff_engine_close(e);

    e = open_engine(&o);
    ff_space_info info;
    cr_assert_eq(ff_engine_space_get(e, 9, &info), 0, "space 9 came back from the snapshot");
    answers got = answers_all(e, &s);
    assert_same(&want, &got, "reopened from the snapshot");
    ff_engine_close(e);
    free(want.b), free(got.b);
    rm_tree(dir);
}

/* Flips byte off of every segment file in dir. */
static void garble_segments(const char *dir, long off)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    char name[256];
    for (struct dirent *de; (de = readdir(d));)
        if (strncmp(de->d_name, "seg-", 4) == 0) garble(dir, de->d_name, off, name, sizeof(name));
    closedir(d);
}

/* A seal, merge or commit job that fails says why, naming the file (ff_engine_seal_error,
 * which footfalld prints): the corrupt segment a merge read, the segment a seal could not
 * write, the checkpoint a commit could not write. A job that succeeds clears it. */
Test(seal, a_failed_job_names_its_file)
{
    static script s;
    make_script(&s, 45);
    char dir[64], segdir[96], away[128];
    make_tmpdir(dir, sizeof(dir));
    snprintf(segdir, sizeof(segdir), "%s/segments", dir);
    snprintf(away, sizeof(away), "%s/segments.away", dir);
    fake_clock clk = {.now = T0};
    ff_engine_opts o = seal_opts(&clk, dir);
    o.seal_async = true;
    ff_engine *e = open_engine(&o);
    topology(e);
    int i = 0;
    ff_seal_job *j = play_until_job(e, &clk, &s, &i, FF__JOB_SEAL, 100);
    cr_assert_not_null(j);
    cr_assert_eq(rename(segdir, away), 0); /* where the seal writes is gone */
    cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), -ENOENT);
    const char *why = ff_engine_seal_error(e);
    cr_assert_not_null(strstr(why, "/segments/seg-"), "error \"%s\"", why);
    cr_assert_not_null(strstr(why, strerror(ENOENT)), "error \"%s\"", why);
    cr_assert_eq(rename(away, segdir), 0);

    j = play_until_job(e, &clk, &s, &i, FF__JOB_COMMIT, i); /* a commit names its file too */
    cr_assert_not_null(j, "no commit job was begun");
    char blocker[128];
    snprintf(blocker, sizeof(blocker), "%s/checkpoint.ffc.tmp", dir);
    cr_assert_eq(mkdir(blocker, 0755), 0);
    cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), -EISDIR);
    why = ff_engine_seal_error(e);
    cr_assert_not_null(strstr(why, "/checkpoint.ffc.tmp: "), "error \"%s\"", why);
    cr_assert_not_null(strstr(why, strerror(EISDIR)), "error \"%s\"", why);
    cr_assert_eq(rmdir(blocker), 0);

    j = play_until_job(e, &clk, &s, &i, FF__JOB_MERGE, i);
    cr_assert_not_null(j, "no merge job was begun");
    cr_assert_str_empty(ff_engine_seal_error(e), "the jobs since succeeded");
    garble_segments(segdir, 40); /* inside the first block: read by the merge */
    cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), FF_ECORRUPT);
    why = ff_engine_seal_error(e);
    cr_assert_not_null(strstr(why, "corrupt at offset"), "error \"%s\"", why);
    cr_assert_not_null(strstr(why, "/segments/seg-"), "error \"%s\"", why);

    ff_engine_close(e);
    rm_tree(dir);
}

/* The bytes of dir/name, into buf (at most n); their number, -1 if missing. */
static ssize_t slurp(const char *dir, const char *name, char *buf, size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t k = read(fd, buf, n);
    close(fd);
    return k;
}

/* A commit of e as it is now: ff_engine_checkpoint, or with seal_async the commit job a
 * late event into sealed history makes due (sequence number seq). */
static int commit_now(ff_engine *e, bool async, uint16_t seq)
{
    if (!async) return ff_engine_checkpoint(e);
    ff_event late = ev_make(101, T0 + FF_SECOND / 2, 1, seq);
    uint8_t out;
    cr_assert_eq(ff_engine_ingest(e, &late, 1, &out, NULL), 0);
    cr_assert_eq(out, FF_OUT_LATE);
    ff_engine_tick(e); /* a failed commit is retried after a tick */
    ff_seal_job *j;
    cr_assert_eq(ff_engine_seal_begin(e, &j), 1);
    cr_assert_eq(ff__seal_job_kind(j), FF__JOB_COMMIT);
    return ff_engine_seal_end(e, j, ff_engine_seal_run(j));
}

/* A checkpoint whose rename happened names its topology snapshot even when the
 * directory fsync after it failed. The retry, after a topology change, must not write
 * that snapshot's number again: a crash before the retry's own checkpoint would leave the
 * first one with a topology from after its position, and a restart would apply the
 * change again (here the deletion of a space that is not there: it would not start).
 * Numbers are never reused; the snapshots of failed commits go at the next one that
 * succeeds; a failed commit's snapshot serves the retry when nothing changed since. A
 * snapshot or checkpoint whose write fails leaves no temp file behind. */
Test(seal, a_snapshot_number_is_never_reused_after_a_failed_commit)
{
    for (int async = 0; async < 2; async++) {
        static script s;
        make_script(&s, 93);
        char dir[64], names[4][256], named[256];
        static char was[1 << 16], is[1 << 16];
        make_tmpdir(dir, sizeof(dir));
        fake_clock clk = {.now = T0};
        ff_engine_opts o = seal_opts(&clk, dir);
        o.seal_async = async;
        o.max_lateness_us = 10 * FF_HOUR;
        ff_engine *e = open_engine(&o);
        topology(e);
        int i = 0;
        if (async) {
            ff_seal_job *j = play_until_job(e, &clk, &s, &i, FF__JOB_SEAL, -1);
            cr_assert_eq(ff_engine_seal_end(e, j, ff_engine_seal_run(j)), 0);
        } else {
            play(e, &clk, &s, 0, NEVENTS / 4, NULL);
        }
        cr_assert_eq(commit_now(e, async, 1000), 0);
        cr_assert_eq(snapshots(dir, names), 1);

        put_space(e, 77, "S77", false);
        ff__seal_test_stop = FF__FAIL_DIRSYNC;
        cr_assert_eq(commit_now(e, async, 1001), -EIO);
        cr_assert_eq(ff__seal_test_stop, FF__STOP_HIT);
        ff__seal_test_stop = FF__STOP_NONE;
        cr_assert_eq(snapshots(dir, names), 2, "the old and the failed commit's snapshots");
        snprintf(named, sizeof(named), "%s", strcmp(names[0], names[1]) > 0 ? names[0] : names[1]);
        ssize_t n = slurp(dir, named, was, sizeof(was)); /* what checkpoint.ffc names now */
        cr_assert_gt(n, 0);

        cr_assert_eq(ff_engine_space_delete(e, 77), 0);
        ff__seal_test_stop = FF__STOP_CKPT_TMP; /* a crash before the retry's rename */
        cr_assert_eq(commit_now(e, async, 1002), -EINTR);
        cr_assert_eq(ff__seal_test_stop, FF__STOP_HIT);
        ff__seal_test_stop = FF__STOP_NONE;
        cr_assert_eq(slurp(dir, named, is, sizeof(is)), n, "%s was written again", named);
        cr_assert(memcmp(was, is, (size_t)n) == 0, "%s was written again", named);
        answers want = answers_all(e, &s);
        ff_engine_close(e);

        ff_engine_recovery rep;
        e = NULL;
        int rc = ff_engine_open(&e, &o, &rep);
        cr_assert_eq(rc, 0, "async %d: reopen: %s (%s)", async, ff_strerror(rc), rep.error);
        cr_assert_eq(snapshots(dir, names), 1); /* the open may have committed anew */
        snprintf(named, sizeof(named), "%s", names[0]);
        answers got = answers_all(e, &s);
        assert_same(&want, &got, "after the crash");
        ff_space_info info;
        cr_assert_eq(ff_engine_space_get(e, 77, &info), FF_ENOTFOUND);

        put_space(e, 78, "S78", false); /* a failed commit, then one that succeeds */
        ff__seal_test_stop = FF__FAIL_DIRSYNC;
        cr_assert_eq(commit_now(e, async, 1003), -EIO);
        ff__seal_test_stop = FF__STOP_NONE;
        cr_assert_eq(snapshots(dir, names), 2);
        char spare[256];
        snprintf(spare, sizeof(spare), "%s", strcmp(names[0], named) == 0 ? names[1] : names[0]);
        cr_assert_eq(commit_now(e, async, 1004), 0, "the topology did not change since");
        cr_assert_eq(snapshots(dir, names), 1, "the old snapshot was removed");
        cr_assert_str_eq(names[0], spare, "the failed commit's snapshot serves");

        put_space(e, 79, "S79", false);
        ff__seal_test_stop = FF__FAIL_DIRSYNC;
        cr_assert_eq(commit_now(e, async, 1005), -EIO);
        ff__seal_test_stop = FF__STOP_NONE;
        put_space(e, 80, "S80", false);
        cr_assert_eq(commit_now(e, async, 1006), 0);
        cr_assert_eq(snapshots(dir, names), 1, "the failed commit's snapshot was removed");
        cr_assert_str_gt(names[0], spare);

        put_space(e, 81, "S81", false);      /* failed writes leave no temp file behind */
        ff__seal_test_stop = FF__FAIL_WRITE; /* the new snapshot's */
        cr_assert_eq(commit_now(e, async, 1007), -EIO);
        cr_assert_eq(ff__seal_test_stop, FF__STOP_HIT);
        cr_assert_eq(temp_files(dir), 0, "a failed snapshot left its temp file");
        ff__seal_test_stop = FF__STOP_NONE;
        cr_assert_eq(commit_now(e, async, 1008), 0);
        ff__seal_test_stop = FF__FAIL_WRITE; /* the checkpoint's: the snapshot is current */
        cr_assert_eq(commit_now(e, async, 1009), -EIO);
        cr_assert_eq(ff__seal_test_stop, FF__STOP_HIT);
        cr_assert_eq(temp_files(dir), 0, "a failed checkpoint left its temp file");
        ff__seal_test_stop = FF__STOP_NONE;
        cr_assert_eq(commit_now(e, async, 1010), 0);
        cr_assert_eq(snapshots(dir, names), 1);
        free(want.b), free(got.b);
        want = answers_all(e, &s);
        ff_engine_close(e);
        e = open_engine(&o);
        cr_assert_eq(ff_engine_space_get(e, 80, &info), 0);
        got = answers_all(e, &s);
        assert_same(&want, &got, "reopened");
        ff_engine_close(e);
        free(want.b), free(got.b);
        rm_tree(dir);
    }
}

static int count_row(void *ctx, const ff_occ_row *r)
{
    (void)r;
    (*(size_t *)ctx)++;
    return 0;
}

Test(seal, a_corrupt_block_is_an_error_never_rows)
{
    static script s;
    make_script(&s, 79);
    char dir[64], segdir[96], name[256];
    make_tmpdir(dir, sizeof(dir));
    snprintf(segdir, sizeof(segdir), "%s/segments", dir);
    fake_clock clk;
    answers want = sealed_and_closed(&s, dir, &clk);
    free(want.b);
    garble(segdir, "seg-", 40, name, sizeof(name)); /* inside the first block */
    ff_engine_recovery rep;
    ff_engine *e = reopen(dir, &clk, &rep); /* blocks are checked when read */
    int bad = 0;
    for (uint32_t id = 1; id <= NSPACES; id++) {
        size_t n = 0;
        int rc = ff_engine_rows(e, id, FF_TS_MIN, FF_TS_MAX, NULL, count_row, &n);
        cr_assert(rc == 0 || rc == FF_ECORRUPT, "rows: %s", ff_strerror(rc));
        bad += rc == FF_ECORRUPT;
    }
    cr_assert_eq(bad, 1);
    ff_engine_close(e);
    rm_tree(dir);
}

/* Flips the last non-zero byte of the newest log file of dir: the last record no longer
 * checks, and recovery cuts it as a torn tail. */
static void garble_log_tail(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    char last[256] = "";
    struct dirent *de;
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "log-", 4) == 0 && strstr(de->d_name, ".ffl") &&
            !strstr(de->d_name, ".tmp") && strcmp(de->d_name, last) > 0)
            snprintf(last, sizeof(last), "%s", de->d_name);
    closedir(d);
    cr_assert_neq(last[0], 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, last);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    off_t size = lseek(fd, 0, SEEK_END), at = size;
    unsigned char b = 0;
    while (at > 0 && b == 0) cr_assert_eq(pread(fd, &b, 1, --at), 1);
    b ^= 0xff;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* The script, then one more event ev (after a crash point `stop` when not NONE); the
 * log record of ev is cut: answers equal those of the script alone. */
static void cut_last_event(uint64_t seed, ff_event ev, int stop)
{
    static script s;
    make_script(&s, seed);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock clk;
    ff_engine *e = sealing_run(&s, dir, &clk, NULL);
    answers want = answers_all(e, &s);
    if (ev.ts == 0) /* late: inside sealed history */
        ev.ts = ff_engine_horizon(e) - 10 * FF_MINUTE;
    if (ev.ts > clk.now) clk.now = ev.ts;
    ff__seal_test_stop = stop;
    uint8_t o;
    cr_assert_eq(ff_engine_ingest(e, &ev, 1, &o, NULL), 0);
    cr_assert(o == FF_OUT_ACCEPTED || o == FF_OUT_LATE, "outcome %d", o);
    cr_assert_eq(ff__seal_test_stop, stop == FF__STOP_NONE ? FF__STOP_NONE : FF__STOP_HIT);
    ff__seal_test_stop = FF__STOP_NONE;
    ff_engine_close(e);
    garble_log_tail(dir);
    ff_engine_recovery rep;
    e = reopen(dir, &clk, &rep);
    cr_assert_gt(rep.log.cut_bytes, 0);
    answers got = answers_all(e, &s);
    assert_same(&want, &got, "log tail cut");
    ff_engine_close(e);
    free(want.b), free(got.b);
    rm_tree(dir);
}

Test(seal, a_cut_log_tail_after_the_checkpoint_loses_only_that_record)
{
    /* a fresh event after everything, and a late one into sealed history whose
     * segment rewrite was never committed */
    cut_last_event(91, ev_make(100, T0 + SPAN + 2 * FF_HOUR, 1, 9), FF__STOP_NONE);
    cut_last_event(92, ev_make(101, 0, -1, 9), FF__STOP_AMEND);
}

/* ---- windows and cursors across segment boundaries ---- */

typedef struct pager {
    answers *a;
    size_t n, limit;
    ff_row_key last;
} pager;

static int pager_cb(void *ctx, const ff_occ_row *r)
{
    pager *p = ctx;
    if (p->n == p->limit) return 1;
    p->n++;
    p->last = (ff_row_key){r->ts, r->dpu_id, r->seq, r->direction};
    return ans_row_cb(p->a, r);
}

/* Random windows of rows (paged with cursors), DPU events, counts and buckets. */
static answers windows_of(ff_engine *e, uint64_t seed)
{
    static ff_bucket bk[FF_MAX_BUCKETS];
    rng_state = seed;
    answers a = {.with_revision = true, .with_status = true};
    for (int q = 0; q < 60; q++) {
        uint32_t id = 1 + rnd(NSPACES);
        int64_t start = T0 - FF_MINUTE + (int64_t)rnd((uint32_t)(SPAN / FF_SECOND)) * FF_SECOND;
        int64_t end = start + 1 + (int64_t)rnd((uint32_t)(2 * FF_HOUR / FF_SECOND)) * FF_SECOND;
        pager p = {.a = &a, .limit = 1 + rnd(9)};
        const ff_row_key *after = NULL;
        for (;;) { /* page to the end */
            p.n = 0;
            int rc = ff_engine_rows(e, id, start, end, after, pager_cb, &p);
            cr_assert(rc == 0 || rc == 1);
            if (rc == 0) break;
            after = &p.last;
        }
        for (uint32_t d = 100; d < 100 + NDPUS; d++)
            cr_assert_eq(ff_engine_dpu_events(e, d, start, end, ans_event_cb, &a), 0);
        size_t nb;
        int64_t interval = (1 + rnd(900)) * FF_SECOND;
        cr_assert_eq(ff_engine_counts(e, id, start, end, interval, bk, &nb, NULL), 0);
        ans_put(&a, bk, nb * sizeof(bk[0]));
        ff_count c;
        memset(&c, 0, sizeof(c));
        cr_assert_eq(ff_engine_count(e, id, true, start, &c), 0);
        ans_put(&a, &c, sizeof(c));
    }
    return a;
}

Test(seal, windows_and_cursors_across_segments_equal_the_in_memory_engine)
{
    static script s;
    make_script(&s, 123);
    fake_clock c1 = {.now = T0};
    ff_engine_opts o = seal_opts(&c1, NULL);
    ff_engine *mem = open_engine(&o);
    topology(mem);
    play(mem, &c1, &s, 0, NEVENTS, NULL);
    char dir[64];
    make_tmpdir(dir, sizeof(dir));
    fake_clock c2;
    ff_engine *e = sealing_run(&s, dir, &c2, NULL);
    c1.now += FF_HOUR;
    ff_engine_tick(mem);
    ff_engine_tick(mem);
    answers want = windows_of(mem, 9), got = windows_of(e, 9);
    assert_same(&want, &got, "windows");
    ff_engine_close(mem);
    ff_engine_close(e);
    free(want.b), free(got.b);
    rm_tree(dir);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    cr_assert(a && b);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof(buf), a)) > 0) cr_assert_eq(fwrite(buf, 1, k, b), k);
    fclose(a);
    fclose(b);
}

Test(seal, recovery_opens_the_versions_the_checkpoint_names_and_removes_the_rest)
{
    static script s;
    make_script(&s, 31);
    char dir[64], segdir[96], name[256], from[512], to[512];
    make_tmpdir(dir, sizeof(dir));
    snprintf(segdir, sizeof(segdir), "%s/segments", dir);
    fake_clock clk;
    answers want = sealed_and_closed(&s, dir, &clk);
    size_t live = segment_files(dir);
    /* an interrupted write, and a higher version no checkpoint names (a rewrite that
     * never committed) holding the rows of another segment */
    ff_seg_entry *v;
    size_t nv;
    cr_assert_eq(ff_seg_list(segdir, 0, &v, &nv), 0);
    cr_assert_geq(nv, 2);
    char hi[FF_SEG_NAME_MAX];
    ff_seg_name(hi, v[0].start, v[0].end, v[0].version + 1);
    snprintf(name, sizeof(name), "%s", v[0].name);
    snprintf(from, sizeof(from), "%s/%s", segdir, v[1].name); /* other rows */
    snprintf(to, sizeof(to), "%s/%s.tmp", segdir, name);
    copy_file(from, to);
    snprintf(to, sizeof(to), "%s/%s", segdir, hi);
    copy_file(from, to);
    free(v);
    cr_assert_eq(segment_files(dir), live + 2);
    ff_engine_recovery rep;
    ff_engine *e = reopen(dir, &clk, &rep);
    cr_assert_eq(segment_files(dir), live);
    answers got = answers_all(e, &s);
    assert_same(&want, &got, "leftovers ignored");
    ff_engine_close(e);
    free(want.b), free(got.b);
    rm_tree(dir);
}
