/*
 * test_replay.c -- recovery through a real log in a temporary directory: after close
 * and reopen (and after a reopen without a clean close) every answer is identical,
 * including revisions and statuses, and admission goes on where it stopped.
 */
#include "engine_testutil.h"

static fake_clock clk;
static char dir[64];

static void setup(void)
{
    make_tmpdir(dir, sizeof(dir));
    clk.now = T0 + 30 * FF_DAY;
}

static void teardown(void)
{
    rm_tree(dir);
}

static ff_engine *open_dir(ff_engine_recovery *rep)
{
    ff_engine_opts o = test_opts(&clk);
    o.data_dir = dir;
    o.log_file_bytes = 8192;  /* several files: rotation during the test */
    o.seal_rows = UINT64_MAX; /* the log alone (sealing: test_seal.c) */
    o.seal_age_us = INT64_MAX;
    ff_engine *e = NULL;
    ff_engine_recovery r;
    if (!rep) rep = &r;
    int rc = ff_engine_open(&e, &o, rep);
    cr_assert_eq(rc, 0, "open %s: %s (%s)", dir, ff_strerror(rc), rep->log.cut_reason);
    return e;
}

static const uint32_t ids[] = {1, 2, 3};

static void snapshot(ff_engine *e, answers *a, int64_t from)
{
    int64_t times[40];
    for (int i = 0; i < 40; i++) times[i] = from + (int64_t)i * 4 * FF_HOUR;
    a->n = 0;
    a->with_revision = a->with_status = true;
    answers_of(e, a, ids, 3, times, 40, from, from + 7 * FF_DAY, FF_HOUR);
}

/* Builds a history with every kind of log record: topology of all kinds, events in
 * batches, duplicates, late amendments, re-attribution, an idle advance. */
