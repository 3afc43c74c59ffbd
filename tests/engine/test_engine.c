/*
 * test_engine.c -- admission, the horizon and the tick (engine/engine.c): each refusal
 * reason, duplicates, late events amended or refused, idle advance, settling.
 */
#include "engine_testutil.h"

static fake_clock clk;

static ff_engine *fresh_with(ff_engine_opts *o)
{
    clk.now = T0 + FF_DAY;
    ff_engine *e = open_engine(o);
    sample_topology(e);
    return e;
}

static ff_engine *fresh(void)
{
    ff_engine_opts o = test_opts(&clk);
    return fresh_with(&o);
}

Test(admission, invalid_events_are_refused_first)
{
    ff_engine *e = fresh();
    ff_event ev[4] = {ev_make(283, T0, 0, 0), ev_make(283, T0, 2, 0), ev_make(283, -1, 1, 0),
                      ev_make(283, T0, 1, 0)};
    ev[3].reserved = 1;
    uint8_t o[4];
    ff_ingest_result r;
    cr_assert_eq(ff_engine_ingest(e, ev, 4, o, &r), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(o[i], FF_OUT_REFUSED_INVALID);
    cr_assert_eq(r.refused, 4);
    cr_assert_eq(r.accepted, 0);
    cr_assert_str_eq(ff_outcome_reason(FF_OUT_REFUSED_INVALID), "invalid");
    ff_engine_close(e);
}

Test(admission, future_is_judged_against_the_injected_clock)
{
    ff_engine *e = fresh();
    cr_assert_eq(ingest1(e, 283, clk.now + 5 * FF_MINUTE, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 283, clk.now + 5 * FF_MINUTE + 1, 1, 0), FF_OUT_REFUSED_FUTURE);
    /* future comes before unknown_dpu */
    cr_assert_eq(ingest1(e, 9999, clk.now + FF_HOUR, 1, 0), FF_OUT_REFUSED_FUTURE);
    cr_assert_str_eq(ff_outcome_reason(FF_OUT_REFUSED_FUTURE), "future");
    ff_engine_close(e);
}

Test(admission, unknown_dpu_is_refused)
{
    ff_engine *e = fresh();
    cr_assert_eq(ingest1(e, 9999, T0, 1, 0), FF_OUT_REFUSED_UNKNOWN_DPU);
    cr_assert_str_eq(ff_outcome_reason(FF_OUT_REFUSED_UNKNOWN_DPU), "unknown_dpu");
    cr_assert_null(ff_outcome_reason(FF_OUT_ACCEPTED));
    ff_engine_close(e);
}

Test(admission, too_old_is_older_than_h_minus_max_lateness)
{
    ff_engine *e = fresh();
    cr_assert_eq(ingest1(e, 283, T0 - 30 * FF_DAY, 1, 0), FF_OUT_ACCEPTED); /* no H yet */
    cr_assert_eq(ingest1(e, 283, T0, 1, 0), FF_OUT_ACCEPTED);
    int64_t h = T0 - 5 * FF_MINUTE;
    cr_assert_eq(ff_engine_horizon(e), h);
    cr_assert_eq(ingest1(e, 283, h - 7 * FF_DAY - 1, 1, 0), FF_OUT_REFUSED_TOO_OLD);
    cr_assert_eq(ingest1(e, 283, h - 7 * FF_DAY, 1, 0), FF_OUT_LATE);
    ff_engine_close(e);
}

Test(admission, duplicates_change_nothing_across_batches_and_within_one)
{
    ff_engine *e = fresh();
    cr_assert_eq(ingest1(e, 423, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 423, T0, 1, 0), FF_OUT_DUPLICATE);
    ff_event ev[4] = {ev_make(423, T0 + 1, -1, 0), ev_make(423, T0 + 1, -1, 0),
                      ev_make(423, T0 + 1, -1, 1), ev_make(423, T0 + 1, 1, 0)};
    uint8_t o[4];
    ff_ingest_result r;
    cr_assert_eq(ff_engine_ingest(e, ev, 4, o, &r), 0);
    cr_assert_eq(o[0], FF_OUT_ACCEPTED);
    cr_assert_eq(o[1], FF_OUT_DUPLICATE);
    cr_assert_eq(o[2], FF_OUT_ACCEPTED); /* another seq */
    cr_assert_eq(o[3], FF_OUT_ACCEPTED); /* another direction */
    cr_assert_eq(r.accepted, 3);
    cr_assert_eq(r.duplicates, 1);
    cr_assert_eq(occ_latest(e, 1), 0);
    cr_assert_eq(occ_latest(e, 2), 0);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_eq(st.outcomes[FF_OUT_DUPLICATE], 2);
    ff_engine_close(e);
}

Test(admission, duplicates_are_found_in_exit_only_spaces_and_orphans)
{
    ff_engine *e = fresh();
    cr_assert_eq(assign_at(e, 50, 0, 0, 2, FF_TS_MIN), 0);
    cr_assert_eq(assign_at(e, 51, 0, 0, 0, FF_TS_MIN), 0);
    cr_assert_eq(ingest1(e, 50, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 50, T0, 1, 0), FF_OUT_DUPLICATE);
    cr_assert_eq(ingest1(e, 51, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 51, T0, 1, 0), FF_OUT_DUPLICATE);
    cr_assert_eq(occ_latest(e, 2), -1);
    ff_engine_close(e);
}

Test(admission, dedup_off_accepts_repeats)
{
    ff_engine_opts o = test_opts(&clk);
    o.dedup_off = true;
    ff_engine *e = fresh_with(&o);
    cr_assert_eq(ingest1(e, 283, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 283, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(occ_latest(e, 1), 2);
    ff_engine_check(e);
    ff_engine_close(e);
}

/* Feeds events at T0 + k minutes for the given k in order; returns the results. */
static void feed(ff_engine *e, const int *mins, const int *dirs, size_t n, uint8_t *o)
{
    for (size_t i = 0; i < n; i++)
        o[i] = (uint8_t)ingest1(e, 423, T0 + mins[i] * FF_MINUTE, dirs[i], 0);
}

Test(late, amend_gives_exactly_the_in_order_answers_and_bumps_revision)
{
    int mins[] = {0, 2, 10, 20, 1}, dirs[] = {1, 1, -1, 1, -1};
    ff_engine *e = fresh();
    uint8_t o[5];
    feed(e, mins, dirs, 5, o); /* H = T0+15m when ts T0+1m arrives */
    cr_assert_eq(o[4], FF_OUT_LATE);
    ff_engine *ref = fresh();
    int smins[] = {0, 1, 2, 10, 20}, sdirs[] = {1, -1, 1, -1, 1};
    feed(ref, smins, sdirs, 5, o);
    for (int m = -1; m <= 21; m++)
        for (uint32_t s = 1; s <= 2; s++)
            cr_assert_eq(occ_at(e, s, T0 + m * FF_MINUTE), occ_at(ref, s, T0 + m * FF_MINUTE));
    ff_count c;
    cr_assert_eq(ff_engine_count(e, 1, true, T0, &c), 0);
    cr_assert_eq(c.revision, 1);
    cr_assert(c.settled);
    cr_assert_eq(ff_engine_count(e, 2, false, 0, &c), 0);
    cr_assert_eq(c.revision, 1); /* both spaces of DPU 423 */
    cr_assert_not(c.settled);
    cr_assert_eq(ff_engine_count(ref, 1, false, 0, &c), 0);
    cr_assert_eq(c.revision, 0);
    ff_engine_check(e);
    ff_engine_close(e);
    ff_engine_close(ref);
}

Test(late, amend_inside_rows_already_settled_by_tick)
{
    ff_engine *e = fresh();
    for (int i = 0; i < 20; i++) cr_assert_eq(ingest1(e, 283, T0 + i * FF_MINUTE, 1, 0), 0);
    ff_engine_tick(e);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_eq(st.settled_rows, 15); /* T0 .. T0+14m <= H = T0+14m */
    cr_assert_eq(st.pending_rows, 5);
    cr_assert_eq(st.pending_row_bytes, 24);
    cr_assert_eq(ingest1(e, 283, T0 + 90 * FF_SECOND, -1, 0), FF_OUT_LATE);
    cr_assert_eq(occ_at(e, 1, T0 + FF_MINUTE), 2);
    cr_assert_eq(occ_at(e, 1, T0 + 2 * FF_MINUTE), 2);
    cr_assert_eq(occ_latest(e, 1), 19);
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(late, reject_refuses_and_changes_nothing)
{
    ff_engine_opts o = test_opts(&clk);
    o.late_reject = true;
    ff_engine *e = fresh_with(&o);
    cr_assert_eq(ingest1(e, 283, T0 + 10 * FF_MINUTE, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 283, T0 + 5 * FF_MINUTE, 1, 0), FF_OUT_REFUSED_LATE);
    cr_assert_eq(ingest1(e, 283, T0 + 5 * FF_MINUTE + 1, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_str_eq(ff_outcome_reason(FF_OUT_REFUSED_LATE), "late");
    ff_count c;
    cr_assert_eq(ff_engine_count(e, 1, false, 0, &c), 0);
    cr_assert_eq(c.occupancy, 2);
    cr_assert_eq(c.revision, 0);
    ff_engine_close(e);
}

Test(horizon, follows_the_largest_ts_minus_settle_and_never_moves_back)
{
    ff_engine *e = fresh();
    cr_assert_eq(ff_engine_horizon(e), FF_TS_MIN);
    ingest1(e, 283, T0 + FF_HOUR, 1, 0);
    cr_assert_eq(ff_engine_horizon(e), T0 + 55 * FF_MINUTE);
    ingest1(e, 283, T0 + 57 * FF_MINUTE, 1, 0);
    cr_assert_eq(ff_engine_horizon(e), T0 + 55 * FF_MINUTE);
    ff_engine_close(e);
}

Test(horizon, idle_advance_after_settle_of_wall_clock)
{
    ff_engine *e = fresh();
    ingest1(e, 283, T0 + FF_HOUR, 1, 0);
    clk.now += 5 * FF_MINUTE - 1;
    ff_engine_tick(e);
    cr_assert_eq(ff_engine_horizon(e), T0 + 55 * FF_MINUTE);
    clk.now += 1;
    ff_engine_tick(e);
    cr_assert_eq(ff_engine_horizon(e), T0 + FF_HOUR);
    ff_count c;
    cr_assert_eq(ff_engine_count(e, 1, false, 0, &c), 0);
    cr_assert(c.settled);
    ff_engine_stats st;
    ff_engine_stats_get(e, &st);
    cr_assert_eq(st.pending_rows, 0);
    cr_assert_eq(st.settled_rows, 1);
    /* an accepted event restarts the wait */
    ingest1(e, 283, T0 + 2 * FF_HOUR, 1, 0);
    clk.now += FF_MINUTE;
    ff_engine_tick(e);
    cr_assert_eq(ff_engine_horizon(e), T0 + 2 * FF_HOUR - 5 * FF_MINUTE);
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(horizon, settle_option_is_honoured)
{
    ff_engine_opts o = test_opts(&clk);
    o.settle_us = FF_SECOND;
    ff_engine *e = fresh_with(&o);
    ingest1(e, 283, T0, 1, 0);
    cr_assert_eq(ff_engine_horizon(e), T0 - FF_SECOND);
    ff_engine_close(e);
}

Test(ingest, empty_batch_is_fine)
{
    ff_engine *e = fresh();
    ff_ingest_result r = {1, 1, 1, 1};
    cr_assert_eq(ff_engine_ingest(e, NULL, 0, NULL, &r), 0);
    cr_assert_eq(r.accepted + r.duplicates + r.late + r.refused, 0);
    cr_assert_eq(ff_engine_written(e), 0);
    cr_assert_eq(ff_engine_sync(e), 0);
    ff_engine_close(e);
}

Test(admission, a_repeat_of_a_settled_event_is_a_duplicate_not_late)
{
    ff_engine *e = fresh();
    cr_assert_eq(ingest1(e, 283, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 283, T0 + FF_HOUR, 1, 0), FF_OUT_ACCEPTED);
    ff_engine_tick(e);
    cr_assert_eq(ingest1(e, 283, T0, 1, 0), FF_OUT_DUPLICATE);
    ff_count c;
    cr_assert_eq(ff_engine_count(e, 1, false, 0, &c), 0);
    cr_assert_eq(c.occupancy, 2);
    cr_assert_eq(c.revision, 0);
    ff_engine_close(e);
}
