/*
 * test_archive.c -- archived history (engine/archive.c): the plan takes only old whole
 * segments, oldest first; after archiving, answers into archived history are
 * FF_EARCHIVED and every other answer is unchanged; with archive_dir every answer is
 * byte-identical to before (no row lost); late events into it are too_old; a running
 * engine adopts the stubs (also with a job in flight meanwhile); and a crash at every
 * step of the archive leaves an engine that opens and answers the same.
 */
#include "engine_testutil.h"
#include "engine/engine_int.h"
#include "storage/archive.h"

#include <sys/stat.h>

#define SETTLE   FF_MINUTE
#define LATENESS (20 * FF_MINUTE)
#define SPAN     (6 * FF_HOUR)
enum { NEVENTS = 3000, NTIMES = 48 };

static char dir[256], arc[300];
static fake_clock clk;
static int64_t times[NTIMES];

static ff_engine_opts opts(const char *archive_dir)
{
    ff_engine_opts o = test_opts(&clk);
    o.settle_us = SETTLE;
    o.max_lateness_us = LATENESS;
    o.data_dir = dir;
    o.seal_rows = 100;
    o.seal_age_us = 10 * FF_MINUTE;
    o.seal_merge_rows = 400;
    o.seal_lag_us = 0;
    o.log_file_bytes = 64 * 1024;
    o.archive_dir = archive_dir;
    return o;
}

/* SPAN of events in order (a few late), delivered 1 s after their time, with ticks;
 * then the clock runs an hour past the last one, so H is there. */
static void fill(void)
{
    ff_engine_opts o = opts(NULL);
    ff_engine *e = open_engine(&o);
    sample_topology(e);
    uint64_t r = 88172645463325252ull;
    for (int i = 0; i < NEVENTS; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int64_t ts = T0 + (int64_t)i * (SPAN / NEVENTS);
        if (r % 50 == 0 && i > 100) ts -= (int64_t)(r % 5) * FF_MINUTE; /* late */
        clk.now = T0 + (int64_t)i * (SPAN / NEVENTS) + FF_SECOND;
        ingest1(e, r % 3 ? 283 : 423, ts, (r >> 8) % 5 < 3 ? 1 : -1, (uint16_t)(r >> 20));
        if (i % 7 == 0) ff_engine_tick(e);
    }
    for (int k = 0; k < 60; k++) {
        clk.now += FF_MINUTE;
        ff_engine_tick(e);
    }
    ff_engine_check(e);
    ff_engine_close(e);
    for (int t = 0; t < NTIMES; t++) times[t] = T0 - FF_HOUR + (SPAN + 2 * FF_HOUR) / NTIMES * t;
}

static void setup(void)
{
    make_tmpdir(dir, sizeof(dir));
    snprintf(arc, sizeof(arc), "%s-archive", dir);
    cr_assert_eq(mkdir(arc, 0755), 0);
    clk.now = T0;
    fill();
}

static void teardown(void)
{
    rm_tree(dir);
    rm_tree(arc);
}

static const uint32_t ids[2] = {1, 2};

static answers all_answers(ff_engine *e)
{
    answers a = {.with_revision = true, .with_status = true};
    ff_engine_check(e);
    answers_of(e, &a, ids, 2, times, NTIMES, T0 - 7 * FF_MINUTE, T0 + SPAN + FF_HOUR,
               7 * FF_MINUTE);
    for (uint32_t d = 283; d <= 423; d += 140)
        cr_assert_eq(ff_engine_dpu_events(e, d, FF_TS_MIN, FF_TS_MAX, count_cb, &(size_t){0}), 0);
    return a;
}

static answers answers_now(const char *archive_dir)
{
    ff_engine_opts o = opts(archive_dir);
    ff_engine *e = open_engine(&o);
    answers a = all_answers(e);
    ff_engine_close(e);
    return a;
}

static void assert_same(const answers *x, const answers *y, const char *what)
{
    cr_assert_eq(x->n, y->n, "%s: %zu vs %zu answer bytes", what, x->n, y->n);
    cr_assert(memcmp(x->b, y->b, x->n) == 0, "%s: answers differ", what);
}

