/*
 * test_query.c -- the answers of engine/query.c: count at T and latest, buckets
 * (hand-computed, boundaries, limits), occupancy rows with cursors, a DPU's events,
 * statistics.
 */
#include "engine_testutil.h"

static fake_clock clk;

static ff_engine *fresh(void)
{
    clk.now = T0 + FF_DAY;
    ff_engine_opts o = test_opts(&clk);
    ff_engine *e = open_engine(&o);
    sample_topology(e);
    return e;
}

#define M(x) (T0 + (int64_t)(x)*FF_MINUTE)

/* Space A: +1 @0, +1 @5, -1 @10, +1 @15, -1 @29 (minutes after T0). */
static ff_engine *five_events(void)
{
    ff_engine *e = fresh();
    int mins[] = {0, 5, 10, 15, 29}, dirs[] = {1, 1, -1, 1, -1};
    for (int i = 0; i < 5; i++) cr_assert_eq(ingest1(e, 283, M(mins[i]), dirs[i], 0), 0);
    return e;
}

Test(count, at_t_includes_events_at_t_and_latest_is_the_last_event)
{
    ff_engine *e = five_events();
    cr_assert_eq(occ_at(e, 1, M(0) - 1), 0);
    cr_assert_eq(occ_at(e, 1, M(0)), 1);
    cr_assert_eq(occ_at(e, 1, M(7)), 2);
    cr_assert_eq(occ_at(e, 1, M(10)), 1);
    cr_assert_eq(occ_at(e, 1, FF_TS_MAX), 1);
    cr_assert_eq(occ_at(e, 1, FF_TS_MIN), 0);
    ff_count c;
    cr_assert_eq(ff_engine_count(e, 1, false, 0, &c), 0);
    cr_assert_eq(c.at, M(29));
    cr_assert_eq(c.occupancy, 1);
    cr_assert_not(c.settled);
    cr_assert_eq(ff_engine_count(e, 1, true, M(24), &c), 0);
    cr_assert(c.settled); /* H = T0+24m */
    cr_assert_eq(ff_engine_count(e, 1, true, M(24) + 1, &c), 0);
    cr_assert_not(c.settled);
    cr_assert_eq(ff_engine_count(e, 2, false, 0, &c), 0);
    cr_assert_eq(c.at, FF_TS_MIN);
    cr_assert_eq(c.occupancy, 0);
    cr_assert_eq(ff_engine_count(e, 77, false, 0, &c), FF_ENOTFOUND);
    ff_engine_close(e);
}

Test(count, space_view_shows_latest_occupancy)
{
    ff_engine *e = five_events();
    ff_space_info info;
    cr_assert_eq(ff_engine_space_get(e, 1, &info), 0);
    cr_assert_eq(info.rows, 5);
    cr_assert_eq(info.occupancy, 1);
    cr_assert_eq(info.latest_ts, M(29));
    cr_assert_not(info.settled);
    ff_engine_close(e);
}

static ff_bucket buckets[FF_MAX_BUCKETS];

