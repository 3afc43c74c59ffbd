/*
 * test_log.c -- tests of storage/log.c: round trips, rotation, reopen, sync semantics,
 * format errors, and crash tests that cut or garble the log at every record boundary.
 */
#include "storage/log.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------------- */

static char tdir[64];

static void dir_setup(void)
{
    strcpy(tdir, "/tmp/ff-test-log-XXXXXX");
    cr_assert_not_null(mkdtemp(tdir));
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void rm_rf(const char *d)
{
    nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void dir_teardown(void)
{
    rm_rf(tdir);
}

static char *path_of(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", tdir, name);
    return p;
}

/* One record as written or replayed. */
struct rec {
    int type;
    uint32_t len;
    uint64_t lsn;
    uint8_t *data;
};

struct recs {
    struct rec *v;
    size_t n, cap;
};

static void recs_push(struct recs *rs, int type, const void *p, uint32_t len, uint64_t lsn)
{
    rs->v = ff_xgrow(rs->v, &rs->cap, rs->n + 1, sizeof *rs->v);
    struct rec *r = &rs->v[rs->n++];
    r->type = type;
    r->len = len;
    r->lsn = lsn;
    r->data = ff_xmalloc(len ? len : 1);
    memcpy(r->data, p, len);
}

static void recs_free(struct recs *rs)
{
    for (size_t i = 0; i < rs->n; i++) free(rs->v[i].data);
    free(rs->v);
    memset(rs, 0, sizeof *rs);
}

static int collect(void *ctx, int type, const void *payload, uint32_t len, uint64_t lsn)
{
    recs_push(ctx, type, payload, len, lsn);
    return 0;
}

/* Deterministic payload of record i. */
static uint32_t fill(uint8_t *p, size_t i, uint32_t len)
{
    for (uint32_t k = 0; k < len; k++) p[k] = (uint8_t)(i * 131 + k * 7 + 1);
    return len;
}

static uint32_t len_of(size_t i)
{
    static const uint32_t lens[] = {1, 16, 7, 64, 300, 8, 1024, 33, 4096, 15, 160, 5};
    return lens[i % FF_ARRAY_LEN(lens)];
}

/* Appends n records (varied sizes and types, numbered from `first`) to log and expect. */
static void append_n(ff_log *log, struct recs *expect, size_t first, size_t n)
{
    uint8_t buf[8192];
    for (size_t i = first; i < first + n; i++) {
        uint32_t len = fill(buf, i, len_of(i));
        int type = 1 + (int)(i % 3);
        uint64_t lsn = 0, before = ff_log_written(log);
        cr_assert_eq(ff_log_append(log, type, buf, len, &lsn), 0);
        cr_assert_gt(lsn, before, "LSNs strictly increase");
        cr_assert_eq(ff_log_written(log), lsn);
        if (expect) recs_push(expect, type, buf, len, lsn);
    }
}

static void assert_same(const struct recs *got, const struct recs *want, size_t n)
{
    cr_assert_eq(got->n, n, "replayed %zu records, expected %zu", got->n, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(got->v[i].type, want->v[i].type, "record %zu type", i);
        cr_assert_eq(got->v[i].len, want->v[i].len, "record %zu len", i);
        cr_assert_eq(got->v[i].lsn, want->v[i].lsn, "record %zu lsn", i);
        cr_assert_eq(memcmp(got->v[i].data, want->v[i].data, want->v[i].len), 0,
                     "record %zu payload", i);
        if (i) cr_assert_gt(got->v[i].lsn, got->v[i - 1].lsn);
    }
}

static ff_log *open_ok(const ff_log_opts *o, struct recs *got, ff_log_recovery *rep)
{
    ff_log *log = NULL;
    int rc = ff_log_open(&log, tdir, o, got ? collect : NULL, got, rep);
    cr_assert_eq(rc, 0, "ff_log_open: %s", ff_strerror(rc));
    return log;
}

/* ---- basic behaviour ------------------------------------------------------------- */

TestSuite(log, .init = dir_setup, .fini = dir_teardown);

Test(log, round_trip_of_many_varied_records)
{
    struct recs want = {0}, got = {0};
    ff_log_recovery rep;
    ff_log *log = open_ok(NULL, NULL, &rep);
    cr_assert_eq(rep.records, 0);
    cr_assert_eq(ff_log_written(log), 0);
    append_n(log, &want, 0, 2000);
    cr_assert_eq(ff_log_close(log), 0);

    log = open_ok(NULL, &got, &rep);
    assert_same(&got, &want, want.n);
    cr_assert_eq(rep.records, 2000);
    cr_assert_eq(rep.files, 1);
    cr_assert_eq(rep.cut_offset, -1);
    cr_assert_eq(rep.cut_bytes, 0);
    cr_assert_str_empty(rep.cut_file);
    cr_assert_eq(ff_log_written(log), want.v[want.n - 1].lsn);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&want);
    recs_free(&got);
}

Test(log, rotation_spreads_records_over_files_and_replays_them_all)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0}, got = {0};
    ff_log_recovery rep;
    ff_log *log = open_ok(&o, NULL, NULL);
    append_n(log, &want, 0, 600);
    uint32_t files = ff_log_files(log);
    cr_assert_geq(files, 4, "600 records of ~500 B in 64 KiB files: %u files", files);
    cr_assert_eq(ff_log_disk_bytes(log), (uint64_t)files * (64 << 10));
    cr_assert_eq(ff_log_close(log), 0);

    log = open_ok(&o, &got, &rep);
    assert_same(&got, &want, want.n);
    cr_assert_eq(rep.files, files);
    cr_assert_eq(rep.cut_offset, -1);
    cr_assert_eq(ff_log_files(log), files);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&want);
    recs_free(&got);
}