static size_t build_history(ff_engine *e, ff_event **pev)
{
    sample_topology(e);
    put_space(e, 3, "Clamped", true);
    put_space(e, 4, "Doomed", false);
    cr_assert_eq(ff_engine_space_delete(e, 4), 0);
    put_space(e, 2, "Space B renamed", false);
    ff_event *ev;
    size_t n = load_sample(&ev);
    cr_assert_eq(assign_at(e, 900, 1, 3, 0, FF_TS_MIN), 0);
    for (size_t off = 0; off < n; off += 50) {
        size_t k = n - off < 50 ? n - off : 50;
        cr_assert_eq(ff_engine_ingest(e, ev + off, k, NULL, NULL), 0);
        /* DPU 900 mirrors 283's events in reverse direction into the clamped space */
        for (size_t i = off; i < off + k; i++)
            if (ev[i].dpu_id == 283) ingest1(e, 900, ev[i].ts, -ev[i].direction, 1);
    }
    int64_t last = ev[n - 1].ts;
    /* a late event amends space A and B */
    cr_assert_eq(ingest1(e, 423, last - FF_HOUR, 1, 7), FF_OUT_LATE);
    /* a move of 423 after H re-attributes its later pending events */
    cr_assert_eq(ingest1(e, 423, last + 3 * FF_MINUTE, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(assign_at(e, 423, 2, 3, 0, last + 2 * FF_MINUTE), 0);
    ingest1(e, 423, last + 4 * FF_MINUTE, 1, 0);
    /* and the clock runs on: idle advance to max_ts */
    clk.now += FF_HOUR;
    ff_engine_tick(e);
    cr_assert_eq(ff_engine_horizon(e), last + 4 * FF_MINUTE);
    ingest1(e, 283, last + 10 * FF_MINUTE, 1, 0); /* H moves from max_ts - settle again */
    cr_assert_eq(ff_engine_sync(e), 0);
    cr_assert_geq(ff_engine_durable(e), ff_engine_written(e));
    cr_assert_gt(ff_engine_written(e), 0);
    *pev = ev;
    return n;
}

Test(replay, reopen_gives_identical_answers_revisions_and_statuses, .init = setup, .fini = teardown)
{
    ff_engine *e = open_dir(NULL);
    ff_event *ev;
    size_t n = build_history(e, &ev);
    answers before = {0}, after = {0};
    snapshot(e, &before, ev[0].ts);
    ff_space_info a;
    cr_assert_eq(ff_engine_space_get(e, 1, &a), 0);
    cr_assert_eq(a.revision, 1);
    int64_t h = ff_engine_horizon(e);
    ff_engine_check(e);
    ff_engine_close(e);

    ff_engine_recovery rep;
    e = open_dir(&rep);
    cr_assert_gt(rep.events_replayed, n);
    cr_assert_eq(rep.topo_ops_replayed, 12);
    cr_assert_gt(rep.log.files, 1);
    ff_engine_check(e);
    cr_assert_eq(ff_engine_horizon(e), h);
    snapshot(e, &after, ev[0].ts);
    cr_assert_eq(after.n, before.n);
    cr_assert(memcmp(after.b, before.b, after.n) == 0);
    const ff_assignment *v;
    size_t nv;
    cr_assert_eq(ff_engine_dpu_get(e, 423, &v, &nv), 0);
    cr_assert_eq(nv, 2);
    cr_assert_eq(ff_engine_space_by_name(e, "Space B renamed"), 2);
    ff_space_info info;
    cr_assert_eq(ff_engine_space_get(e, 4, &info), FF_ENOTFOUND);
    /* admission continues: old events are duplicates, a new one counts and is logged */
    cr_assert_eq(ingest1(e, 423, ev[5].ts, ev[5].direction, 0), FF_OUT_DUPLICATE);
    int64_t next = ff_engine_horizon(e) + 6 * FF_MINUTE;
    cr_assert_eq(ingest1(e, 283, next, 1, 0), FF_OUT_ACCEPTED);
    snapshot(e, &before, ev[0].ts);
    ff_engine_close(e);

    e = open_dir(NULL);
    snapshot(e, &after, ev[0].ts);
    cr_assert(after.n == before.n && memcmp(after.b, before.b, after.n) == 0);
    ff_engine_close(e);
    free(before.b);
    free(after.b);
    free(ev);
}

Test(replay, refused_batches_and_no_op_topology_write_nothing, .init = setup, .fini = teardown)
{
    ff_engine *e = open_dir(NULL);
    sample_topology(e);
    uint64_t w = ff_engine_written(e);
    sample_topology(e); /* idempotent: nothing new */
    cr_assert_eq(ff_engine_written(e), w);
    cr_assert_eq(ingest1(e, 12345, T0, 1, 0), FF_OUT_REFUSED_UNKNOWN_DPU);
    cr_assert_eq(ff_engine_written(e), w);
    cr_assert_eq(ff_engine_space_delete(e, 1), FF_ECONFLICT);
    cr_assert_eq(ff_engine_written(e), w);
    cr_assert_eq(ingest1(e, 283, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_gt(ff_engine_written(e), w);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_gt(st.log_bytes, 0);
    cr_assert_geq(st.log_files, 1);
    ff_engine_close(e);
    ff_engine_recovery rep;
    e = open_dir(&rep);
    cr_assert_eq(rep.events_replayed, 1);
    cr_assert_eq(rep.topo_ops_replayed, 6);
    cr_assert_eq(occ_latest(e, 1), 1);
    ff_engine_close(e);
}

Test(replay, a_batch_the_log_cannot_take_is_refused_whole, .init = setup, .fini = teardown)
{
    ff_engine *e = open_dir(NULL);
    sample_topology(e);
    size_t n = FF_LOG_MAX_PAYLOAD / sizeof(ff_event) + 1;
    ff_event *ev = ff_xcalloc(n, sizeof(*ev));
    for (size_t i = 0; i < n; i++) ev[i] = ev_make(283, T0 + (int64_t)i, 1, 0);
    uint64_t w = ff_engine_written(e);
    ff_ingest_result r;
    cr_assert_eq(ff_engine_ingest(e, ev, n, NULL, &r), FF_ETOOBIG);
    cr_assert_eq(r.accepted, 0);
    cr_assert_eq(ff_engine_written(e), w);
    cr_assert_eq(occ_latest(e, 1), 0);
    cr_assert_eq(ff_engine_ingest(e, ev, n - 1, NULL, &r), 0);
    cr_assert_eq(r.accepted, n - 1);
    ff_engine_close(e);
    free(ev);
}
