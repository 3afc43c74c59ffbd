/*
 * test_rows.c -- the per-space rows of engine/rows.c: the pending ring with
 * out-of-order inserts, the fold with and without clamp, settling, taking a DPU's rows.
 */
#include "engine/rows.h"

#include <criterion/criterion.h>
#include <string.h>

static void add(ff__rows *r, int64_t ts, uint32_t dpu, int delta)
{
    ff__row row = {.ts = ts, .dpu = dpu, .seq = 0, .dir = (int8_t)delta, .delta = (int8_t)delta};
    ff__rows_insert(r, &row);
}

static void expect_occ(const ff__rows *r, const int *occ, size_t n)
{
    cr_assert_eq(ff__rows_n(r), n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ff__rows_at(r, i)->occ, occ[i], "row %zu: %d != %d", i, ff__rows_at(r, i)->occ,
                     occ[i]);
}

Test(rows, fold_without_clamp_goes_negative)
{
    ff__rows r = {0};
    add(&r, 1, 1, -1), add(&r, 2, 1, -1), add(&r, 3, 1, 1);
    expect_occ(&r, (int[]){-1, -2, -1}, 3);
    ff__rows_check(&r, FF_TS_MIN, true);
    ff__rows_free(&r);
}

Test(rows, fold_with_clamp_stops_at_zero)
{
    ff__rows r = {.clamp = true};
    add(&r, 1, 1, -1), add(&r, 2, 1, -1), add(&r, 3, 1, 1);
    expect_occ(&r, (int[]){0, 0, 1}, 3);
    /* an earlier +1 arriving late changes the clamped history after it */
    add(&r, 0, 1, 1);
    expect_occ(&r, (int[]){1, 0, 0, 1}, 4);
    ff__rows_check(&r, FF_TS_MIN, true);
    ff__rows_free(&r);
}

Test(rows, out_of_order_inserts_keep_canonical_order_and_fold)
{
    ff__rows r = {0};
    int64_t ts[] = {50, 10, 90, 30, 70, 20, 10, 60, 80, 40, 0, 100};
    for (size_t i = 0; i < FF_ARRAY_LEN(ts); i++) add(&r, ts[i], (uint32_t)(i % 3), 1);
    ff__rows_check(&r, FF_TS_MIN, true);
    cr_assert_eq(ff__rows_at(&r, 0)->ts, 0);
    cr_assert_eq(ff__rows_at(&r, 11)->ts, 100);
    cr_assert_eq(ff__rows_at(&r, 11)->occ, 12);
    ff__rows_free(&r);
}

/* Many inserts around both ends of a ring that wraps and grows: checked against the
 * invariants after every step. */
Test(rows, ring_wraps_and_grows_under_inserts_at_both_ends)
{
    ff__rows r = {0};
    uint64_t x = 12345;
    int64_t base = 1000;
    for (int i = 0; i < 3000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t ts = base + (int64_t)(x % 64) - 32;
        add(&r, ts, (uint32_t)(x >> 40) % 5, (x >> 33) & 1 ? 1 : -1);
        base += 1;
        if (i % 7 == 0) ff__rows_settle(&r, base - 100, 3);
        if (i % 101 == 0) ff__rows_check(&r, base - 100, true);
    }
    ff__rows_check(&r, base - 100, true);
    ff__rows_free(&r);
}

Test(rows, settle_moves_only_rows_at_or_before_h_within_budget)
{
    ff__rows r = {0};
    for (int i = 0; i < 10; i++) add(&r, i * 10, 1, 1);
    cr_assert_eq(ff__rows_settle(&r, 45, 2), 2);
    cr_assert_eq(r.nset, 2);
    cr_assert_eq(ff__rows_settle(&r, 45, 100), 3);
    cr_assert_eq(r.nset, 5);
    cr_assert_eq(ff__rows_settle(&r, 45, 100), 0);
    /* a late row lands inside the settled part at its exact place */
    add(&r, 15, 1, -1);
    cr_assert_eq(r.nset, 6);
    cr_assert_eq(ff__rows_at(&r, 2)->ts, 15);
    cr_assert_eq(ff__rows_at(&r, 9)->occ, 8);
    ff__rows_check(&r, 45, true);
    ff__rows_free(&r);
}