Test(log, record_larger_than_a_file_gets_a_bigger_file)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0}, got = {0};
    static uint8_t big[200000];
    fill(big, 9, sizeof big);
    ff_log *log = open_ok(&o, NULL, NULL);
    append_n(log, &want, 0, 3);
    uint64_t lsn;
    cr_assert_eq(ff_log_append(log, FF_LOG_TOPO, big, sizeof big, &lsn), 0);
    recs_push(&want, FF_LOG_TOPO, big, sizeof big, lsn);
    append_n(log, &want, 3, 3);
    cr_assert_eq(ff_log_close(log), 0);
    log = open_ok(&o, &got, NULL);
    assert_same(&got, &want, want.n);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&want);
    recs_free(&got);
}

Test(log, reopen_appends_after_the_existing_tail)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0}, got = {0};
    for (int round = 0; round < 5; round++) {
        ff_log *log = open_ok(&o, NULL, NULL);
        uint64_t w = ff_log_written(log);
        cr_assert_eq(w, want.n ? want.v[want.n - 1].lsn : 0);
        cr_assert_eq(ff_log_durable(log), w, "what was recovered is durable");
        append_n(log, &want, want.n, 77);
        cr_assert_eq(ff_log_close(log), 0);
    }
    ff_log *log = open_ok(&o, &got, NULL);
    assert_same(&got, &want, want.n);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&want);
    recs_free(&got);
}

Test(log, durable_advances_only_at_sync)
{
    ff_log *log = open_ok(NULL, NULL, NULL);
    cr_assert_eq(ff_log_durable(log), 0);
    append_n(log, NULL, 0, 10);
    uint64_t w = ff_log_written(log);
    cr_assert_gt(w, 0);
    cr_assert_eq(ff_log_durable(log), 0, "nothing durable before a sync");
    cr_assert_eq(ff_log_sync(log), 0);
    cr_assert_eq(ff_log_durable(log), w);
    cr_assert_eq(ff_log_sync(log), 0, "clean sync is a no-op");
    cr_assert_eq(ff_log_durable(log), w);
    append_n(log, NULL, 10, 1);
    cr_assert_gt(ff_log_written(log), w);
    cr_assert_eq(ff_log_durable(log), w, "new record not yet durable");
    cr_assert_eq(ff_log_sync(log), 0);
    cr_assert_eq(ff_log_durable(log), ff_log_written(log));
    cr_assert_eq(ff_log_close(log), 0);
}

Test(log, reserve_commit_is_zero_copy_and_commit_may_shrink)
{
    struct recs got = {0};
    int err = 0;
    ff_log *log = open_ok(NULL, NULL, NULL);
    uint8_t *p = ff_log_reserve(log, FF_LOG_EVENTS, 64, &err);
    cr_assert_not_null(p);
    memset(p, 0xAB, 64);
    uint64_t lsn = ff_log_commit(log, 10);
    cr_assert_eq(lsn, ff_log_written(log));
    cr_assert_eq(ff_log_close(log), 0);

    ff_log_recovery rep;
    log = open_ok(NULL, &got, &rep);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.v[0].len, 10);
    cr_assert_eq(got.v[0].lsn, lsn);
    for (int i = 0; i < 10; i++) cr_assert_eq(got.v[0].data[i], 0xAB);
    cr_assert_eq(rep.cut_offset, -1, "unused reserved bytes were cleared");
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&got);
}

Test(log, commit_of_zero_abandons_the_reservation)
{
    struct recs got = {0};
    int err = 0;
    ff_log *log = open_ok(NULL, NULL, NULL);
    append_n(log, NULL, 0, 1);
    uint64_t w = ff_log_written(log);
    uint8_t *p = ff_log_reserve(log, FF_LOG_EVENTS, 4096, &err);
    cr_assert_not_null(p);
    memset(p, 0xCD, 4096);
    cr_assert_eq(ff_log_commit(log, 0), w);
    cr_assert_eq(ff_log_written(log), w);
    cr_assert_eq(ff_log_close(log), 0);

    ff_log_recovery rep;
    log = open_ok(NULL, &got, &rep);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(rep.cut_offset, -1, "abandoned bytes were cleared, nothing to cut");
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&got);
}

Test(log, payload_over_the_maximum_is_too_big)
{
    int err = 0;
    ff_log *log = open_ok(NULL, NULL, NULL);
    cr_assert_null(ff_log_reserve(log, FF_LOG_EVENTS, FF_LOG_MAX_PAYLOAD + 1, &err));
    cr_assert_eq(err, FF_ETOOBIG);
    uint8_t b = 0;
    cr_assert_eq(ff_log_append(log, FF_LOG_EVENTS, &b, FF_LOG_MAX_PAYLOAD + 1, NULL), FF_ETOOBIG);
    cr_assert_eq(ff_log_written(log), 0);
    void *p = ff_log_reserve(log, FF_LOG_EVENTS, FF_LOG_MAX_PAYLOAD, &err);
    cr_assert_not_null(p, "the maximum itself fits");
    ff_log_commit(log, 0);
    cr_assert_eq(ff_log_close(log), 0);
}

Test(log, second_open_of_the_same_directory_is_refused)
{
    ff_log *log = open_ok(NULL, NULL, NULL), *two = NULL;
    cr_assert_eq(ff_log_open(&two, tdir, NULL, NULL, NULL, NULL), -EBUSY);
    cr_assert_eq(ff_log_close(log), 0);
}
