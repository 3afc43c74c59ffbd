/*
 * test_log.c -- tests of storage/log.c: round trips, rotation, reopen, sync semantics,
 * format errors, and crash tests that cut or garble the log at every record boundary.
 */
#include "storage/log.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- helpers --------------------------------------------------------------------- */

static char tdir[128];

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

/*
 * Each test works in its own directory under one root made by the runner process, which
 * removes the root at the end: a failed assertion ends a test without running .fini.
 */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    char root[] = "/tmp/ff-test-log-XXXXXX";
    if (mkdtemp(root)) setenv("FF_TEST_LOG_ROOT", root, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    const char *root = getenv("FF_TEST_LOG_ROOT");
    if (root) rm_rf(root);
}

static void dir_setup(void)
{
    const char *root = getenv("FF_TEST_LOG_ROOT");
    snprintf(tdir, sizeof tdir, "%s/t-XXXXXX", root ? root : "/tmp");
    cr_assert_not_null(mkdtemp(tdir));
}

static char *path_of(const char *name)
{
    static char p[512];
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

static int stop_at_two(void *ctx, int type, const void *payload, uint32_t len, uint64_t lsn)
{
    return ++*(int *)ctx == 2 ? 42 : 0;
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

/* Number of log files in the test directory. */
static unsigned log_files_on_disk(void)
{
    DIR *d = opendir(tdir);
    unsigned n = 0;
    struct dirent *de;
    cr_assert_not_null(d);
    while ((de = readdir(d)))
        if (strncmp(de->d_name, "log-", 4) == 0) n++;
    closedir(d);
    return n;
}

Test(log, release_drops_old_files_oldest_first_and_replay_starts_after_them)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0}, got = {0};
    ff_log *log = open_ok(&o, NULL, NULL);
    append_n(log, &want, 0, 600);
    uint32_t files = ff_log_files(log);
    cr_assert_geq(files, 4);
    cr_assert_eq(ff_log_start(log), 0, "nothing released yet");

    /* upto = the LSN of record 300: every file ending at or before it goes */
    uint64_t upto = want.v[300].lsn;
    int n = ff_log_release(log, upto);
    cr_assert_gt(n, 0, "some files end before record 300");
    cr_assert_eq(ff_log_files(log), files - (uint32_t)n);
    cr_assert_eq(log_files_on_disk(), files - (uint32_t)n);
    cr_assert_eq(ff_log_disk_bytes(log), (uint64_t)(files - (uint32_t)n) * (64 << 10));
    uint64_t start = ff_log_start(log);
    cr_assert_leq(start, upto, "only files wholly at or before upto");
    cr_assert_gt(start, 0);
    size_t first = 0; /* the first record still in the log */
    while (want.v[first].lsn <= start) first++;
    cr_assert_gt(want.v[first].lsn, upto - (64 << 10), "at most one file's worth kept before upto");
    cr_assert_eq(ff_log_release(log, upto), 0, "a second release with the same bound is a no-op");

    /* appends go on; reopen replays exactly the records after start */
    append_n(log, &want, 600, 50);
    cr_assert_eq(ff_log_close(log), 0);
    ff_log_recovery rep;
    log = open_ok(&o, &got, &rep);
    cr_assert_eq(ff_log_start(log), start);
    cr_assert_eq(got.n, want.n - first);
    for (size_t i = 0; i < got.n; i++) {
        cr_assert_eq(got.v[i].lsn, want.v[first + i].lsn, "record %zu", first + i);
        cr_assert_eq(memcmp(got.v[i].data, want.v[first + i].data, got.v[i].len), 0);
    }

    /* the current file is never released, whatever the bound */
    files = ff_log_files(log);
    n = ff_log_release(log, UINT64_MAX);
    cr_assert_eq(n, (int)files - 1);
    cr_assert_eq(ff_log_files(log), 1);
    cr_assert_eq(log_files_on_disk(), 1);
    uint64_t cur_prev = ff_log_start(log);
    append_n(log, NULL, 650, 10);
    uint64_t last = ff_log_written(log);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&got);
    log = open_ok(&o, &got, NULL);
    cr_assert_eq(ff_log_start(log), cur_prev);
    cr_assert_geq(got.n, 10, "the current file replays whole");
    cr_assert_gt(got.v[0].lsn, cur_prev);
    cr_assert_eq(got.v[got.n - 1].lsn, last);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&want);
    recs_free(&got);
}