Test(rows, has_finds_exact_keys_only)
{
    ff__rows r = {0};
    add(&r, 10, 3, 1);
    add(&r, 10, 4, -1);
    cr_assert(ff__rows_has(&r, &(ff_row_key){10, 3, 0, 1}));
    cr_assert(ff__rows_has(&r, &(ff_row_key){10, 4, 0, -1}));
    cr_assert_not(ff__rows_has(&r, &(ff_row_key){10, 3, 0, -1}));
    cr_assert_not(ff__rows_has(&r, &(ff_row_key){10, 3, 1, 1}));
    cr_assert_not(ff__rows_has(&r, &(ff_row_key){11, 3, 0, 1}));
    ff__rows_free(&r);
}

Test(rows, take_dpu_removes_its_rows_from_a_time_and_refolds)
{
    ff__rows r = {0};
    for (int i = 0; i < 8; i++) add(&r, i, (uint32_t)(i % 2), 1);
    ff__row *out = NULL;
    size_t n = 0, cap = 0;
    ff__rows_take_dpu(&r, 1, 3, &out, &n, &cap);
    cr_assert_eq(n, 3); /* ts 3, 5, 7 */
    cr_assert_eq(out[0].ts, 3);
    cr_assert_eq(out[2].ts, 7);
    expect_occ(&r, (int[]){1, 2, 3, 4, 5}, 5);
    ff__rows_check(&r, FF_TS_MIN, true);
    free(out);
    ff__rows_free(&r);
}

/* Rows removed with deltas that cancel out (+1, -1) leave the next kept row with its old
 * value by chance; the refold must still go on past the last removed row. */
Test(rows, take_dpu_refolds_past_removed_rows_that_cancel_out)
{
    ff__rows r = {0};
    add(&r, 1, 2, 1), add(&r, 2, 1, 1), add(&r, 3, 1, -1);
    add(&r, 4, 2, 1), add(&r, 5, 1, 1), add(&r, 6, 2, 1);
    expect_occ(&r, (int[]){1, 2, 1, 2, 3, 4}, 6);
    ff__row *out = NULL;
    size_t n = 0, cap = 0;
    ff__rows_take_dpu(&r, 1, 0, &out, &n, &cap);
    cr_assert_eq(n, 3);
    expect_occ(&r, (int[]){1, 2, 3}, 3);
    ff__rows_check(&r, FF_TS_MIN, true);
    free(out);
    ff__rows_free(&r);
}

/* After a burst, the ring and the settled array give their capacity back as the rows
 * leave (the ring at the settle after the one that emptied it), and what stays is
 * intact. */
Test(rows, capacity_follows_the_window_after_a_burst)
{
    ff__rows r = {0};
    for (int64_t t = 1; t <= 10000; t++) add(&r, t, 1, t % 3 ? 1 : -1);
    cr_assert_geq(r.capring, 10000);
    int64_t occ_at_9990 = ff__rows_at(&r, 9989)->occ;
    ff__rows_settle(&r, 9990, SIZE_MAX); /* 10 rows stay pending */
    cr_assert_eq(r.npend, 10);
    cr_assert_geq(r.capring, 10000, "the ring is fitted to what it held at the settle");
    cr_assert_eq(ff__rows_settle(&r, 9990, SIZE_MAX), 0);
    cr_assert_leq(r.capring, 64, "ring kept %u slots for 10 rows", r.capring);
    cr_assert_geq(r.capset, 9990);
    size_t capset = r.capset;
    ff__rows_drop_front(&r, 9980, ff__rows_at(&r, 9979)->occ); /* 10 settled rows stay */
    cr_assert_eq(r.nset, 10);
    cr_assert_eq(r.capset, capset, "a drop is O(1): the next settle fits the array");
    ff__rows_check(&r, 9990, true);
    cr_assert_eq(ff__rows_settle(&r, 9990, SIZE_MAX), 0);
    cr_assert_leq(r.capset, 64, "settled array kept %zu slots for 10 rows", r.capset);
    cr_assert_eq(ff__rows_at(&r, 9)->occ, occ_at_9990);
    cr_assert_eq(ff__rows_at(&r, 9)->ts, 9990);
    cr_assert_eq(ff__rows_at(&r, 19)->ts, 10000);
    ff__rows_check(&r, 9990, true);
    add(&r, 10001, 1, 1); /* still works after shrinking */
    cr_assert_eq(ff__rows_at(&r, 20)->occ, ff__rows_at(&r, 19)->occ + 1);
    ff__rows_drop_front(&r, 10, ff__rows_at(&r, 9)->occ); /* the settled part empties */
    cr_assert_eq(ff__rows_settle(&r, 9990, SIZE_MAX), 0);
    cr_assert_eq(r.capset, 0);
    cr_assert_null(r.setmem);
    ff__rows_check(&r, 9990, true);
    ff__rows_free(&r);
}

