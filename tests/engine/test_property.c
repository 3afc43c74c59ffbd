/*
 * test_property.c -- SPEC §2's central property: the answers depend only on the set of
 * accepted events and the topology, never on arrival order.
 *
 * A random event set (several DPUs, clamped and unclamped spaces, DPUs moved through
 * versions, events before a DPU's first version, exact duplicates, ties on ts) is fed in
 * many random orders, in random batches, with a fake clock that ticks (idle advances,
 * settling) under a small settle delay, so late amendments into settled rows run. Half
 * of the orders register the later versions mid-stream, while some of their events are
 * already pending, so re-attribution runs too. Every order must give byte-identical
 * answers (revision and status excluded: they depend on arrival by definition), equal to
 * a brute-force fold of the de-duplicated set.
 */
#include "engine_testutil.h"

enum { NSPACES = 4, NDPUS = 5, MAXV = 3, NEVENTS = 360, ORDERS = 50, SETS = 4 };
#define SETTLE FF_MINUTE
#define M(x)   (T0 + (int64_t)(x)*FF_MINUTE)

typedef struct version {
    int64_t from;
    uint32_t entry, exit_;
} version;

typedef struct world {
    version v[NDPUS][MAXV];
    int nv[NDPUS];
    ff_event ev[NEVENTS];
    int64_t first_move; /* smallest effective_from of a later version */
} world;

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11) % n;
}

static uint32_t dpu_id(int d)
{
    return 10 + (uint32_t)d;
}

static void random_place(version *v)
{
    v->entry = rnd(NSPACES + 1); /* 0 = none */
    do v->exit_ = rnd(NSPACES + 1);
    while (v->exit_ && v->exit_ == v->entry);
}

static void make_world(world *w, uint64_t seed)
{
    rng_state = seed * 2654435761u + 1;
    w->first_move = FF_TS_MAX;
    for (int d = 0; d < NDPUS; d++) {
        w->nv[d] = 1 + (int)rnd(MAXV);
        w->v[d][0].from = rnd(3) ? FF_TS_MIN : M(rnd(20)); /* orphans before it */
        random_place(&w->v[d][0]);
        int64_t t = M(40);
        for (int k = 1; k < w->nv[d]; k++) {
            t += (int64_t)(1 + rnd(30)) * FF_MINUTE;
            w->v[d][k].from = t;
            random_place(&w->v[d][k]);
            if (t < w->first_move) w->first_move = t;
        }
    }
    for (int i = 0; i < NEVENTS; i++) {
        if (i > 10 && rnd(10) == 0) {
            w->ev[i] = w->ev[rnd((uint32_t)i)]; /* an exact duplicate */
            continue;
        }
        w->ev[i] = ev_make(dpu_id((int)rnd(NDPUS)), T0 + (int64_t)rnd(720) * 10 * FF_SECOND,
                           rnd(2) ? 1 : -1, (uint16_t)rnd(2));
    }
}

static void register_versions(ff_engine *e, const world *w, bool later)
{
    for (int d = 0; d < NDPUS; d++)
        for (int k = later ? 1 : 0; k < (later ? w->nv[d] : 1); k++) {
            const version *v = &w->v[d][k];
            int rc = assign_at(e, dpu_id(d), 0, v->entry, v->exit_, v->from);
            cr_assert_eq(rc, 0, "assign %d/%d: %s", d, k, ff_strerror(rc));
        }
}

static ff_engine *new_engine(const world *w, fake_clock *clk)
{
    ff_engine_opts o = test_opts(clk);
    o.settle_us = SETTLE;
    ff_engine *e = open_engine(&o);
    for (uint32_t s = 1; s <= NSPACES; s++) {
        char name[16];
        snprintf(name, sizeof(name), "S%u", s);
        put_space(e, s, name, s % 2 == 1);
    }
    register_versions(e, w, false);
    return e;
}

static void shuffle(ff_event *ev, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd((uint32_t)i);
        ff_event x = ev[i - 1];
        ev[i - 1] = ev[j], ev[j] = x;
    }
}