Test(log, a_missing_first_file_is_seen_only_through_start)
{
    /* the log cannot tell a released file from a lost one: it reports start, and its
     * owner (the engine, with its checkpoint) decides. A lost middle file stays fatal. */
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0}, got = {0};
    ff_log *log = open_ok(&o, NULL, NULL);
    append_n(log, &want, 0, 300);
    cr_assert_geq(ff_log_files(log), 3);
    cr_assert_eq(ff_log_close(log), 0);
    cr_assert_eq(unlink(path_of("log-0000000000000000.ffl")), 0);
    log = open_ok(&o, &got, NULL);
    uint64_t start = ff_log_start(log);
    cr_assert_gt(start, 0);
    cr_assert_gt(got.v[0].lsn, start);
    cr_assert_eq(got.v[got.n - 1].lsn, want.v[want.n - 1].lsn);
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

Test(log, empty_payload_or_type_zero_is_invalid)
{
    int err = 0;
    uint8_t b = 1;
    ff_log *log = open_ok(NULL, NULL, NULL);
    cr_assert_null(ff_log_reserve(log, FF_LOG_EVENTS, 0, &err));
    cr_assert_eq(err, FF_EINVALID);
    cr_assert_eq(ff_log_append(log, 0, &b, 1, NULL), FF_EINVALID);
    cr_assert_eq(ff_log_written(log), 0);
    cr_assert_eq(ff_log_close(log), 0);
}

Test(log, rotation_makes_the_rotated_file_durable)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    ff_log *log = open_ok(&o, NULL, NULL);
    while (ff_log_files(log) < 3) {
        uint64_t before = ff_log_written(log);
        uint32_t files = ff_log_files(log);
        append_n(log, NULL, 0, 1);
        if (ff_log_files(log) > files)
            cr_assert_eq(ff_log_durable(log), before, "old file synced at rotation");
        else
            cr_assert_lt(ff_log_durable(log), ff_log_written(log));
    }
    cr_assert_eq(ff_log_sync(log), 0);
    cr_assert_eq(ff_log_durable(log), ff_log_written(log));
    cr_assert_eq(ff_log_close(log), 0);
}

Test(log, second_open_of_the_same_directory_is_refused)
{
    ff_log *log = open_ok(NULL, NULL, NULL), *two = NULL;
    cr_assert_eq(ff_log_open(&two, tdir, NULL, NULL, NULL, NULL), -EBUSY);
    cr_assert_eq(ff_log_close(log), 0);
}

/* ---- files on disk ---------------------------------------------------------------- */

/* The bytes of every file of the log directory, sorted by name (= by base). */
struct img {
    char name[256];
    uint8_t *b;
    size_t n;
};

struct snap {
    struct img f[32];
    int n;
};

static int cmp_img(const void *a, const void *b)
{
    return strcmp(((const struct img *)a)->name, ((const struct img *)b)->name);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s", path);
    cr_assert_eq(fstat(fd, &st), 0);
    uint8_t *b = ff_xmalloc((size_t)st.st_size + 1);
    cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *n = (size_t)st.st_size;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "create %s", path);
    cr_assert_eq(pwrite(fd, b, n, 0), (ssize_t)n);
    close(fd);
}

static void snap_take(struct snap *s)
{
    DIR *d = opendir(tdir);
    cr_assert_not_null(d);
    s->n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        cr_assert_lt(s->n, 32);
        struct img *f = &s->f[s->n++];
        snprintf(f->name, sizeof f->name, "%s", e->d_name);
        f->b = slurp(path_of(f->name), &f->n);
    }
    closedir(d);
    qsort(s->f, (size_t)s->n, sizeof s->f[0], cmp_img);
}

static void snap_restore(const struct snap *s)
{
    rm_rf(tdir);
    cr_assert_eq(mkdir(tdir, 0700), 0);
    for (int i = 0; i < s->n; i++) spit(path_of(s->f[i].name), s->f[i].b, s->f[i].n);
}

static void snap_free(struct snap *s)
{
    for (int i = 0; i < s->n; i++) free(s->f[i].b);
    s->n = 0;
}

static uint64_t base_of(const struct img *f)
{
    return strtoull(f->name + 4, NULL, 16);
}

/* Offset after the last non-zero byte of b[from, to), or from if none. */
static uint64_t nz_end(const uint8_t *b, uint64_t from, uint64_t to)
{
    while (to > from && b[to - 1] == 0) to--;
    return to;
}