/* Archives everything the plan allows; returns the segments moved. */
static size_t archive_all(int64_t older_than)
{
    ff_archive_plan p;
    char err[512];
    cr_assert_eq(ff_engine_archive_plan(dir, older_than, LATENESS, clk.now, &p, err, sizeof(err)),
                 0, "%s", err);
    size_t n = p.n;
    for (size_t i = 0; i < p.n; i++) {
        int rc = ff_engine_archive_one(dir, arc, &p.items[i], clk.now, NULL, err, sizeof(err));
        cr_assert_eq(rc, 0, "%s: %s", p.items[i].name, err);
    }
    ff_engine_archive_plan_free(&p);
    return n;
}

TestSuite(archive, .init = setup, .fini = teardown, .timeout = 120);

Test(archive, plan_takes_old_whole_segments_oldest_first)
{
    ff_archive_plan p;
    char err[512];
    cr_assert_eq(ff_engine_archive_plan(dir, 0, LATENESS, clk.now, &p, err, sizeof(err)), 0);
    cr_assert_gt(p.n, 1, "too few segments to archive: %zu", p.n);
    cr_assert(p.lateness_cut);
    cr_assert_eq(p.cutoff, p.horizon - LATENESS);
    for (size_t i = 0; i < p.n; i++) {
        cr_assert_lt(p.items[i].end, p.cutoff);
        cr_assert(i == 0 ? p.items[i].start == FF_TS_MIN
                         : p.items[i].start == p.items[i - 1].end + 1);
        cr_assert_gt(p.items[i].rows, 0);
    }
    ff_engine_archive_plan_free(&p);
    /* older_than cuts by the wall clock: 3 h ago leaves fewer */
    cr_assert_eq(ff_engine_archive_plan(dir, 3 * FF_HOUR, LATENESS, clk.now, &p, err, sizeof(err)),
                 0);
    cr_assert(!p.lateness_cut);
    for (size_t i = 0; i < p.n; i++) cr_assert_lt(p.items[i].end, clk.now - 3 * FF_HOUR);
    ff_engine_archive_plan_free(&p);
    /* far too old: nothing */
    cr_assert_eq(
        ff_engine_archive_plan(dir, 3650 * FF_DAY, LATENESS, clk.now, &p, err, sizeof(err)), 0);
    cr_assert_eq(p.n, 0);
    ff_engine_archive_plan_free(&p);
}

/* What the engine with the archive answers after upto, for comparing. */
typedef struct outside {
    int64_t occ[2][64], latest[2], rows[2];
    ff_bucket b[2][16];
    size_t nb[2];
} outside;

static void answers_outside(ff_engine *e, int64_t upto, outside *x, bool gone)
{
    for (int s = 1; s <= 2; s++) {
        ff_count c;
        int k = 0;
        if (gone) cr_assert_eq(ff_engine_count(e, s, true, upto - 1, &c), FF_EARCHIVED);
        if (gone) cr_assert_eq(ff_engine_count(e, s, true, T0, &c), FF_EARCHIVED);
        for (int64_t t = upto; t < T0 + SPAN && k < 64; t += 13 * FF_MINUTE, k++) {
            cr_assert_eq(ff_engine_count(e, s, true, t, &c), 0);
            x->occ[s - 1][k] = c.occupancy;
        }
        cr_assert_eq(ff_engine_count(e, s, false, 0, &c), 0);
        x->latest[s - 1] = c.occupancy;
        ff_bucket *b = x->b[s - 1];
        size_t *n = &x->nb[s - 1];
        int want = gone ? FF_EARCHIVED : 0;
        cr_assert_eq(ff_engine_counts(e, s, T0, T0 + SPAN, FF_HOUR, b, n, NULL), want);
        cr_assert_eq(ff_engine_counts(e, s, upto, T0 + SPAN, FF_HOUR, b, n, NULL), want);
        cr_assert_eq(ff_engine_counts(e, s, upto + 1, T0 + SPAN, FF_HOUR, b, n, NULL), 0);
        answers a = {0};
        cr_assert_eq(ff_engine_rows(e, s, FF_TS_MIN, FF_TS_MAX, NULL, ans_row_cb, &a), want);
        free(a.b);
        ff_space_info info;
        cr_assert_eq(ff_engine_space_get(e, s, &info), 0);
        x->rows[s - 1] = (int64_t)info.rows;
    }
    size_t n = 0;
    cr_assert_eq(ff_engine_dpu_events(e, 283, FF_TS_MIN, FF_TS_MAX, count_cb, &n),
                 gone ? FF_EARCHIVED : 0);
}

