/*
 * test_topology.c -- spaces, doorways and DPU versions (engine/topology.c): validation
 * errors, idempotence, attribution by event time, re-attribution of pending rows.
 */
#include "engine_testutil.h"

static fake_clock clk = {.now = T0 + FF_DAY};

static ff_engine *fresh(void)
{
    ff_engine_opts o = test_opts(&clk);
    ff_engine *e = open_engine(&o);
    sample_topology(e);
    return e;
}

Test(topology, space_put_is_idempotent_and_reports_creation)
{
    ff_engine *e = fresh();
    ff_space_def d = {.id = 7, .name = "Lobby", .has_capacity = true, .capacity = 30};
    bool created = false;
    cr_assert_eq(ff_engine_space_put(e, &d, &created), 0);
    cr_assert(created);
    cr_assert_eq(ff_engine_space_put(e, &d, &created), 0);
    cr_assert_not(created);
    ff_space_info info;
    cr_assert_eq(ff_engine_space_get(e, 7, &info), 0);
    cr_assert_str_eq(info.def.name, "Lobby");
    cr_assert_eq(info.def.capacity, 30);
    cr_assert_eq(ff_engine_space_by_name(e, "Lobby"), 7);
    cr_assert_eq(ff_engine_space_count(e), 3);
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(topology, space_put_refuses_bad_definitions)
{
    ff_engine *e = fresh();
    ff_space_def d = {.id = 0, .name = "X"};
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), FF_EINVAL);
    d = (ff_space_def){.id = 9, .name = ""};
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), FF_EINVAL);
    d = (ff_space_def){.id = 9, .name = "X", .has_capacity = true, .capacity = -1};
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), FF_EINVAL);
    d = (ff_space_def){.id = 9};
    memset(d.name, 'a', sizeof(d.name)); /* 101 bytes, unterminated */
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), FF_EINVAL);
    d = (ff_space_def){.id = 9, .name = "\xff\xfe"};
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), FF_EINVAL);
    d = (ff_space_def){.id = 9, .name = "Space A"};
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), FF_EEXIST);
    ff_engine_close(e);
}

Test(topology, rename_frees_the_old_name)
{
    ff_engine *e = fresh();
    put_space(e, 1, "Atrium", false);
    cr_assert_eq(ff_engine_space_by_name(e, "Space A"), 0);
    cr_assert_eq(ff_engine_space_by_name(e, "Atrium"), 1);
    put_space(e, 3, "Space A", false);
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(topology, changing_clamp_of_a_space_with_rows_conflicts)
{
    ff_engine *e = fresh();
    put_space(e, 2, "Space B", true); /* no rows yet: allowed */
    cr_assert_eq(ingest1(e, 423, T0, 1, 0), FF_OUT_ACCEPTED);
    ff_space_def d = {.id = 2, .name = "Space B", .clamp_at_zero = false};
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), FF_ECONFLICT);
    d.clamp_at_zero = true;
    d.has_capacity = true; /* other changes remain possible */
    cr_assert_eq(ff_engine_space_put(e, &d, NULL), 0);
    ff_engine_close(e);
}