static uint64_t size_of_rec(uint32_t len)
{
    return 24 + ((len + 7u) & ~7u);
}

/*
 * Opens the damaged log and asserts: exactly the first `keep` records of `want` are
 * replayed, the cut is as given (cut_off -1: none), and appending after the recovery
 * then reopening replays the prefix plus the new records and nothing else.
 */
static void check_recovery(const ff_log_opts *o, const struct recs *want, size_t keep,
                           const char *cut_file, int64_t cut_off, uint64_t cut_bytes,
                           const char *what)
{
    struct recs got = {0}, want2 = {0};
    ff_log_recovery rep;
    ff_log *log = open_ok(o, &got, &rep);

    cr_assert_eq(got.n, keep, "%s: replayed %zu, expected %zu", what, got.n, keep);
    assert_same(&got, want, keep);
    cr_assert_eq(rep.records, keep, "%s", what);
    cr_assert_eq(rep.cut_offset, cut_off, "%s: cut at %lld, expected %lld", what,
                 (long long)rep.cut_offset, (long long)cut_off);
    if (cut_off >= 0) {
        cr_assert_str_eq(rep.cut_file, cut_file, "%s", what);
        cr_assert_eq(rep.cut_bytes, cut_bytes, "%s: cut %llu bytes, expected %llu", what,
                     (unsigned long long)rep.cut_bytes, (unsigned long long)cut_bytes);
        cr_assert_str_not_empty(rep.cut_reason);
    }
    uint64_t w = keep ? want->v[keep - 1].lsn : 0;
    cr_assert_eq(ff_log_written(log), w, "%s: written", what);
    for (size_t i = 0; i < keep; i++)
        recs_push(&want2, want->v[i].type, want->v[i].data, want->v[i].len, want->v[i].lsn);
    append_n(log, &want2, 1000, 3);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&got);

    log = open_ok(o, &got, &rep);
    assert_same(&got, &want2, want2.n);
    cr_assert_eq(rep.cut_offset, -1, "%s: second recovery is clean", what);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&got);
    recs_free(&want2);
}

/* Builds a log spanning several 64 KiB files; returns its records and files. */
static void build(const ff_log_opts *o, struct recs *want, size_t n, struct snap *s)
{
    ff_log *log = open_ok(o, NULL, NULL);
    append_n(log, want, 0, n);
    cr_assert_eq(ff_log_close(log), 0);
    snap_take(s);
}

/* Index of the first record of the last file. */
static size_t first_in_last(const struct recs *want, const struct snap *s)
{
    uint64_t base = base_of(&s->f[s->n - 1]);
    size_t i = 0;
    while (i < want->n && want->v[i].lsn - size_of_rec(want->v[i].len) < base) i++;
    return i;
}

/* ---- crash tests ------------------------------------------------------------------- */

/*
 * For every record boundary of the last file, and a sample of offsets inside the record
 * that follows it, the lost tail is simulated by zeroing (zero=1) or truncating the file
 * there.
 */
static void lost_tail_loop(int zero)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 170, &s);
    cr_assert_geq(s.n, 2);
    const struct img *last = &s.f[s.n - 1];
    uint64_t base = base_of(last);
    size_t first = first_in_last(&want, &s);
    cr_assert_gt(want.n - first, 10, "enough records in the last file");

    for (size_t i = first; i <= want.n; i++) {
        uint64_t start = i ? want.v[i - 1].lsn - base : 64;
        if (i == first) start = 64;
        uint64_t rsz = i < want.n ? size_of_rec(want.v[i].len) : 9;
        uint64_t deltas[] = {0, 1, 7, 8, 12, 16, 23, 24, 25, rsz / 2, rsz - 1};
        for (size_t d = 0; d < FF_ARRAY_LEN(deltas); d++) {
            uint64_t p = start + deltas[d];
            if (deltas[d] >= rsz || (d && deltas[d] == deltas[d - 1])) continue;
            /* Damage that changes no byte of the record is the next boundary's case. */
            if (i < want.n && nz_end(last->b, p, start + rsz) == p) continue;
            char what[128];
            snprintf(what, sizeof what, "%s at record %zu + %llu", zero ? "zero" : "truncate", i,
                     (unsigned long long)deltas[d]);
            snap_restore(&s);
            if (zero) {
                uint8_t *b = calloc(1, last->n - p);
                spit(path_of(last->name), last->b, p);
                int fd = open(path_of(last->name), O_WRONLY | O_APPEND);
                cr_assert_eq(write(fd, b, last->n - p), (ssize_t)(last->n - p));
                close(fd);
                free(b);
            } else {
                cr_assert_eq(truncate(path_of(last->name), (off_t)p), 0);
            }
            uint64_t nz = nz_end(last->b, start, p);
            int cut = !zero || nz > start;
            check_recovery(&o, &want, i, last->name, cut ? (int64_t)start : -1, nz - start, what);
        }
    }
    snap_free(&s);
    recs_free(&want);
}