Test(counts, hand_computed_buckets)
{
    ff_engine *e = five_events();
    size_t n;
    uint64_t rev = 99;
    cr_assert_eq(ff_engine_counts(e, 1, M(0), M(40), 15 * FF_MINUTE, buckets, &n, &rev), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(rev, 0);
    ff_bucket want[3] = {
        {M(0), M(15), 0, 1, 0, 2, 2, 1, true},
        {M(15), M(30), 1, 1, 1, 2, 1, 1, false},
        {M(30), M(40), 1, 1, 1, 1, 0, 0, false},
    };
    for (int i = 0; i < 3; i++) {
        ff_bucket *b = &buckets[i], *w = &want[i];
        cr_assert(b->start == w->start && b->end == w->end, "bucket %d bounds", i);
        cr_assert_eq(b->occupancy_start, w->occupancy_start, "bucket %d", i);
        cr_assert_eq(b->occupancy_end, w->occupancy_end, "bucket %d", i);
        cr_assert(b->min == w->min && b->max == w->max, "bucket %d min/max", i);
        cr_assert(b->entrances == w->entrances && b->exits == w->exits, "bucket %d", i);
        cr_assert_eq(b->settled, w->settled, "bucket %d status", i);
    }
    ff_engine_close(e);
}

Test(counts, bucket_starting_mid_history_folds_what_came_before)
{
    ff_engine *e = five_events();
    size_t n;
    cr_assert_eq(ff_engine_counts(e, 1, M(7), M(8), FF_HOUR, buckets, &n, NULL), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(buckets[0].end, M(8)); /* the last bucket ends at end */
    cr_assert_eq(buckets[0].occupancy_start, 2);
    cr_assert_eq(buckets[0].occupancy_end, 2);
    cr_assert_eq(buckets[0].min, 2);
    /* an event exactly at a bucket start belongs to that bucket, not the one before */
    cr_assert_eq(ff_engine_counts(e, 1, M(5), M(15), 5 * FF_MINUTE, buckets, &n, NULL), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(buckets[0].occupancy_start, 1);
    cr_assert_eq(buckets[0].entrances, 1);
    cr_assert_eq(buckets[0].occupancy_end, 2);
    cr_assert_eq(buckets[1].exits, 1);
    cr_assert_eq(buckets[1].occupancy_end, 1);
    cr_assert_eq(buckets[1].min, 1);
    cr_assert_eq(buckets[1].max, 2);
    ff_engine_close(e);
}

Test(counts, limits_and_bad_arguments)
{
    ff_engine *e = five_events();
    size_t n;
    cr_assert_eq(ff_engine_counts(e, 1, T0, T0 + 10001 * FF_SECOND, FF_SECOND, buckets, &n, NULL),
                 FF_ETOOBIG);
    cr_assert_eq(ff_engine_counts(e, 1, T0, T0 + 10000 * FF_SECOND, FF_SECOND, buckets, &n, NULL),
                 0);
    cr_assert_eq(n, 10000);
    cr_assert_eq(buckets[9999].end, T0 + 10000 * FF_SECOND);
    cr_assert_eq(
        ff_engine_counts(e, 1, T0, T0 + 10 * FF_SECOND + 1, 5 * FF_SECOND, buckets, &n, NULL), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(buckets[2].start, T0 + 10 * FF_SECOND);
    cr_assert_eq(buckets[2].end, T0 + 10 * FF_SECOND + 1);
    cr_assert_eq(ff_engine_counts(e, 1, T0, T0, FF_SECOND, buckets, &n, NULL), FF_EINVAL);
    cr_assert_eq(ff_engine_counts(e, 1, T0, T0 + 1, 0, buckets, &n, NULL), FF_EINVAL);
    cr_assert_eq(ff_engine_counts(e, 1, FF_TS_MIN, FF_TS_MAX, FF_SECOND, buckets, &n, NULL),
                 FF_ETOOBIG);
    cr_assert_eq(ff_engine_counts(e, 1, FF_TS_MIN, FF_TS_MAX, FF_TS_MAX, buckets, &n, NULL), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(ff_engine_counts(e, 9, T0, T0 + 1, 1, buckets, &n, NULL), FF_ENOTFOUND);
    ff_engine_close(e);
}

typedef struct page {
    ff_occ_row rows[64];
    size_t n, limit;
    bool more;
} page;

static int page_cb(void *ctx, const ff_occ_row *r)
{
    page *p = ctx;
    if (p->n == p->limit) {
        p->more = true;
        return 1;
    }
    p->rows[p->n++] = *r;
    return 0;
}

Test(rows, clamp_fold_is_visible_in_rows)
{
    ff_engine *e = fresh();
    put_space(e, 3, "Clamped", true);
    cr_assert_eq(assign_at(e, 700, 0, 3, 0, FF_TS_MIN), 0);
    int dirs[] = {-1, -1, 1, -1, 1, 1};
    for (int i = 0; i < 6; i++) ingest1(e, 700, M(i), dirs[i], 0);
    page p = {.limit = 64};
    cr_assert_eq(ff_engine_rows(e, 3, FF_TS_MIN, FF_TS_MAX, NULL, page_cb, &p), 0);
    int64_t want[] = {0, 0, 1, 0, 1, 2};
    cr_assert_eq(p.n, 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(p.rows[i].occupancy, want[i], "row %d", i);
        cr_assert_eq(p.rows[i].delta, dirs[i]);
    }
    ff_engine_close(e);
}

Test(rows, paging_with_a_cursor_visits_every_row_once_in_canonical_order)
{
    ff_engine *e = fresh();
    cr_assert_eq(assign_at(e, 100, 0, 1, 0, FF_TS_MIN), 0);
    for (int i = 0; i < 10; i++) { /* ties on ts, broken by dpu then seq then direction */
        ingest1(e, 283, M(i / 2), 1, (uint16_t)(i % 2));
        ingest1(e, 100, M(i / 2), i % 2 ? 1 : -1, 0);
    }
    page all = {.limit = 64};
    cr_assert_eq(ff_engine_rows(e, 1, FF_TS_MIN, FF_TS_MAX, NULL, page_cb, &all), 0);
    cr_assert_eq(all.n, 20);
    cr_assert(all.rows[0].dpu_id == 100 && all.rows[0].direction == -1);
    cr_assert(all.rows[1].dpu_id == 100 && all.rows[1].direction == 1);
    cr_assert(all.rows[2].dpu_id == 283 && all.rows[2].seq == 0);
    ff_row_key cur;
    size_t seen = 0;
    for (bool first = true;; first = false) {
        page p = {.limit = 3};
        int rc = ff_engine_rows(e, 1, FF_TS_MIN, FF_TS_MAX, first ? NULL : &cur, page_cb, &p);
        for (size_t i = 0; i < p.n; i++, seen++)
            cr_assert(memcmp(&p.rows[i], &all.rows[seen], sizeof(ff_occ_row)) == 0, "row %zu",
                      seen);
        if (!p.more) {
            cr_assert_eq(rc, 0);
            break;
        }
        cr_assert_eq(rc, 1);
        ff_occ_row *l = &p.rows[p.n - 1];
        cur = (ff_row_key){l->ts, l->dpu_id, l->seq, l->direction};
    }
    cr_assert_eq(seen, 20);
    page win = {.limit = 64};
    cr_assert_eq(ff_engine_rows(e, 1, M(1), M(3), NULL, page_cb, &win), 0);
    cr_assert_eq(win.n, 8);
    cr_assert_eq(win.rows[0].ts, M(1));
    cr_assert_eq(ff_engine_rows(e, 42, 0, 1, NULL, page_cb, &win), FF_ENOTFOUND);
    ff_engine_close(e);
}

typedef struct evlist {
    ff_event ev[32];
    size_t n;
} evlist;

static int ev_cb(void *ctx, const ff_event *ev)
{
    evlist *l = ctx;
    l->ev[l->n++] = *ev;
    return 0;
}

Test(dpu_events, gathers_across_versions_and_orphans_in_ts_order)
{
    ff_engine *e = fresh();
    cr_assert_eq(assign_at(e, 800, 1, 1, 0, M(10)), 0); /* before M(10): orphans */
    cr_assert_eq(assign_at(e, 800, 2, 0, 2, M(20)), 0); /* exit B */
    cr_assert_eq(assign_at(e, 800, 0, 0, 0, M(30)), 0); /* nowhere */
    cr_assert_eq(assign_at(e, 800, 1, 1, 0, M(40)), 0); /* back into A */
    int mins[] = {45, 5, 25, 15, 35, 0, 21};
    for (int i = 0; i < 7; i++) cr_assert_leq(ingest1(e, 800, M(mins[i]), 1, 0), FF_OUT_LATE);
    cr_assert_eq(ingest1(e, 283, M(16), 1, 0), FF_OUT_LATE); /* another DPU in the same space */
    evlist l = {0};
    cr_assert_eq(ff_engine_dpu_events(e, 800, FF_TS_MIN, FF_TS_MAX, ev_cb, &l), 0);
    int want[] = {0, 5, 15, 21, 25, 35, 45};
    cr_assert_eq(l.n, 7);
    for (int i = 0; i < 7; i++) cr_assert_eq(l.ev[i].ts, M(want[i]));
    l.n = 0;
    cr_assert_eq(ff_engine_dpu_events(e, 800, M(5), M(35), ev_cb, &l), 0);
    cr_assert_eq(l.n, 4);
    cr_assert_eq(occ_latest(e, 2), -2);
    cr_assert_eq(ff_engine_dpu_events(e, 801, 0, 1, ev_cb, &l), FF_ENOTFOUND);
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(stats, count_outcomes_and_rows)
{
    ff_engine *e = five_events();
    ingest1(e, 283, M(0), 1, 0);
    ingest1(e, 9, M(0), 1, 0);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_eq(st.outcomes[FF_OUT_ACCEPTED], 5);
    cr_assert_eq(st.outcomes[FF_OUT_DUPLICATE], 1);
    cr_assert_eq(st.outcomes[FF_OUT_REFUSED_UNKNOWN_DPU], 1);
    cr_assert_eq(st.pending_rows + st.settled_rows, 5);
    cr_assert_eq(st.settled_rows, 4);
    cr_assert_eq(st.horizon, M(24));
    cr_assert_eq(st.max_ts, M(29));
    ff_engine_close(e);
}

Test(stats, walked_a_space_a_step_gives_the_same_counts)
{
    ff_engine *e = five_events();
    cr_assert_geq(ff_engine_space_count(e), 2);
    ff_engine_stats all, st;
    ff_engine_stats_get(e, &all);
    ff_engine_stats_walk w = {0};
    cr_assert_not(ff_engine_stats_step(e, &w, 0, &st), "no space, no answer");
    size_t steps = 1;
    while (!ff_engine_stats_step(e, &w, 1, &st)) steps++;
    cr_assert_geq(steps, ff_engine_space_count(e));
    cr_assert_eq(st.pending_rows, all.pending_rows);
    cr_assert_eq(st.settled_rows, all.settled_rows);
    cr_assert_eq(st.sealed_rows, all.sealed_rows);
    cr_assert_eq(st.outcomes[FF_OUT_ACCEPTED], 5);
    cr_assert_eq(st.horizon, all.horizon);

    /* an event taken between two steps counts if its space's step comes after it */
    ff_engine_stats_walk w2 = {0};
    cr_assert_not(ff_engine_stats_step(e, &w2, 0, &st));
    cr_assert_eq(ingest1(e, 283, M(30), 1, 0), 0);
    while (!ff_engine_stats_step(e, &w2, 1, &st)) {
    }
    ff_engine_stats_get(e, &all);
    cr_assert_eq(st.pending_rows + st.settled_rows, all.pending_rows + all.settled_rows);
    cr_assert_eq(st.outcomes[FF_OUT_ACCEPTED], 6);
    ff_engine_close(e);
}

Test(stats, a_topology_change_between_steps_starts_the_walk_over)
{
    ff_engine *e = five_events(); /* DPU 283 counts into space 1 */
    ff_engine_stats st, all;
    ff_engine_stats_walk w = {0};
    cr_assert_not(ff_engine_stats_step(e, &w, 1, &st));
    cr_assert_gt(w.next, 0, "a space was counted");
    /* from T0+25m (after H) the DPU counts into space 2: its row at 29m moves there */
    cr_assert_eq(assign_at(e, 283, 1, 2, 0, M(25)), 0);
    while (!ff_engine_stats_step(e, &w, 1, &st)) {
    }
    ff_engine_stats_get(e, &all);
    cr_assert_eq(st.pending_rows, all.pending_rows, "%llu rows pending, %llu counted",
                 (unsigned long long)all.pending_rows, (unsigned long long)st.pending_rows);
    cr_assert_eq(st.settled_rows, all.settled_rows);
    cr_assert_eq(w.restarts, 1);

    /* a topology that keeps changing: after two restarts the rest goes in one step */
    ff_engine_stats_walk w2 = {0};
    cr_assert_not(ff_engine_stats_step(e, &w2, 1, &st));
    cr_assert_eq(assign_at(e, 283, 1, 1, 0, M(26)), 0);
    cr_assert_not(ff_engine_stats_step(e, &w2, 1, &st));
    cr_assert_eq(assign_at(e, 283, 1, 2, 0, M(27)), 0);
    cr_assert(ff_engine_stats_step(e, &w2, 1, &st));
    ff_engine_stats_get(e, &all);
    cr_assert_eq(st.pending_rows + st.settled_rows, all.pending_rows + all.settled_rows);
    ff_engine_close(e);
}