Test(topology, delete_refuses_referenced_and_unknown)
{
    ff_engine *e = fresh();
    cr_assert_eq(ff_engine_space_delete(e, 1), FF_ECONFLICT);
    cr_assert_eq(ff_engine_doorway_delete(e, 2), FF_ECONFLICT);
    cr_assert_eq(ff_engine_space_delete(e, 99), FF_ENOTFOUND);
    put_space(e, 5, "Spare", false);
    put_doorway(e, 5, "Spare door");
    cr_assert_eq(ff_engine_space_delete(e, 5), 0);
    cr_assert_eq(ff_engine_doorway_delete(e, 5), 0);
    ff_space_info info;
    cr_assert_eq(ff_engine_space_get(e, 5, &info), FF_ENOTFOUND);
    cr_assert_eq(ff_engine_space_by_name(e, "Spare"), 0);
    put_space(e, 6, "Spare", false); /* the name is free again */
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(topology, next_id_is_the_smallest_unused)
{
    ff_engine *e = fresh();
    cr_assert_eq(ff_engine_space_next_id(e), 3);
    put_space(e, 4, "Four", false);
    cr_assert_eq(ff_engine_space_next_id(e), 3);
    put_space(e, 3, "Three", false);
    cr_assert_eq(ff_engine_space_next_id(e), 5);
    cr_assert_eq(ff_engine_doorway_next_id(e), 3);
    ff_engine_close(e);
}

Test(topology, assign_refuses_bad_versions)
{
    ff_engine *e = fresh();
    cr_assert_eq(assign_at(e, 500, 1, 1, 1, FF_TS_MIN), FF_EINVAL);
    cr_assert_eq(assign_at(e, 500, 9, 1, 0, FF_TS_MIN), FF_EREF);
    cr_assert_eq(assign_at(e, 500, 1, 9, 0, FF_TS_MIN), FF_EREF);
    cr_assert_eq(assign_at(e, 500, 1, 0, 9, FF_TS_MIN), FF_EREF);
    cr_assert_eq(ff_engine_dpu_count(e), 2);
    /* before the latest version */
    cr_assert_eq(assign_at(e, 283, 1, 2, 0, T0), 0);
    cr_assert_eq(assign_at(e, 283, 1, 1, 0, T0 - 1), FF_ECONFLICT);
    cr_assert_eq(assign_at(e, 283, 1, 1, 0, T0), FF_ECONFLICT);
    ff_engine_close(e);
}

Test(topology, assign_at_or_before_the_horizon_conflicts_except_first_version)
{
    ff_engine *e = fresh();
    cr_assert_eq(ingest1(e, 283, T0 + FF_HOUR, 1, 0), FF_OUT_ACCEPTED);
    int64_t h = ff_engine_horizon(e);
    cr_assert_eq(h, T0 + FF_HOUR - 5 * FF_MINUTE);
    cr_assert_eq(assign_at(e, 283, 1, 2, 0, h), FF_ECONFLICT);
    cr_assert_eq(assign_at(e, 283, 1, 2, 0, h + 1), 0);
    cr_assert_eq(assign_at(e, 777, 1, 2, 0, h - FF_DAY), 0); /* first version of 777 */
    ff_engine_close(e);
}

Test(topology, assign_is_idempotent)
{
    ff_engine *e = fresh();
    bool added = true;
    ff_assignment a = {.doorway_id = 1, .entry_space_id = 1};
    cr_assert_eq(ff_engine_dpu_assign(e, 283, &a, false, &added), 0);
    cr_assert_not(added); /* same place as the latest version */
    a.effective_from = T0;
    a.entry_space_id = 2;
    cr_assert_eq(ff_engine_dpu_assign(e, 283, &a, true, &added), 0);
    cr_assert(added);
    cr_assert_eq(ff_engine_dpu_assign(e, 283, &a, true, &added), 0);
    cr_assert_not(added); /* identical version exists */
    const ff_assignment *v;
    size_t n;
    cr_assert_eq(ff_engine_dpu_get(e, 283, &v, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(v[0].effective_from, FF_TS_MIN);
    cr_assert_eq(v[1].effective_from, T0);
    ff_engine_close(e);
}

Test(topology, later_version_without_effective_from_starts_now)
{
    ff_engine *e = fresh();
    ff_assignment a = {.doorway_id = 1, .entry_space_id = 2};
    bool added = false;
    cr_assert_eq(ff_engine_dpu_assign(e, 283, &a, false, &added), 0);
    cr_assert(added);
    const ff_assignment *v;
    size_t n;
    cr_assert_eq(ff_engine_dpu_get(e, 283, &v, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(v[1].effective_from, clk.now);
    cr_assert_eq(ff_engine_dpu_get(e, 999, &v, &n), FF_ENOTFOUND);
    ff_engine_close(e);
}

/* SPEC §1: an event delayed past a move still counts at the doorway where it happened. */
Test(topology, event_delayed_past_a_move_counts_at_the_old_doorway)
{
    ff_engine *e = fresh();
    cr_assert_eq(ingest1(e, 283, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(assign_at(e, 283, 1, 2, 0, T0 + FF_HOUR), 0);                 /* moved to B */
    cr_assert_eq(ingest1(e, 283, T0 + 30 * FF_MINUTE, 1, 0), FF_OUT_ACCEPTED); /* delayed */
    cr_assert_eq(ingest1(e, 283, T0 + 2 * FF_HOUR, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(occ_latest(e, 1), 2);
    cr_assert_eq(occ_latest(e, 2), 1);
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(topology, new_version_reattributes_pending_rows_after_it)
{
    ff_engine *e = fresh();
    for (int i = 0; i < 6; i++) cr_assert_eq(ingest1(e, 423, T0 + i * FF_MINUTE, 1, 0), 0);
    cr_assert_eq(occ_latest(e, 1), 6);
    cr_assert_eq(occ_latest(e, 2), -6);
    /* H = T0; from T0+3m the DPU counts into B out of nowhere */
    cr_assert_eq(assign_at(e, 423, 2, 2, 0, T0 + 3 * FF_MINUTE), 0);
    cr_assert_eq(occ_latest(e, 1), 3);
    cr_assert_eq(occ_latest(e, 2), 0); /* -3 then +3 */
    cr_assert_eq(occ_at(e, 2, T0 + 2 * FF_MINUTE), -3);
    ff_engine_check(e);
    /* and into no space at all: the rows become orphans, still the DPU's events */
    cr_assert_eq(assign_at(e, 423, 0, 0, 0, T0 + 4 * FF_MINUTE), 0);
    cr_assert_eq(occ_latest(e, 2), -2);
    size_t n = 0;
    cr_assert_eq(ff_engine_dpu_events(e, 423, FF_TS_MIN, FF_TS_MAX, count_cb, &n), 0);
    cr_assert_eq(n, 6);
    /* back into a space: the orphans move in */
    cr_assert_eq(assign_at(e, 423, 2, 1, 0, T0 + 5 * FF_MINUTE), 0);
    cr_assert_eq(occ_latest(e, 1), 4);
    ff_engine_check(e);
    ff_engine_close(e);
}

Test(topology, events_before_the_first_version_are_kept_as_orphans)
{
    ff_engine *e = fresh();
    cr_assert_eq(assign_at(e, 600, 1, 1, 0, T0 + FF_HOUR), 0);
    cr_assert_eq(ingest1(e, 600, T0, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(ingest1(e, 600, T0, 1, 0), FF_OUT_DUPLICATE);
    cr_assert_eq(ingest1(e, 600, T0 + 2 * FF_HOUR, 1, 0), FF_OUT_ACCEPTED);
    cr_assert_eq(occ_latest(e, 1), 1);
    size_t n = 0;
    cr_assert_eq(ff_engine_dpu_events(e, 600, FF_TS_MIN, FF_TS_MAX, count_cb, &n), 0);
    cr_assert_eq(n, 2);
    ff_engine_check(e);
    ff_engine_close(e);
}

static int collect_dpu(void *ctx, uint32_t id, const ff_assignment *v, size_t n)
{
    uint32_t *ids = ctx;
    ids[ids[0]++ + 1] = id;
    return 0;
}

static int collect_space(void *ctx, const ff_space_info *s)
{
    uint32_t *ids = ctx;
    ids[ids[0]++ + 1] = s->def.id;
    return 0;
}

Test(topology, iteration_is_in_ascending_id_order)
{
    ff_engine *e = fresh();
    cr_assert_eq(assign_at(e, 5, 0, 0, 0, FF_TS_MIN), 0);
    put_space(e, 10, "Ten", false);
    put_space(e, 3, "Three", false);
    uint32_t ids[8] = {0};
    ff_engine_dpus(e, collect_dpu, ids);
    cr_assert_eq(ids[0], 3);
    cr_assert(ids[1] == 5 && ids[2] == 283 && ids[3] == 423);
    memset(ids, 0, sizeof(ids));
    ff_engine_spaces(e, collect_space, ids);
    cr_assert(ids[0] == 4 && ids[1] == 1 && ids[2] == 2 && ids[3] == 3 && ids[4] == 10);
    ff_engine_close(e);
}