/* A ring that fills to about the same level between settles keeps its capacity: it is
 * not shrunk after each settle empties it only to grow back before the next. */
Test(rows, ring_refilled_between_settles_keeps_its_capacity)
{
    ff__rows r = {0};
    int64_t t = 0;
    uint32_t cap = 0;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 70; i++) add(&r, ++t, 1, 1);
        if (round == 1) cap = r.capring;
        if (round > 1)
            cr_assert_eq(r.capring, cap, "round %d: %u slots, then %u", round, cap, r.capring);
        ff__rows_settle(&r, t - 1, SIZE_MAX); /* one row stays pending */
        cr_assert_eq(r.npend, 1);
        if (round > 1) cr_assert_eq(r.capring, cap, "round %d: shrunk to %u", round, r.capring);
        ff__rows_drop_front(&r, r.nset, ff__rows_at(&r, r.nset - 1)->occ); /* sealed */
    }
    cr_assert_eq(cap, 128);
    ff__rows_check(&r, t - 1, true);
    ff__rows_free(&r);
}

/* Rows dropped off the front leave room that later appends and inserts reuse, in
 * canonical order. */
Test(rows, settled_part_reuses_the_room_a_drop_leaves)
{
    ff__rows r = {0};
    for (int64_t t = 1; t <= 100; t++) add(&r, t * 10, 1, 1);
    ff__rows_settle(&r, 1000, SIZE_MAX);
    cr_assert_eq(r.nset, 100);
    size_t capset = r.capset;
    ff__rows_drop_front(&r, 90, ff__rows_at(&r, 89)->occ);
    cr_assert_eq(r.set - r.setmem, 90);
    add(&r, 955, 1, -1); /* a late row inside the settled part */
    for (int64_t t = 101; t <= 100 + (int64_t)capset - 11; t++) add(&r, t * 10, 1, 1);
    ff__rows_settle(&r, INT64_MAX, SIZE_MAX);
    cr_assert_eq(r.capset, capset, "the room in front was reused, not grown");
    cr_assert_eq(r.set, r.setmem);
    ff__rows_check(&r, INT64_MAX, true);
    cr_assert_eq(ff__rows_at(&r, 5)->ts, 955);
    cr_assert_eq(ff__rows_at(&r, 5)->occ, ff__rows_at(&r, 4)->occ - 1);
    ff__rows_free(&r);
}

/* Settles rows at ts = 10 * (from .. to) of DPU 1, each +1. */
static void settled(ff__rows *r, int64_t from, int64_t to)
{
    for (int64_t t = from; t <= to; t++) add(r, t * 10, 1, 1);
    ff__rows_settle(r, INT64_MAX, SIZE_MAX);
}

/* Pinned rows (read by a seal job's worker) are never written, moved or freed: a late
 * row among them, a rebase, growth past the allocation and freeing the rows each leave
 * the pinned copy as it was, and the rows themselves change as they would unpinned. */
Test(rows, pinned_rows_stay_as_they_were_whatever_the_space_does)
{
    for (int what = 0; what < 4; what++) {
        ff__rows r = {0};
        settled(&r, 1, 100);
        ff__row *mem = ff__rows_pin(&r, 60), was[60];
        const ff__row *row = r.set;
        cr_assert_eq(mem, r.setmem);
        memcpy(was, row, sizeof(was));
        if (what == 0) add(&r, 255, 2, -1); /* a late row among the pinned ones */
        if (what == 1) ff__rows_rebase(&r, 7);
        if (what == 2) settled(&r, 101, (int64_t)r.capset + 1); /* past the allocation */
        if (what == 3) ff__rows_free(&r);
        cr_assert(memcmp(was, row, sizeof(was)) == 0, "case %d: pinned rows changed", what);
        cr_assert_neq(r.setmem, mem, "case %d: the rows still use the pinned memory", what);
        cr_assert_eq(r.pinned, 0);
        ff__rows_check(&r, INT64_MAX, true);
        if (what == 0) cr_assert_eq(ff__rows_at(&r, 25)->ts, 255);
        if (what == 0) cr_assert_eq(ff__rows_at(&r, 25)->occ, 24);
        if (what == 1) cr_assert_eq(ff__rows_at(&r, 0)->occ, 8);
        ff__rows_release(&r, mem); /* frees it: the sanitizer build checks for a leak */
        ff__rows_free(&r);
    }
}

