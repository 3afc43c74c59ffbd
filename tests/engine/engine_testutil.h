/*
 * engine_testutil.h -- helpers shared by the engine tests: an injected clock, engines
 * with small topologies, event construction, a temp directory, a tiny CSV reader.
 */
#ifndef FF_TESTS_ENGINE_TESTUTIL_H
#define FF_TESTS_ENGINE_TESTUTIL_H

#include "engine/engine.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define T0 ((int64_t)1519461921893000) /* 2018-02-24T08:45:21.893Z */

typedef struct fake_clock {
    int64_t now;
} fake_clock;

static inline int64_t fake_clock_fn(void *ctx)
{
    return ((fake_clock *)ctx)->now;
}

static inline ff_engine_opts test_opts(fake_clock *c)
{
    ff_engine_opts o;
    ff_engine_opts_default(&o);
    o.clock = fake_clock_fn;
    o.clock_ctx = c;
    return o;
}

static inline ff_engine *open_engine(const ff_engine_opts *o)
{
    ff_engine *e = NULL;
    int rc = ff_engine_open(&e, o, NULL);
    cr_assert_eq(rc, 0, "open: %s", ff_strerror(rc));
    return e;
}

static inline void put_space(ff_engine *e, uint32_t id, const char *name, bool clamp)
{
    ff_space_def d = {.id = id, .clamp_at_zero = clamp};
    snprintf(d.name, sizeof(d.name), "%s", name);
    int rc = ff_engine_space_put(e, &d, NULL);
    cr_assert_eq(rc, 0, "space_put %u: %s", id, ff_strerror(rc));
}

static inline void put_doorway(ff_engine *e, uint32_t id, const char *name)
{
    ff_doorway_def d = {.id = id};
    snprintf(d.name, sizeof(d.name), "%s", name);
    int rc = ff_engine_doorway_put(e, &d, NULL);
    cr_assert_eq(rc, 0, "doorway_put %u: %s", id, ff_strerror(rc));
}

static inline int assign_at(ff_engine *e, uint32_t dpu, uint32_t door, uint32_t entry,
                            uint32_t exit_, int64_t from)
{
    ff_assignment a = {.doorway_id = door,
                       .entry_space_id = entry,
                       .exit_space_id = exit_,
                       .effective_from = from};
    return ff_engine_dpu_assign(e, dpu, &a, from != FF_TS_MIN, NULL);
}

/* The sample topology: Space A (1), Space B (2); DPU 283 over doorway 1 into A, DPU 423
 * over doorway 2 from B into A. */
static inline void sample_topology(ff_engine *e)
{
    put_space(e, 1, "Space A", false);
    put_space(e, 2, "Space B", false);
    put_doorway(e, 1, "Doorway X");
    put_doorway(e, 2, "Doorway Z");
    cr_assert_eq(assign_at(e, 283, 1, 1, 0, FF_TS_MIN), 0);
    cr_assert_eq(assign_at(e, 423, 2, 1, 2, FF_TS_MIN), 0);
}

static inline ff_event ev_make(uint32_t dpu, int64_t ts, int dir, uint16_t seq)
{
    return (ff_event){.dpu_id = dpu, .direction = (int8_t)dir, .seq = seq, .ts = ts};
}

/* Ingests one event and returns its outcome. */
static inline int ingest1(ff_engine *e, uint32_t dpu, int64_t ts, int dir, uint16_t seq)
{
    ff_event ev = ev_make(dpu, ts, dir, seq);
    uint8_t o = 0xff;
    ff_ingest_result r;
    cr_assert_eq(ff_engine_ingest(e, &ev, 1, &o, &r), 0);
    return o;
}

static inline int64_t occ_at(ff_engine *e, uint32_t space, int64_t t)
{
    ff_count c;
    cr_assert_eq(ff_engine_count(e, space, true, t, &c), 0);
    return c.occupancy;
}

static inline int64_t occ_latest(ff_engine *e, uint32_t space)
{
    ff_count c;
    cr_assert_eq(ff_engine_count(e, space, false, 0, &c), 0);
    return c.occupancy;
}

/* An ff_event_cb that counts. */
static inline int count_cb(void *ctx, const ff_event *ev)
{
    (void)ev;
    (*(size_t *)ctx)++;
    return 0;
}

/* A fresh directory under /tmp; rm_tree() removes it. */
static inline void make_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/ff_engine_test_XXXXXX");
    cr_assert_not_null(mkdtemp(buf));
}

static inline int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