Test(log, lost_tail_zeroed_at_every_boundary_is_cut, .timeout = 240)
{
    lost_tail_loop(1);
}

Test(log, lost_tail_truncated_at_every_boundary_is_cut, .timeout = 240)
{
    lost_tail_loop(0);
}

/* Flips one byte at every header field and a sample of payload offsets of each record. */
/*
 * Damage followed by valid records is not a torn tail: the open is refused and the file
 * is left exactly as it was (nothing acknowledged is cut).
 */
static void check_refused(const ff_log_opts *o, struct snap *s, uint64_t flipped, const char *what)
{
    ff_log *log = NULL;
    ff_log_recovery rep;
    struct img *last = &s->f[s->n - 1];
    int rc = ff_log_open(&log, tdir, o, NULL, NULL, &rep);
    cr_assert_eq(rc, FF_ECORRUPT, "%s: open gave %s", what, ff_strerror(rc));
    cr_assert(strstr(rep.cut_reason, "not a torn tail") != NULL, "%s: %s", what, rep.cut_reason);
    size_t n;
    uint8_t *now = slurp(path_of(last->name), &n);
    cr_assert_eq(n, last->n, "%s: file size changed", what);
    now[flipped] ^= 0x5a;
    cr_assert(memcmp(now, last->b, n) == 0, "%s: the refused file was changed", what);
    free(now);
}

/* A garbled record is cut when it is the last one; with valid records after it the open
 * is refused (see check_refused). */
Test(log, garbled_byte_in_any_record_cuts_or_refuses, .timeout = 240)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 170, &s);
    struct img *last = &s.f[s.n - 1];
    uint64_t base = base_of(last);
    size_t first = first_in_last(&want, &s);

    for (size_t i = first; i < want.n; i++) {
        uint32_t len = want.v[i].len;
        uint64_t rsz = size_of_rec(len);
        uint64_t start = want.v[i].lsn - base - rsz;
        uint64_t offs[] = {0, 5, 8, 10, 12, 14, 16, 21, 24, 24 + len / 2, 24 + len - 1, rsz - 1};
        for (size_t k = 0; k < FF_ARRAY_LEN(offs); k++) {
            uint64_t p = start + offs[k];
            char what[128];
            snprintf(what, sizeof what, "flip at record %zu + %llu", i,
                     (unsigned long long)offs[k]);
            last->b[p] ^= 0x5a;
            uint64_t nz = nz_end(last->b, start, last->n);
            snap_restore(&s);
            last->b[p] ^= 0x5a;
            if (i + 1 < want.n)
                check_refused(&o, &s, p, what);
            else
                check_recovery(&o, &want, i, last->name, (int64_t)start, nz - start, what);
        }
    }
    /* A stray byte in the zero tail after the last record is cut too. */
    uint64_t end = want.v[want.n - 1].lsn - base, p = end + 1000;
    last->b[p] = 1;
    snap_restore(&s);
    last->b[p] = 0;
    check_recovery(&o, &want, want.n, last->name, (int64_t)end, p + 1 - end, "stray byte");
    snap_free(&s);
    recs_free(&want);
}