/* Random batches, the clock ticking between some of them. */
static void feed(ff_engine *e, fake_clock *clk, const ff_event *ev, size_t n, bool clock_runs)
{
    for (size_t off = 0; off < n;) {
        size_t k = 1 + rnd(40);
        if (k > n - off) k = n - off;
        ff_ingest_result r;
        cr_assert_eq(ff_engine_ingest(e, ev + off, k, NULL, &r), 0);
        cr_assert_eq(r.refused, 0);
        off += k;
        if (rnd(3) == 0) {
            if (clock_runs) clk->now += (int64_t)rnd(90) * FF_SECOND;
            ff_engine_tick(e);
        }
    }
}

/* One arrival order: either all versions first, or the later versions registered once
 * some events at and after the first move are pending (H still before it). */
static ff_engine *run_order(const world *w, fake_clock *clk)
{
    ff_event ev[NEVENTS];
    memcpy(ev, w->ev, sizeof(ev));
    clk->now = T0 + 3 * FF_HOUR;
    ff_engine *e = new_engine(w, clk);
    size_t n1 = 0;
    if (rnd(2) && w->first_move != FF_TS_MAX) {
        for (size_t i = 0; i < NEVENTS; i++) /* early events go to the front */
            if (ev[i].ts < w->first_move + SETTLE && rnd(4)) {
                ff_event x = ev[i];
                ev[i] = ev[n1], ev[n1++] = x;
            }
        shuffle(ev, n1);
        feed(e, clk, ev, n1, false);
        cr_assert_lt(ff_engine_horizon(e), w->first_move);
    }
    register_versions(e, w, true);
    shuffle(ev + n1, NEVENTS - n1);
    feed(e, clk, ev + n1, NEVENTS - n1, true);
    ff_engine_check(e);
    return e;
}

/* ---- the brute force ---- */

static int cmp_key(const void *a, const void *b)
{
    const ff_event *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    if (x->dpu_id != y->dpu_id) return x->dpu_id < y->dpu_id ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return (x->direction > y->direction) - (x->direction < y->direction);
}

typedef struct brow {
    int64_t ts, occ;
    uint32_t dpu;
    uint16_t seq;
    int dir, delta;
} brow;

/* The rows of space s from the canonically sorted distinct events. */
static size_t brute_rows(const world *w, const ff_event *ev, size_t n, uint32_t s, brow *out)
{
    size_t k = 0;
    int64_t occ = 0;
    for (size_t i = 0; i < n; i++) {
        int d = (int)ev[i].dpu_id - 10, vi = -1;
        for (int j = 0; j < w->nv[d]; j++)
            if (w->v[d][j].from <= ev[i].ts) vi = j;
        if (vi < 0) continue;
        int delta = w->v[d][vi].entry == s   ? ev[i].direction
                    : w->v[d][vi].exit_ == s ? -ev[i].direction
                                             : 0;
        if (!delta) continue;
        occ += delta;
        if (s % 2 == 1 && occ < 0) occ = 0;
        out[k++] = (brow){ev[i].ts, occ, ev[i].dpu_id, ev[i].seq, ev[i].direction, delta};
    }
    return k;
}

typedef struct rowbuf {
    ff_occ_row r[NEVENTS];
    size_t n;
} rowbuf;

static int rowbuf_cb(void *ctx, const ff_occ_row *r)
{
    rowbuf *b = ctx;
    b->r[b->n++] = *r;
    return 0;
}

static void expect_rows(ff_engine *e, uint32_t s, const brow *want, size_t n)
{
    static rowbuf got;
    got.n = 0;
    cr_assert_eq(ff_engine_rows(e, s, FF_TS_MIN, FF_TS_MAX, NULL, rowbuf_cb, &got), 0);
    cr_assert_eq(got.n, n, "space %u: %zu rows, want %zu", s, got.n, n);
    for (size_t i = 0; i < n; i++) {
        const ff_occ_row *g = &got.r[i];
        cr_assert(g->ts == want[i].ts && g->dpu_id == want[i].dpu && g->seq == want[i].seq &&
                      g->direction == want[i].dir && g->delta == want[i].delta &&
                      g->occupancy == want[i].occ,
                  "space %u row %zu", s, i);
    }
}

static int64_t brute_occ(const brow *r, size_t n, int64_t t, bool before)
{
    int64_t occ = 0;
    for (size_t i = 0; i < n && (before ? r[i].ts < t : r[i].ts <= t); i++) occ = r[i].occ;
    return occ;
}