static inline void rm_tree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Parses "2018-02-24T08:45:21.893Z" (UTC, 0-6 fraction digits) into microseconds. */
static inline int64_t parse_ts(const char *s)
{
    struct tm tm = {0};
    int us = 0, digits = 0;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    cr_assert_not_null(p, "bad time %s", s);
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) us = us * 10 + (*p - '0');
    for (; digits < 6; digits++) us *= 10;
    return (int64_t)timegm(&tm) * FF_SECOND + us;
}

static inline void strip_quotes(char *f)
{
    size_t n = strlen(f);
    while (n && (f[n - 1] == '\n' || f[n - 1] == '\r')) f[--n] = 0;
    if (n >= 2 && f[0] == '"' && f[n - 1] == '"') {
        memmove(f, f + 1, n - 2);
        f[n - 2] = 0;
    }
}

/* Loads tests/data/dpu_data.csv ("timestamp","direction","dpu_id"); returns the count. */
static inline size_t load_sample(ff_event **out)
{
    const char *dir = getenv("FF_TEST_DATA");
    char path[512];
    snprintf(path, sizeof(path), "%s/dpu_data.csv", dir ? dir : "tests/data");
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s (set FF_TEST_DATA)", path);
    char line[256];
    size_t n = 0, cap = 0;
    ff_event *ev = NULL;
    cr_assert_not_null(fgets(line, sizeof(line), f));
    while (fgets(line, sizeof(line), f)) {
        char *ts = strtok(line, ","), *d = strtok(NULL, ","), *id = strtok(NULL, ",");
        if (!ts || !d || !id) continue;
        strip_quotes(ts), strip_quotes(d), strip_quotes(id);
        ev = ff_xgrow(ev, &cap, n + 1, sizeof(*ev));
        ev[n++] = ev_make((uint32_t)atol(id), parse_ts(ts), atoi(d), 0);
    }
    fclose(f);
    *out = ev;
    return n;
}

/* ---- serialized answers, to compare two engines byte for byte ---- */

typedef struct answers {
    unsigned char *b;
    size_t n, cap;
    bool with_revision; /* revision depends on arrival order; status on H */
    bool with_status;
} answers;

static inline void ans_put(answers *a, const void *p, size_t n)
{
    a->b = ff_xgrow(a->b, &a->cap, a->n + n, 1);
    memcpy(a->b + a->n, p, n);
    a->n += n;
}

static inline void ans_i64(answers *a, int64_t v)
{
    ans_put(a, &v, sizeof(v));
}

static inline int ans_row_cb(void *ctx, const ff_occ_row *r)
{
    answers *a = ctx;
    ans_i64(a, r->ts);
    ans_i64(a, (int64_t)r->dpu_id << 32 | (int64_t)r->seq << 16 | (r->direction & 0xff) << 8 |
                   (r->delta & 0xff));
    ans_i64(a, r->occupancy);
    if (a->with_status) ans_i64(a, r->settled);
    return 0;
}

/* Appends, for each space id in ids: the space view, counts at each of the times,
 * buckets of `interval` over [from, to), and every row. */
static inline void answers_of(ff_engine *e, answers *a, const uint32_t *ids, size_t nids,
                              const int64_t *times, size_t ntimes, int64_t from, int64_t to,
                              int64_t interval)
{
    static ff_bucket bk[FF_MAX_BUCKETS];
    if (a->with_status) ans_i64(a, ff_engine_horizon(e));
    for (size_t s = 0; s < nids; s++) {
        ff_space_info info;
        cr_assert_eq(ff_engine_space_get(e, ids[s], &info), 0);
        ans_put(a, info.def.name, strlen(info.def.name));
        ans_i64(a, (int64_t)info.rows);
        ans_i64(a, info.occupancy);
        ans_i64(a, info.latest_ts);
        if (a->with_revision) ans_i64(a, (int64_t)info.revision);
        for (size_t t = 0; t < ntimes; t++) {
            ff_count c;
            cr_assert_eq(ff_engine_count(e, ids[s], true, times[t], &c), 0);
            ans_i64(a, c.occupancy);
            if (a->with_status) ans_i64(a, c.settled);
            if (a->with_revision) ans_i64(a, (int64_t)c.revision);
        }
        size_t nb;
        cr_assert_eq(ff_engine_counts(e, ids[s], from, to, interval, bk, &nb, NULL), 0);
        for (size_t i = 0; i < nb; i++) {
            if (!a->with_status) bk[i].settled = false;
            ans_put(a, &bk[i], sizeof(bk[i]));
        }
        cr_assert_eq(ff_engine_rows(e, ids[s], FF_TS_MIN, FF_TS_MAX, NULL, ans_row_cb, a), 0);
    }
}

#endif