/* Appending after the pinned rows within the allocation keeps it; the release then
 * hands it back unpinned, and it is fitted and compacted again as usual. */
Test(rows, a_release_hands_back_memory_the_rows_still_use)
{
    ff__rows r = {0};
    settled(&r, 1, 20);
    size_t cap = r.capset;
    ff__row *mem = ff__rows_pin(&r, 20);
    settled(&r, 21, (int64_t)cap);
    cr_assert_eq(r.setmem, mem);
    cr_assert_eq(r.nset, cap);
    ff__rows_release(&r, mem);
    cr_assert_eq(r.pinned, 0);
    cr_assert_eq(r.setmem, mem, "the rows' own memory was freed");
    ff__rows_drop_front(&r, 20, ff__rows_at(&r, 19)->occ);
    add(&r, (int64_t)cap * 10 + 10, 1, 1);
    ff__rows_settle(&r, INT64_MAX, SIZE_MAX);
    ff__rows_check(&r, INT64_MAX, true);
    cr_assert_eq(ff__rows_at(&r, 0)->ts, 210);
    ff__rows_free(&r);
}

/* Rings grown and shrunk in every shape -- wrapped or not, the wrapped part shorter or
 * longer than the rest -- keep every row, in order: random appends, inserts near the
 * front of the ring (which wrap it backwards) and settles, checked against a count and
 * a sum of the rows' timestamps after every step. */
Test(rows, ring_resizes_keep_every_row_in_order)
{
    uint64_t x = 88172645463325252ull;
    unsigned grew = 0, shrank = 0;
    for (int round = 0; round < 100; round++) {
        ff__rows r = {0};
        int64_t next = 1000, lo = 1000, h = FF_TS_MIN, sum = 0;
        size_t n = 0;
        for (int step = 0; step < 600; step++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            unsigned op = (unsigned)(x % 16), cap = r.capring;
            int64_t ts = next++;
            if (op >= 9 && op < 15) ts = lo + (int64_t)((x >> 20) % 8); /* near the front */
            if (op == 15) {                                             /* a settle */
                h = lo + (int64_t)((x >> 20) % (uint64_t)(next - lo + 1));
                ff__rows_settle(&r, h, SIZE_MAX);
                lo = h + 1;
            } else {
                add(&r, ts, (uint32_t)(op & 3), 1);
                n++, sum += ts;
            }
            grew += r.capring > cap, shrank += r.capring < cap;
            ff__rows_check(&r, h, true);
            cr_assert_eq(ff__rows_n(&r), n, "round %d step %d", round, step);
            int64_t got = 0;
            for (size_t i = 0; i < n; i++) got += ff__rows_at(&r, i)->ts;
            cr_assert_eq(got, sum, "round %d step %d: rows changed", round, step);
        }
        ff__rows_free(&r);
    }
    cr_assert_gt(grew, 100);
    cr_assert_gt(shrank, 20, "%u shrinks", shrank);
}

/* A large settled array is given room for as many rows again when pinned, so that the
 * settles of a seal job's duration append in place instead of unsharing it. */
Test(rows, a_large_pinned_array_takes_the_next_rows_in_place)
{
    ff__rows r = {0};
    settled(&r, 1, 20000);
    ff__row *mem = ff__rows_pin(&r, 17000);
    const ff__row *row = r.set;
    cr_assert_eq(ff__rows_at(&r, 0)->ts, 10);
    settled(&r, 20001, 40000);
    cr_assert_eq(r.setmem, mem, "unshared: no room was made at the pin");
    cr_assert_eq(r.pinned, 17000);
    cr_assert_eq(row[16999].ts, 170000);
    ff__rows_check(&r, INT64_MAX, true);
    ff__rows_release(&r, mem);
    ff__rows_drop_front(&r, 17000, ff__rows_at(&r, 16999)->occ);
    cr_assert_eq(ff__rows_n(&r), 23000);
    ff__rows_free(&r);
}