/* A record committed into the zeroed tail must never validate a stale record after it. */
Test(log, stale_records_after_a_cut_never_reappear)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0}, got = {0};
    struct snap s;
    ff_log *log = open_ok(&o, NULL, NULL);
    /* Equal-sized records: new records after the cut land on the old boundaries. */
    uint8_t buf[100];
    for (int i = 0; i < 20; i++) {
        uint64_t lsn;
        memset(buf, i, sizeof buf);
        cr_assert_eq(ff_log_append(log, FF_LOG_EVENTS, buf, sizeof buf, &lsn), 0);
        recs_push(&want, FF_LOG_EVENTS, buf, sizeof buf, lsn);
    }
    cr_assert_eq(ff_log_close(log), 0);
    snap_take(&s);
    uint64_t start5 = want.v[4].lsn; /* record 5 starts here */
    /* Every record from 5 on is damaged (a torn write over all of them): a tail. */
    for (size_t i = 5; i < want.n; i++) s.f[0].b[want.v[i - 1].lsn + 30] ^= 1;
    snap_restore(&s);
    ff_log_recovery rep;
    log = open_ok(&o, &got, &rep);
    cr_assert_eq(got.n, 5);
    cr_assert_eq(rep.cut_offset, (int64_t)start5);
    recs_free(&got);
    memset(buf, 0xEE, sizeof buf);
    uint64_t lsn;
    cr_assert_eq(ff_log_append(log, FF_LOG_EVENTS, buf, sizeof buf, &lsn), 0);
    cr_assert_eq(lsn, want.v[5].lsn, "new record lands on the old boundary");
    cr_assert_eq(ff_log_close(log), 0);
    log = open_ok(&o, &got, &rep);
    cr_assert_eq(got.n, 6, "old records 6.. stay gone");
    cr_assert_eq(got.v[5].data[0], 0xEE);
    cr_assert_eq(rep.cut_offset, -1);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&got);
    recs_free(&want);
    snap_free(&s);
}

/* A valid record copied to another position (a stale life of those bytes) is not valid. */
Test(log, record_bytes_at_a_different_position_do_not_validate)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 6, &s);
    uint64_t rsz = size_of_rec(want.v[2].len), end = want.v[5].lsn;
    memcpy(s.f[0].b + end, s.f[0].b + want.v[2].lsn - rsz, rsz);
    snap_restore(&s);
    check_recovery(&o, &want, 6, s.f[0].name, (int64_t)end, nz_end(s.f[0].b, end, s.f[0].n) - end,
                   "copied record");
    snap_free(&s);
    recs_free(&want);
}

/* ---- damaged files that are not a tail ------------------------------------------- */

Test(log, corruption_in_an_earlier_file_is_fatal_and_named)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 300, &s);
    cr_assert_geq(s.n, 3);
    for (int f = 0; f < s.n - 1; f++) {
        uint64_t base = base_of(&s.f[f]);
        /* the third record of file f */
        size_t i = 0, seen = 0;
        for (; i < want.n; i++) {
            uint64_t st = want.v[i].lsn - size_of_rec(want.v[i].len);
            if (st >= base && st < base + s.f[f].n && ++seen == 3) break;
        }
        uint64_t off = want.v[i].lsn - size_of_rec(want.v[i].len) - base;
        s.f[f].b[off + 30] ^= 0x80;
        snap_restore(&s);
        s.f[f].b[off + 30] ^= 0x80;

        ff_log *log = NULL;
        ff_log_recovery rep;
        char off_s[64];
        cr_assert_eq(ff_log_open(&log, tdir, &o, NULL, NULL, &rep), FF_ECORRUPT);
        cr_assert_null(log);
        snprintf(off_s, sizeof off_s, "offset %llu", (unsigned long long)off);
        cr_assert_not_null(strstr(rep.cut_reason, s.f[f].name), "%s", rep.cut_reason);
        cr_assert_not_null(strstr(rep.cut_reason, off_s), "%s", rep.cut_reason);
    }
    snap_free(&s);
    recs_free(&want);
}

Test(log, lost_tail_of_an_earlier_file_is_fatal)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 300, &s);
    size_t i = 0;
    while (want.v[i + 1].lsn <= s.f[0].n) i++;
    /* file 0 loses its last record cleanly: only file 1's prev_end can tell */
    uint64_t last0 = want.v[i].lsn - size_of_rec(want.v[i].len);
    memset(s.f[0].b + last0, 0, s.f[0].n - last0);
    snap_restore(&s);
    ff_log *log = NULL;
    ff_log_recovery rep;
    cr_assert_eq(ff_log_open(&log, tdir, &o, NULL, NULL, &rep), FF_ECORRUPT);
    cr_assert_not_null(strstr(rep.cut_reason, s.f[1].name), "%s", rep.cut_reason);
    snap_free(&s);
    recs_free(&want);
}

Test(log, missing_middle_file_is_fatal)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 300, &s);
    cr_assert_geq(s.n, 3);
    cr_assert_eq(unlink(path_of(s.f[1].name)), 0);
    ff_log *log = NULL;
    ff_log_recovery rep;
    cr_assert_eq(ff_log_open(&log, tdir, &o, NULL, NULL, &rep), FF_ECORRUPT);
    cr_assert_not_null(strstr(rep.cut_reason, s.f[2].name), "%s", rep.cut_reason);
    snap_free(&s);
    recs_free(&want);
}