Test(archive, no_row_lost_and_410_outside_only)
{
    answers before = answers_now(NULL);
    cr_assert_gt(archive_all(2 * FF_HOUR), 0);
    /* with the archive: everything as before */
    answers with = answers_now(arc);
    assert_same(&before, &with, "with archive_dir");
    /* without: archived history is gone, the rest is the same */
    ff_engine_opts o = opts(NULL);
    ff_engine *e = open_engine(&o);
    ff_engine_check(e);
    int64_t upto = ff_engine_archived_upto(e);
    cr_assert_neq(upto, FF_TS_MIN);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.segments_archived, 0);
    cr_assert_eq(st.archived_upto, upto);
    static outside x, y;
    answers_outside(e, upto, &x, true);
    ff_engine_close(e);
    ff_engine_opts oa = opts(arc);
    e = open_engine(&oa);
    cr_assert_eq(ff_engine_archived_upto(e), FF_TS_MIN);
    ff_engine_stats_get(e, &st);
    cr_assert_eq(st.archived_upto, upto);
    answers_outside(e, upto, &y, false);
    ff_engine_close(e);
    for (int s = 0; s < 2; s++) {
        for (int k = 0; k < 64; k++)
            cr_assert_eq(x.occ[s][k], y.occ[s][k], "space %d count %d", s + 1, k);
        cr_assert_eq(x.latest[s], y.latest[s]);
        cr_assert_eq(x.rows[s], y.rows[s]);
        cr_assert_eq(x.nb[s], y.nb[s]);
        for (size_t k = 0; k < x.nb[s]; k++) {
            const ff_bucket *p = &x.b[s][k], *q = &y.b[s][k];
            cr_assert(p->start == q->start && p->end == q->end, "bucket %zu", k);
            cr_assert_eq(p->occupancy_start, q->occupancy_start, "space %d bucket %zu", s + 1, k);
            cr_assert(p->occupancy_end == q->occupancy_end && p->min == q->min &&
                          p->max == q->max && p->entrances == q->entrances &&
                          p->exits == q->exits && p->settled == q->settled,
                      "space %d bucket %zu", s + 1, k);
        }
    }
    free(before.b);
    free(with.b);
}

Test(archive, late_events_into_archived_history_are_too_old)
{
    archive_all(2 * FF_HOUR);
    ff_engine_opts o = opts(arc);
    ff_engine *e = open_engine(&o);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    int64_t upto = st.archived_upto;
    cr_assert_neq(upto, FF_TS_MIN);
    /* even with max_lateness wide open, and with the archive readable */
    cr_assert_eq(ingest1(e, 283, upto, 1, 9), FF_OUT_REFUSED_TOO_OLD);
    cr_assert_eq(ingest1(e, 283, T0, 1, 9), FF_OUT_REFUSED_TOO_OLD);
    ff_engine_check(e);
    ff_engine_close(e);
}

/* What opts.on_archived was told, summed. */
static struct {
    int calls;
    uint32_t segments;
    ff_archive_news last;
} told;

static void on_archived(void *ctx, const ff_archive_news *news)
{
    cr_assert_eq(ctx, &told);
    told.calls++;
    told.segments += news->segments;
    told.last = *news;
}

