/*
 * test_sample.c -- the original sample (tests/data/dpu_data.csv, path from FF_TEST_DATA)
 * on the original topology: Space A = -2 and Space B = 8 with 33 duplicates; 11 and 8
 * with dedup off; the same answers whatever the arrival order.
 */
#include "engine_testutil.h"

static fake_clock clk = {.now = T0 + 30 * FF_DAY};

typedef struct totals {
    uint64_t accepted, duplicates, late, refused;
} totals;

static void ingest_all(ff_engine *e, const ff_event *ev, size_t n, size_t batch, totals *t)
{
    for (size_t off = 0; off < n; off += batch) {
        size_t k = n - off < batch ? n - off : batch;
        ff_ingest_result r;
        cr_assert_eq(ff_engine_ingest(e, ev + off, k, NULL, &r), 0);
        t->accepted += r.accepted, t->duplicates += r.duplicates;
        t->late += r.late, t->refused += r.refused;
    }
}

Test(sample, space_a_is_minus_2_and_space_b_is_8_with_33_duplicates)
{
    ff_event *ev;
    size_t n = load_sample(&ev);
    cr_assert_gt(n, 500);
    ff_engine_opts o = test_opts(&clk);
    ff_engine *e = open_engine(&o);
    sample_topology(e);
    totals t = {0};
    ingest_all(e, ev, n, 64, &t);
    cr_assert_eq(t.duplicates, 33);
    cr_assert_eq(t.refused, 0);
    cr_assert_eq(t.accepted, n - 33);
    cr_assert_eq(occ_latest(e, 1), -2);
    cr_assert_eq(occ_latest(e, 2), 8);
    ff_engine_check(e);
    ff_engine_close(e);
    free(ev);
}

Test(sample, dedup_off_gives_11_and_8)
{
    ff_event *ev;
    size_t n = load_sample(&ev);
    ff_engine_opts o = test_opts(&clk);
    o.dedup_off = true;
    ff_engine *e = open_engine(&o);
    sample_topology(e);
    totals t = {0};
    ingest_all(e, ev, n, 64, &t);
    cr_assert_eq(t.duplicates, 0);
    cr_assert_eq(t.accepted, n);
    cr_assert_eq(occ_latest(e, 1), 11);
    cr_assert_eq(occ_latest(e, 2), 8);
    ff_engine_check(e);
    ff_engine_close(e);
    free(ev);
}

Test(sample, shuffled_arrival_gives_the_same_answers)
{
    ff_event *ev;
    size_t n = load_sample(&ev);
    static const uint32_t ids[] = {1, 2};
    int64_t times[64];
    for (int i = 0; i < 64; i++) times[i] = ev[0].ts + (int64_t)i * 3 * FF_HOUR;
    answers want = {0}, got = {0};
    int64_t from = ev[0].ts, to = ev[n - 1].ts + 1;
    for (int round = 0; round < 20; round++) {
        ff_engine_opts o = test_opts(&clk);
        ff_engine *e = open_engine(&o);
        sample_topology(e);
        totals t = {0};
        ingest_all(e, ev, n, 1 + (size_t)round * 7, &t);
        cr_assert_eq(t.duplicates, 33);
        answers *a = round == 0 ? &want : &got;
        a->n = 0;
        answers_of(e, a, ids, 2, times, 64, from, to, FF_HOUR);
        if (round) cr_assert(got.n == want.n && memcmp(got.b, want.b, got.n) == 0);
        ff_engine_check(e);
        ff_engine_close(e);
        srand((unsigned)round + 1);
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)rand() % (i + 1);
            ff_event x = ev[i];
            ev[i] = ev[j], ev[j] = x;
        }
    }
    free(want.b);
    free(got.b);
    free(ev);
}