Test(log, file_that_is_not_a_log_is_a_format_error)
{
    char junk[4096];
    memset(junk, 'x', sizeof junk);
    memcpy(junk, "hello, I am a text file\n", 24);
    spit(path_of("log-0000000000000000.ffl"), junk, sizeof junk);
    ff_log *log = NULL;
    ff_log_recovery rep;
    cr_assert_eq(ff_log_open(&log, tdir, NULL, NULL, NULL, &rep), FF_EFORMAT);
    cr_assert_not_null(strstr(rep.cut_reason, "log-0000000000000000.ffl"), "%s", rep.cut_reason);
    cr_assert_not_null(strstr(rep.cut_reason, "not a footfall"), "%s", rep.cut_reason);
}

Test(log, short_file_that_is_not_a_log_is_a_format_error)
{
    spit(path_of("log-0000000000000000.ffl"), "not a log\n", 10);
    ff_log *log = NULL;
    ff_log_recovery rep;
    cr_assert_eq(ff_log_open(&log, tdir, NULL, NULL, NULL, &rep), FF_EFORMAT);
    cr_assert_str_eq(rep.cut_file, "log-0000000000000000.ffl");
}

Test(log, unknown_version_is_a_version_error)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 5, &s);
    uint32_t v = 2;
    memcpy(s.f[0].b + 8, &v, 4);
    uint64_t h = XXH3_64bits(s.f[0].b, 56);
    memcpy(s.f[0].b + 56, &h, 8);
    snap_restore(&s);
    ff_log *log = NULL;
    ff_log_recovery rep;
    cr_assert_eq(ff_log_open(&log, tdir, &o, NULL, NULL, &rep), FF_EVERSION);
    cr_assert_not_null(strstr(rep.cut_reason, "version 2"), "%s", rep.cut_reason);
    snap_free(&s);
    recs_free(&want);
}

Test(log, garbled_file_header_is_corrupt)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0};
    struct snap s;
    build(&o, &want, 5, &s);
    s.f[0].b[30] ^= 1; /* base LSN */
    snap_restore(&s);
    ff_log *log = NULL;
    ff_log_recovery rep;
    cr_assert_eq(ff_log_open(&log, tdir, &o, NULL, NULL, &rep), FF_ECORRUPT);
    cr_assert_not_null(strstr(rep.cut_reason, "checksum"), "%s", rep.cut_reason);
    snap_free(&s);
    recs_free(&want);
}

Test(log, zero_last_file_from_an_interrupted_rotation_is_reinitialised)
{
    ff_log_opts o = {.file_bytes = 64 << 10};
    struct recs want = {0}, got = {0};
    struct snap s;
    build(&o, &want, 5, &s);
    cr_assert_eq(s.n, 1);
    static uint8_t zeros[64 << 10];
    spit(path_of("log-0000000000010000.ffl"), zeros, sizeof zeros);
    spit(path_of("log-0000000000020000.ffl.tmp"), "half", 4);
    check_recovery(&o, &want, 5, "", -1, 0, "zero last file");
    ff_log *log = open_ok(&o, &got, NULL);
    cr_assert_eq(ff_log_files(log), 2);
    cr_assert_eq(access(path_of("log-0000000000020000.ffl.tmp"), F_OK), -1,
                 "leftover temp file removed");
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&got);
    snap_free(&s);
    recs_free(&want);
}

Test(log, callback_can_stop_the_replay)
{
    ff_log *log = open_ok(NULL, NULL, NULL);
    append_n(log, NULL, 0, 3);
    cr_assert_eq(ff_log_close(log), 0);
    cr_assert_eq(ff_log_open(&log, tdir, NULL, stop_at_two, &(int){0}, NULL), 42);
}

/* ---- asynchronous sync (ff_log_sync_begin/run/end) -------------------------------- */

struct job_thread {
    pthread_t t;
    ff_log_sync_job *job;
    int rc;
};

static void *job_main(void *arg)
{
    struct job_thread *jt = arg;
    jt->rc = ff_log_sync_run(jt->job);
    return NULL;
}

/* Runs the job's msync on another thread and waits for it. */
static int run_on_thread(ff_log_sync_job *job)
{
    struct job_thread jt = {.job = job, .rc = 1};
    cr_assert_eq(pthread_create(&jt.t, NULL, job_main, &jt), 0);
    cr_assert_eq(pthread_join(jt.t, NULL), 0);
    return jt.rc;
}