Test(archive, a_running_engine_adopts_stubs_even_around_a_job)
{
    answers before = answers_now(NULL);
    ff_engine_opts o = opts(NULL);
    o.seal_async = true;
    o.on_archived = on_archived;
    o.on_archived_ctx = &told;
    ff_engine *e = open_engine(&o);
    /* a job in flight (a seal of the last settled rows, or a merge) while the tool runs */
    clk.now += 2 * FF_HOUR;
    ingest1(e, 283, clk.now - 30 * FF_SECOND, 1, 1);
    clk.now += 10 * FF_MINUTE;
    ff_engine_tick(e);
    ff_seal_job *job = NULL;
    ff_engine_seal_begin(e, &job);
    archive_all(2 * FF_HOUR);
    clk.now += 2 * FF_SECOND;
    ff_engine_tick(e); /* a job is in flight: no adoption yet */
    ff_engine_stats st;
    if (job) {
        ff_engine_stats_get(e, &st);
        cr_assert_eq(st.segments_archived, 0);
        cr_assert_eq(told.calls, 0);
        cr_assert_eq(ff_engine_seal_end(e, job, ff_engine_seal_run(job)), 0);
    }
    clk.now += 2 * FF_SECOND;
    ff_engine_tick(e);
    ff_engine_check(e);
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.segments_archived, 0);
    /* the adoption is told once, naming the segments and the end of archived history */
    cr_assert_eq(told.calls, 1);
    cr_assert_eq(told.segments, st.segments_archived);
    cr_assert_eq(told.last.archived_upto, st.archived_upto);
    cr_assert(!told.last.readable);
    cr_assert(strncmp(told.last.first, "seg-", 4) == 0 &&
                  strcmp(told.last.first, told.last.last) <= 0,
              "%s %s", told.last.first, told.last.last);
    clk.now += 2 * FF_SECOND;
    ff_engine_tick(e);
    cr_assert_eq(told.calls, 1, "told again with nothing new");
    while (ff_engine_seal_begin(e, &job)) /* merges after: never of archived segments */
        cr_assert_eq(ff_engine_seal_end(e, job, ff_engine_seal_run(job)), 0);
    ff_engine_check(e);
    ff_count c;
    cr_assert_eq(ff_engine_count(e, 1, true, T0, &c), FF_EARCHIVED);
    ff_engine_close(e);
    /* and the archive holds what it held: the first answers, plus the one event */
    ff_engine_opts oa = opts(arc);
    e = open_engine(&oa);
    ff_engine_check(e);
    ff_count c2;
    cr_assert_eq(ff_engine_count(e, 1, true, T0 + FF_HOUR, &c2), 0);
    ff_engine_close(e);
    answers after = answers_now(arc);
    cr_assert_gt(after.n, 0);
    free(before.b);
    free(after.b);
}

Test(archive, a_crash_at_every_step_loses_nothing)
{
    answers before = answers_now(NULL);
    for (int stop = FF_ARC_STOP_COPY_TMP; stop < FF_ARC_STOP_HIT; stop++) {
        ff_archive_plan p;
        char err[512];
        cr_assert_eq(ff_engine_archive_plan(dir, 0, LATENESS, clk.now, &p, err, sizeof(err)), 0);
        if (p.n == 0) { /* all done by earlier rounds: start over */
            ff_engine_archive_plan_free(&p);
            break;
        }
        ff_arc_test_stop = stop;
        int rc = ff_engine_archive_one(dir, arc, &p.items[0], clk.now, NULL, err, sizeof(err));
        cr_assert_eq(rc, -EINTR, "stop %d: %d %s", stop, rc, err);
        ff_arc_test_stop = FF_ARC_STOP_NONE;
        ff_engine_archive_plan_free(&p);
        answers with = answers_now(arc); /* the engine opens, completing what was committed */
        assert_same(&before, &with, "after a crash, with archive_dir");
        free(with.b);
        ff_engine_opts o = opts(NULL);
        ff_engine *e = open_engine(&o);
        ff_engine_check(e);
        ff_engine_close(e);
    }
    archive_all(0); /* a re-run completes */
    answers with = answers_now(arc);
    assert_same(&before, &with, "after the re-run, with archive_dir");
    free(with.b);
    free(before.b);
}

Test(archive, a_missing_archive_copy_fails_the_open_by_name)
{
    archive_all(2 * FF_HOUR);
    char other[320];
    snprintf(other, sizeof(other), "%s-empty", dir);
    cr_assert_eq(mkdir(other, 0755), 0);
    ff_engine_opts o = opts(other);
    ff_engine_recovery rep;
    ff_engine *e = NULL;
    cr_assert_lt(ff_engine_open(&e, &o, &rep), 0);
    cr_assert(strstr(rep.error, other), "%s", rep.error);
    rmdir(other);
}

/* The tool given a max_lateness smaller than the engine's archives a segment a late
 * event just amended, and the engine crashes before its checkpoint: the event is only
 * in the log. The open without the archive refuses, saying why; with it, the event is
 * replayed into the archived rows (the segment comes back locally). */