static void expect_buckets(ff_engine *e, uint32_t s, const brow *r, size_t n)
{
    static ff_bucket b[FF_MAX_BUCKETS];
    size_t nb;
    int64_t start = T0 - 7 * FF_MINUTE, end = T0 + 2 * FF_HOUR + 3 * FF_MINUTE;
    cr_assert_eq(ff_engine_counts(e, s, start, end, 10 * FF_MINUTE, b, &nb, NULL), 0);
    cr_assert_eq(nb, 13);
    for (size_t k = 0; k < nb; k++) {
        int64_t os = brute_occ(r, n, b[k].start, true), mn = os, mx = os;
        uint64_t in = 0, out = 0;
        for (size_t i = 0; i < n; i++) {
            if (r[i].ts < b[k].start || r[i].ts >= b[k].end) continue;
            mn = r[i].occ < mn ? r[i].occ : mn;
            mx = r[i].occ > mx ? r[i].occ : mx;
            r[i].delta > 0 ? in++ : out++;
        }
        cr_assert(b[k].occupancy_start == os &&
                      b[k].occupancy_end == brute_occ(r, n, b[k].end, true) && b[k].min == mn &&
                      b[k].max == mx && b[k].entrances == in && b[k].exits == out,
                  "space %u bucket %zu", s, k);
    }
}

static void expect_brute_force(ff_engine *e, const world *w)
{
    static ff_event ev[NEVENTS];
    static brow rows[NEVENTS];
    memcpy(ev, w->ev, sizeof(ev));
    qsort(ev, NEVENTS, sizeof(*ev), cmp_key);
    size_t n = 0;
    for (size_t i = 0; i < NEVENTS; i++)
        if (n == 0 || cmp_key(&ev[n - 1], &ev[i]) != 0) ev[n++] = ev[i];
    for (uint32_t s = 1; s <= NSPACES; s++) {
        size_t k = brute_rows(w, ev, n, s, rows);
        expect_rows(e, s, rows, k);
        for (int64_t t = T0 - FF_MINUTE; t <= M(121); t += 37 * FF_SECOND)
            cr_assert_eq(occ_at(e, s, t), brute_occ(rows, k, t, false), "space %u at %lld", s,
                         (long long)t);
        expect_buckets(e, s, rows, k);
    }
    for (int d = 0; d < NDPUS; d++) {
        size_t want = 0, got = 0;
        for (size_t i = 0; i < n; i++) want += ev[i].dpu_id == dpu_id(d);
        cr_assert_eq(ff_engine_dpu_events(e, dpu_id(d), FF_TS_MIN, FF_TS_MAX, count_cb, &got), 0);
        cr_assert_eq(got, want, "dpu %u events", dpu_id(d));
    }
}

static void snapshot(ff_engine *e, answers *a)
{
    static const uint32_t ids[NSPACES] = {1, 2, 3, 4};
    int64_t times[100];
    for (int i = 0; i < 100; i++) times[i] = T0 - FF_MINUTE + (int64_t)i * 73 * FF_SECOND;
    a->n = 0;
    answers_of(e, a, ids, NSPACES, times, 100, T0 - FF_HOUR, T0 + 3 * FF_HOUR, 7 * FF_MINUTE);
}

Test(property, answers_do_not_depend_on_arrival_order)
{
    static world w;
    fake_clock clk;
    answers first = {0}, got = {0};
    uint64_t late = 0, amended_orders = 0;
    for (uint64_t set = 1; set <= SETS; set++) {
        make_world(&w, set);
        for (int order = 0; order < ORDERS; order++) {
            ff_engine *e = run_order(&w, &clk);
            answers *a = order == 0 ? &first : &got;
            snapshot(e, a);
            if (order == 0)
                expect_brute_force(e, &w);
            else
                cr_assert(got.n == first.n && memcmp(got.b, first.b, got.n) == 0,
                          "set %llu order %d differs", (unsigned long long)set, order);
            ff_engine_stats st;
            ff_engine_stats_get(e, &st);
            late += st.outcomes[FF_OUT_LATE];
            amended_orders += st.outcomes[FF_OUT_LATE] > 0;
            ff_engine_close(e);
        }
    }
    /* the amend paths really ran */
    cr_assert_gt(late, 100);
    cr_assert_gt(amended_orders, SETS * ORDERS / 2);
    free(first.b);
    free(got.b);
}