Test(log, sync_job_makes_durable_exactly_what_it_captured)
{
    struct recs want = {0}, got = {0};
    ff_log_sync_job job, other;
    ff_log *log = open_ok(NULL, NULL, NULL);

    cr_assert_eq(ff_log_sync_begin(log, &job), 0, "nothing written: no job");
    append_n(log, &want, 0, 20);
    uint64_t w1 = ff_log_written(log);
    cr_assert_eq(ff_log_sync_begin(log, &job), 1);
    cr_assert_eq(job.lsn, w1);
    cr_assert(ff_log_sync_busy(log));
    append_n(log, &want, 20, 20); /* the owner goes on appending meanwhile */
    cr_assert_eq(ff_log_sync_begin(log, &other), 0, "one job at a time");
    cr_assert_eq(ff_log_durable(log), 0, "nothing durable before the job ends");
    int rc = run_on_thread(&job);
    cr_assert_eq(rc, 0);
    cr_assert_eq(ff_log_durable(log), 0, "run alone reports nothing");
    cr_assert_eq(ff_log_sync_end(log, &job, rc), 0);
    cr_assert_not(ff_log_sync_busy(log));
    cr_assert_eq(ff_log_durable(log), w1, "durable = the captured LSN, not written");
    cr_assert_lt(ff_log_durable(log), ff_log_written(log));

    cr_assert_eq(ff_log_sync_begin(log, &job), 1, "the rest is the next job");
    cr_assert_eq(job.lsn, ff_log_written(log));
    cr_assert_eq(ff_log_sync_end(log, &job, run_on_thread(&job)), 0);
    cr_assert_eq(ff_log_durable(log), ff_log_written(log));
    cr_assert_eq(ff_log_sync_begin(log, &job), 0, "clean: no job");
    cr_assert_eq(ff_log_close(log), 0);

    log = open_ok(NULL, &got, NULL);
    assert_same(&got, &want, 40);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&want);
    recs_free(&got);
}

Test(log, rotation_while_a_job_is_in_flight_keeps_its_mapping)
{
    struct recs want = {0}, got = {0};
    ff_log_opts o = {.file_bytes = 64 << 10};
    ff_log_sync_job job;
    ff_log *log = open_ok(&o, NULL, NULL);

    append_n(log, &want, 0, 5);
    cr_assert_eq(ff_log_sync_begin(log, &job), 1);
    uint64_t target = job.lsn;
    size_t n = 5;
    while (ff_log_files(log) < 3) append_n(log, &want, n++, 1); /* two rotations */
    /* The job's range is in the first file, rotated away twice: still mapped (msync of
     * an unmapped range fails with ENOMEM). */
    int rc = run_on_thread(&job);
    cr_assert_eq(rc, 0, "msync of the pinned range: %s", ff_strerror(rc));
    uint64_t d = ff_log_durable(log);
    cr_assert_geq(d, target, "rotation synced the old files itself");
    cr_assert_eq(ff_log_sync_end(log, &job, rc), 0);
    cr_assert_eq(ff_log_durable(log), d, "durable never goes back");
    append_n(log, &want, n, 3);
    n += 3;
    cr_assert_eq(ff_log_sync_begin(log, &job), 1);
    cr_assert_eq(ff_log_sync_end(log, &job, ff_log_sync_run(&job)), 0);
    cr_assert_eq(ff_log_durable(log), ff_log_written(log));
    cr_assert_eq(ff_log_close(log), 0);

    log = open_ok(&o, &got, NULL);
    assert_same(&got, &want, n);
    cr_assert_eq(ff_log_close(log), 0);
    recs_free(&want);
    recs_free(&got);
}

Test(log, sync_during_a_job_covers_it_and_the_job_end_does_not_go_back)
{
    ff_log_sync_job job;
    ff_log *log = open_ok(NULL, NULL, NULL);
    append_n(log, NULL, 0, 10);
    cr_assert_eq(ff_log_sync_begin(log, &job), 1);
    append_n(log, NULL, 10, 10);
    cr_assert_eq(ff_log_sync(log), 0);
    uint64_t w = ff_log_written(log);
    cr_assert_eq(ff_log_durable(log), w);
    cr_assert_eq(ff_log_sync_end(log, &job, run_on_thread(&job)), 0);
    cr_assert_eq(ff_log_durable(log), w);
    cr_assert_eq(ff_log_close(log), 0);
}