Test(archive, a_late_event_replayed_into_a_stub_is_never_lost)
{
    ff_archive_plan p;
    char err[512];
    cr_assert_eq(ff_engine_archive_plan(dir, 0, 0, clk.now, &p, err, sizeof(err)), 0);
    cr_assert_gt(p.n, 0);
    ff_archive_item last = p.items[p.n - 1];
    ff_engine_archive_plan_free(&p);
    int64_t h = p.horizon, ts = last.end - FF_SECOND;
    if (ts < h - LATENESS + FF_MINUTE) cr_skip_test("no archivable segment within the lateness");
    ff_engine_opts o = opts(NULL);
    ff_engine *e = open_engine(&o);
    ff_space_info before;
    cr_assert_eq(ff_engine_space_get(e, 1, &before), 0);
    ff__seal_test_stop = FF__STOP_AMEND;
    cr_assert_eq(ingest1(e, 283, ts, 1, 4242), FF_OUT_LATE);
    cr_assert_eq(ff__seal_test_stop, FF__STOP_HIT);
    ff__seal_test_stop = FF__STOP_NONE;
    cr_assert_eq(ff_engine_sync(e), 0);
    ff_engine_close(e); /* a crash: no checkpoint names the rewrite */
    cr_assert_eq(ff_engine_archive_plan(dir, 0, 0, clk.now, &p, err, sizeof(err)), 0);
    for (size_t i = 0; i < p.n; i++)
        cr_assert_eq(ff_engine_archive_one(dir, arc, &p.items[i], clk.now, NULL, err, sizeof(err)),
                     0, "%s", err);
    ff_engine_archive_plan_free(&p);
    ff_engine_recovery rep;
    e = NULL;
    cr_assert_eq(ff_engine_open(&e, &o, &rep), FF_EARCHIVED);
    cr_assert(strstr(rep.error, "--archive-dir"), "%s", rep.error);
    ff_engine_opts oa = opts(arc);
    e = open_engine(&oa);
    ff_engine_check(e);
    ff_space_info after;
    cr_assert_eq(ff_engine_space_get(e, 1, &after), 0);
    cr_assert_eq(after.rows, before.rows + 1, "the late event is lost");
    ff_engine_close(e);
    e = open_engine(&oa); /* committed: a second open is plain */
    cr_assert_eq(ff_engine_space_get(e, 1, &after), 0);
    cr_assert_eq(after.rows, before.rows + 1);
    ff_engine_close(e);
}

/* A merge job of two segments is in flight while the tool archives them: the merge
 * commits, their stubs name no live segment and are never adopted, the later
 * segments' stubs are; the rows of the pair stay local until the next run archives
 * the merged segment. Nothing is lost at any point. */
Test(archive, a_merge_racing_the_tool_keeps_every_row)
{
    answers before = answers_now(NULL);
    ff_engine_opts o = opts(NULL);
    o.seal_async = true;
    o.seal_merge_rows = 1000000; /* the old pairs fit now: a merge job at once */
    ff_engine *e = open_engine(&o);
    ff_seal_job *job = NULL;
    cr_assert_eq(ff_engine_seal_begin(e, &job), 1);
    cr_assert_eq(ff__seal_job_kind(job), FF__JOB_MERGE);
    char merged_a[FF_SEG_NAME_MAX];
    ff_seg_name(merged_a, e->segs[0].start, e->segs[0].end, e->segs[0].version);
    cr_assert_gt(archive_all(2 * FF_HOUR), 2);
    cr_assert_eq(ff_engine_seal_end(e, job, ff_engine_seal_run(job)), 0);
    cr_assert_eq(ff_engine_seal_begin(e, &job), 1, "no commit job after the merge");
    cr_assert_eq(ff__seal_job_kind(job), FF__JOB_COMMIT);
    cr_assert_eq(ff_engine_seal_end(e, job, ff_engine_seal_run(job)), 0);
    clk.now += 2 * FF_SECOND;
    ff_engine_tick(e);
    ff_engine_check(e);
    cr_assert(!e->segs[0].archived, "the merged segment is local");
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.segments_archived, 0, "later segments' stubs adopted");
    ff_engine_close(e);
    answers with = answers_now(arc);
    assert_same(&before, &with, "after the race, with archive_dir");
    free(with.b);
    /* the merged segment is archived by the next run; the stale stubs go at the open */
    cr_assert_gt(archive_all(2 * FF_HOUR), 0);
    o.seal_merge_rows = 400;
    e = open_engine(&o);
    ff_engine_check(e);
    cr_assert(e->segs[0].archived);
    ff_engine_close(e);
    char stale[FF_ARC_NAME_MAX], path[600];
    ff_arc_stub_name(stale, merged_a);
    snprintf(path, sizeof(path), "%s/segments/%s", dir, stale);
    cr_assert_neq(access(path, F_OK), 0, "a stale stub stayed: %s", stale);
    with = answers_now(arc);
    assert_same(&before, &with, "after the next run, with archive_dir");
    free(with.b);
    free(before.b);
}