Test(log, failed_sync_job_makes_nothing_durable_and_the_log_fails)
{
    ff_log_sync_job job;
    ff_log *log = open_ok(NULL, NULL, NULL);
    append_n(log, NULL, 0, 10);
    cr_assert_eq(ff_log_sync(log), 0);
    uint64_t d = ff_log_durable(log);
    append_n(log, NULL, 10, 10);
    cr_assert_eq(ff_log_sync_begin(log, &job), 1);
    /* A failed msync, simulated: run's result as the kernel would give it. */
    cr_assert_eq(ff_log_sync_end(log, &job, -EIO), -EIO);
    cr_assert_eq(ff_log_durable(log), d, "nothing of the failed job is durable");
    cr_assert_not(ff_log_sync_busy(log));
    cr_assert_eq(ff_log_sync_begin(log, &job), -EIO, "retries report the sticky error");
    cr_assert_eq(ff_log_sync(log), -EIO);
    cr_assert_eq(ff_log_durable(log), d);
    int err = 0;
    cr_assert_null(ff_log_reserve(log, 1, 8, &err));
    cr_assert_eq(err, -EIO, "a failed log takes no more records");
    cr_assert_eq(ff_log_close(log), -EIO);
}

/* A writeback error after the last sync, already told to the log's own description (a
 * sync job's run took it; its end is still to come): a datasync job begun then must fail
 * all the same -- a description opened at its begin would never be told (errseq) -- and
 * its end fails the log, so that no later job or sync calls those records durable. */
Test(log, a_writeback_error_told_elsewhere_still_fails_a_datasync_job_and_the_log)
{
    ff_log_datasync_job job;
    ff_log *log = open_ok(NULL, NULL, NULL);
    append_n(log, NULL, 0, 10);
    cr_assert_eq(ff_log_sync(log), 0);
    append_n(log, NULL, 10, 10);
    ff__log_test_wb_error(log, true);
    cr_assert_eq(ff_log_datasync_begin(log, &job), 0);
    cr_assert_eq(job.lsn, ff_log_written(log));
    cr_assert_eq(ff_log_datasync_run(&job), -EIO, "the error escaped the job");
    cr_assert_eq(ff_log_datasync_end(log, &job), -EIO);
    cr_assert_eq(ff_log_datasync_begin(log, &job), -EIO, "the next job is told by the log");
    cr_assert_eq(ff_log_datasync_run(&job), -EIO);
    cr_assert_eq(ff_log_datasync_end(log, &job), -EIO);
    cr_assert_eq(ff_log_sync(log), -EIO, "the log failed");
    int err = 0;
    cr_assert_null(ff_log_reserve(log, 1, 8, &err));
    cr_assert_eq(err, -EIO);
    cr_assert_eq(ff_log_close(log), -EIO);
}

/* The datasync descriptor of a file made by rotation, and of the last file of a reopened
 * log, is opened before anything is written to it too; a job begun before a rotation
 * syncs the file it began on, which rotation leaves to it. */
Test(log, datasync_jobs_follow_rotation_and_reopen)
{
    ff_log_opts o = {.file_bytes = 8192};
    ff_log_datasync_job job;
    ff_log *log = open_ok(&o, NULL, NULL);
    append_n(log, NULL, 0, 3);
    cr_assert_eq(ff_log_datasync_begin(log, &job), 0);
    uint32_t files = ff_log_files(log);
    append_n(log, NULL, 3, 30);
    cr_assert_gt(ff_log_files(log), files, "rotated while the job was in flight");
    cr_assert_eq(ff_log_datasync_run(&job), 0);
    cr_assert_eq(ff_log_datasync_end(log, &job), 0);
    ff__log_test_wb_error(log, false); /* on the file rotation made */
    cr_assert_eq(ff_log_datasync_begin(log, &job), 0);
    cr_assert_eq(ff_log_datasync_run(&job), -EIO);
    cr_assert_eq(ff_log_datasync_end(log, &job), -EIO);
    cr_assert_eq(ff_log_close(log), -EIO, "the log failed");

    log = open_ok(&o, NULL, NULL);
    append_n(log, NULL, 33, 2);
    ff__log_test_wb_error(log, true);
    cr_assert_eq(ff_log_datasync_begin(log, &job), 0);
    cr_assert_eq(ff_log_datasync_run(&job), -EIO);
    cr_assert_eq(ff_log_datasync_end(log, &job), -EIO);
    cr_assert_eq(ff_log_close(log), -EIO);
}
