/*
 * test_segment.c -- tests of storage/segment.c: round trips of random rows, count-at-T at
 * every boundary against a brute-force scan, range scans, exact lookups, names, atomic
 * replacement, crashes while writing, corruption at every block boundary and a sample of
 * offsets (never a wrong answer), truncation, and bytes per row of a realistic day.
 */
#include "storage/segment.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* Sanitizer and unoptimised builds run ~30x slower: they check fewer points. */
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
#define SLOW_BUILD 1
#else
#define SLOW_BUILD 0
#endif

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

/* Per-test directories under one root that the runner removes even after a failure. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    char root[] = "/tmp/ff-test-seg-XXXXXX";
    if (mkdtemp(root)) setenv("FF_TEST_SEG_ROOT", root, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    const char *root = getenv("FF_TEST_SEG_ROOT");
    if (root && !getenv("FF_TEST_KEEP")) rm_rf(root);
}

static void dir_setup(void)
{
    const char *root = getenv("FF_TEST_SEG_ROOT");
    snprintf(tdir, sizeof tdir, "%s/t-XXXXXX", root ? root : "/tmp");
    cr_assert_not_null(mkdtemp(tdir));
}

static void dir_teardown(void)
{
    if (!getenv("FF_TEST_KEEP")) rm_rf(tdir);
}

static char *path_of(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tdir, name);
    return p[k];
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* One space's rows as written. */
typedef struct space {
    uint32_t id;
    int64_t occ_before;
    ff_seg_row *rows;
    size_t n;
} space;

static int key_cmp_rows(const void *pa, const void *pb)
{
    const ff_seg_row *a = pa, *b = pb;
    ff_seg_key k = {b->ts, b->dpu_id, b->seq, b->direction};
    return ff_seg_key_cmp(a, &k);
}

/* Folds occupancy over sorted rows: occ += delta, clamped at zero when clamp. */
static void fold(space *s, bool clamp)
{
    int64_t occ = s->occ_before;
    for (size_t i = 0; i < s->n; i++) {
        occ = (int64_t)((uint64_t)occ + (uint64_t)(int64_t)s->rows[i].delta); /* may wrap */
        if (clamp && occ < 0) occ = 0;
        s->rows[i].occupancy = occ;
    }
}

/*
 * Random rows of a space, every awkward case mixed in: equal timestamps, huge gaps,
 * µs-precision and ms-precision times, many or one DPU, seq with and without steps,
 * odd directions and deltas, negative occupancy, clamping.
 */
static void gen_space(space *s, uint32_t id, size_t n)
{
    s->id = id;
    s->n = n;
    s->rows = ff_xcalloc(n ? n : 1, sizeof *s->rows);
    s->occ_before = (int64_t)below(7) - 3;
    int64_t ts = (int64_t)below(1u << 30) * 1000 - ((int64_t)1 << 38);
    uint32_t ndpu = 1 + (uint32_t)below(below(4) ? 4 : 300);
    uint16_t seq[300] = {0};
    bool ms = below(3) != 0;
    for (size_t i = 0; i < n; i++) {
        ff_seg_row *r = &s->rows[i];
        uint64_t c = below(100);
        if (c < 10)
            ; /* equal timestamp */
        else if (c < 12)
            ts += (int64_t)below(1ull << 40) * (ms ? 1000 : 1);
        else
            ts += (int64_t)(1 + below(60000)) * (ms ? 1000 : 1) + (ms ? 0 : (int64_t)below(999));
        r->ts = ts;
        r->dpu_id = 100 + (uint32_t)below(ndpu) * (1 + (id % 5)) * 977;
        uint32_t d = (r->dpu_id - 100) % 300;
        seq[d] = (uint16_t)(seq[d] + (below(20) ? 1 : (uint16_t)below(65536)));
        r->seq = below(30) ? seq[d] : 0;
        r->direction = below(50) ? (below(2) ? 1 : -1) : (int8_t)(below(5) - 2);
        r->delta = below(40) ? (int8_t)((r->dpu_id & 1) ? -r->direction : r->direction)
                             : (int8_t)(below(7) - 3);
    }
    if (n) qsort(s->rows, n, sizeof *s->rows, key_cmp_rows);
    fold(s, id % 3 == 0);
    if (id % 7 == 0 && n) s->rows[n / 2].occupancy += (int64_t)below(1000) - 500; /* odd fold */
    for (size_t i = n / 2 + 1; id % 7 == 0 && i < n; i++)
        s->rows[i].occupancy = s->rows[i - 1].occupancy + s->rows[i].delta;
}

static void spaces_free(space *sp, size_t n)
{
    for (size_t i = 0; i < n; i++) free(sp[i].rows);
    free(sp);
}

static int write_seg(const char *name, const space *sp, size_t n, const ff_seg_writer_opts *o,
                     ff_seg_stats *st)
{
    ff_seg_writer *w;
    int rc = ff_seg_writer_open(&w, tdir, name, o);
    cr_assert_eq(rc, 0, "writer_open: %s", ff_strerror(rc));
    for (size_t i = 0; i < n; i++) {
        rc = ff_seg_writer_add_space(w, sp[i].id, sp[i].occ_before, sp[i].rows, sp[i].n);
        cr_assert_eq(rc, 0, "add_space %u: %s", sp[i].id, ff_strerror(rc));
    }
    return ff_seg_writer_finish(w, NULL, st);
}

static ff_seg *open_ok(const char *path)
{
    ff_seg *seg;
    char err[FF_SEG_ERRLEN];
    int rc = ff_seg_open(path, &seg, err, sizeof err);
    cr_assert_eq(rc, 0, "ff_seg_open: %s (%s)", err, ff_strerror(rc));
    return seg;
}

/* Rows collected by ff_seg_rows. */
typedef struct got {
    ff_seg_row *v;
    size_t n, cap;
} got;

static int collect(void *ctx, const ff_seg_row *r)
{
    got *g = ctx;
    g->v = ff_xgrow(g->v, &g->cap, g->n + 1, sizeof *g->v);
    g->v[g->n++] = *r;
    return 0;
}

static bool row_eq(const ff_seg_row *a, const ff_seg_row *b)
{
    return a->ts == b->ts && a->dpu_id == b->dpu_id && a->seq == b->seq &&
           a->direction == b->direction && a->delta == b->delta && a->occupancy == b->occupancy;
}

/* Brute force: occupancy after the last row with ts <= t. */
static int64_t brute_count(const space *s, int64_t t, bool *found)
{
    int64_t occ = s->occ_before;
    *found = false;
    for (size_t i = 0; i < s->n && s->rows[i].ts <= t; i++)
        occ = s->rows[i].occupancy, *found = true;
    return occ;
}

static void check_count(const ff_seg *seg, const space *s, int64_t t)
{
    int64_t occ = 0;
    bool found = false, want_found;
    int64_t want = brute_count(s, t, &want_found);
    int rc = ff_seg_count_at(seg, s->id, t, &occ, &found);
    cr_assert_eq(rc, 0, "count_at: %s", ff_seg_error(seg));
    cr_assert_eq(found, want_found, "space %u t=%lld found", s->id, (long long)t);
    cr_assert_eq(occ, want, "space %u t=%lld: %lld, expected %lld", s->id, (long long)t,
                 (long long)occ, (long long)want);
}

/* Every row, every count-at boundary and a sample of finds of space s. */
static void check_space(const ff_seg *seg, const space *s)
{
    ff_seg_space info;
    cr_assert_eq(ff_seg_space_info(seg, s->id, &info), 0);
    cr_assert_eq(info.rows, s->n);
    cr_assert_eq(info.first_ts, s->rows[0].ts);
    cr_assert_eq(info.last_ts, s->rows[s->n - 1].ts);
    cr_assert_eq(info.first_occ, s->rows[0].occupancy);
    cr_assert_eq(info.last_occ, s->rows[s->n - 1].occupancy);
    cr_assert_eq(info.occ_before, s->occ_before);

    got g = {0};
    cr_assert_eq(ff_seg_rows(seg, s->id, FF_TS_MIN, FF_TS_MAX, NULL, collect, &g), 0, "%s",
                 ff_seg_error(seg));
    cr_assert_eq(g.n, s->n, "space %u: %zu rows, expected %zu", s->id, g.n, s->n);
    for (size_t i = 0; i < s->n; i++)
        cr_assert(row_eq(&g.v[i], &s->rows[i]), "space %u row %zu differs", s->id, i);
    free(g.v);

    check_count(seg, s, FF_TS_MIN);
    check_count(seg, s, FF_TS_MAX);
    size_t stride = s->n > 4000 ? s->n / 1000 : 1; /* every boundary of a small space */
    for (size_t i = 0; i < s->n; i += stride) {
        int64_t t = s->rows[i].ts;
        if (i && t == s->rows[i - 1].ts) continue;
        check_count(seg, s, t - 1);
        check_count(seg, s, t);
        check_count(seg, s, t + 1);
    }
    for (size_t i = 0; i < s->n; i += 1 + i / 8) {
        const ff_seg_row *r = &s->rows[i];
        ff_seg_key k = {r->ts, r->dpu_id, r->seq, r->direction};
        ff_seg_row hit;
        cr_assert_eq(ff_seg_find(seg, s->id, &k, &hit), 1, "find row %zu", i);
        cr_assert_eq(ff_seg_key_cmp(&hit, &k), 0);
        k.seq ^= 0x5555;
        bool present = false;
        for (size_t j = 0; j < s->n; j++) present |= ff_seg_key_cmp(&s->rows[j], &k) == 0;
        cr_assert_eq(ff_seg_find(seg, s->id, &k, NULL), present);
    }
}

/* Spaces with ids 1, 3, 5, ...: sizes around the block size, and a few empty ones. */
static space *gen_spaces(size_t n, uint32_t block_rows)
{
    static const size_t sizes[] = {1, 2, 0, 7, 63, 64, 65, 128, 129, 500, 0, 1, 3000};
    space *sp = ff_xcalloc(n, sizeof *sp);
    for (size_t i = 0; i < n; i++) {
        size_t sz = i < FF_ARRAY_LEN(sizes) ? sizes[i] : below(4 * block_rows);
        gen_space(&sp[i], (uint32_t)(2 * i + 1), sz);
    }
    return sp;
}

/* ---- round trips ----------------------------------------------------------------- */

TestSuite(segment, .init = dir_setup, .fini = dir_teardown);

Test(segment, round_trip_of_random_rows_in_many_spaces, .timeout = 120)
{
    ff_seg_writer_opts o = {.block_rows = 64};
    size_t n = 120, rows = 0, nonempty = 0;
    space *sp = gen_spaces(n, o.block_rows);
    ff_seg_stats st;
    cr_assert_eq(write_seg("a.ffs", sp, n, &o, &st), 0);
    for (size_t i = 0; i < n; i++) rows += sp[i].n, nonempty += sp[i].n > 0;
    cr_assert_eq(st.rows, rows);
    cr_assert_eq(st.spaces, nonempty);

    ff_seg *seg = open_ok(path_of("a.ffs"));
    ff_seg_info info;
    ff_seg_get_info(seg, &info);
    cr_assert_eq(info.rows, rows);
    cr_assert_eq(info.spaces, nonempty);
    cr_assert_eq(info.blocks, st.blocks);
    cr_assert_eq(info.file_bytes, st.file_bytes);
    for (size_t i = 0; i < n; i++) {
        if (sp[i].n) {
            check_space(seg, &sp[i]);
            continue;
        }
        ff_seg_space si;
        int64_t occ;
        bool found;
        cr_assert_eq(ff_seg_space_info(seg, sp[i].id, &si), FF_ENOTFOUND, "empty space skipped");
        cr_assert_eq(ff_seg_count_at(seg, sp[i].id, 0, &occ, &found), FF_ENOTFOUND);
    }
    cr_assert_eq(ff_seg_space_info(seg, 2, &(ff_seg_space){0}), FF_ENOTFOUND);
    cr_assert_str_empty(ff_seg_error(seg));
    ff_seg_close(seg);

    ff_seg_report rep;
    cr_assert_eq(ff_seg_verify(path_of("a.ffs"), &rep), 0, "verify: %s", rep.error);
    cr_assert_eq(rep.rows_checked, rows);
    cr_assert_str_empty(rep.error);
    spaces_free(sp, n);
}

/* KiB of seg's mapping resident in this process (Rss in /proc/self/smaps), -1 if the
 * mapping is not found. */
static long mapped_rss_kib(const char *path)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    cr_assert(f);
    char line[4096];
    long kib = -1;
    bool in = false;
    while (fgets(line, sizeof line, f)) {
        long v;
        if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f'))
            in = strstr(line, path) != NULL;
        else if (in && sscanf(line, "Rss: %ld", &v) == 1)
            kib = (kib < 0 ? 0 : kib) + v;
    }
    fclose(f);
    return kib;
}

Test(segment, open_leaves_no_page_resident_and_reads_fault_back)
{
    size_t n = 4000; /* a footer of about 4000 x 96 bytes: about 94 pages */
    space *sp = ff_xcalloc(n, sizeof *sp);
    for (size_t i = 0; i < n; i++) gen_space(&sp[i], (uint32_t)(i + 1), 1 + below(3));
    cr_assert_eq(write_seg("r.ffs", sp, n, NULL, NULL), 0);
    ff_seg *seg = open_ok(path_of("r.ffs"));
    cr_assert_eq(mapped_rss_kib(path_of("r.ffs")), 0, "open read the footer and kept it resident");
    for (size_t i = 0; i < n; i++) check_count(seg, &sp[i], sp[i].rows[sp[i].n - 1].ts);
    long touched = mapped_rss_kib(path_of("r.ffs"));
    cr_assert_gt(touched, 64, "reads fault the footer in: %ld KiB", touched);
    ff_seg_drop_pages(seg);
    cr_assert_eq(mapped_rss_kib(path_of("r.ffs")), 0);
    for (size_t i = 0; i < n; i++) check_space(seg, &sp[i]); /* same answers after the drop */
    cr_assert_str_empty(ff_seg_error(seg));
    ff_seg_close(seg);
    spaces_free(sp, n);
}

Test(segment, lz4_hc_and_large_blocks_round_trip)
{
    ff_seg_writer_opts o = {.block_rows = FF_SEG_MAX_BLOCK, .lz4_level = 9};
    space *sp = ff_xcalloc(2, sizeof *sp);
    gen_space(&sp[0], 10, 70000); /* two blocks of the largest size */
    gen_space(&sp[1], 11, 1);
    cr_assert_eq(write_seg("hc.ffs", sp, 2, &o, NULL), 0);
    ff_seg *seg = open_ok(path_of("hc.ffs"));
    ff_seg_info info;
    ff_seg_get_info(seg, &info);
    cr_assert_eq(info.blocks, 3);
    for (int i = 0; i < 2; i++) check_space(seg, &sp[i]);
    ff_seg_close(seg);
    ff_seg_report rep;
    cr_assert_eq(ff_seg_verify(path_of("hc.ffs"), &rep), 0, "%s", rep.error);
    spaces_free(sp, 2);
}

static int stop_after_3(void *ctx, const ff_seg_row *r)
{
    return ++*(int *)ctx == 3 ? 7 : 0;
}

Test(segment, rows_over_ranges_and_after_a_key_match_a_filter)
{
    ff_seg_writer_opts o = {.block_rows = 32};
    space s;
    gen_space(&s, 5, 2000);
    cr_assert_eq(write_seg("r.ffs", &s, 1, &o, NULL), 0);
    ff_seg *seg = open_ok(path_of("r.ffs"));
    for (int q = 0; q < 400; q++) {
        const ff_seg_row *a = &s.rows[below(s.n)], *b = &s.rows[below(s.n)];
        int64_t start = a->ts + (int64_t)below(3) - 1, end = b->ts + (int64_t)below(3) - 1;
        const ff_seg_row *ar = &s.rows[below(s.n)];
        ff_seg_key after = {ar->ts, ar->dpu_id, ar->seq, ar->direction};
        bool use_after = q % 2;
        got g = {0};
        cr_assert_eq(ff_seg_rows(seg, 5, start, end, use_after ? &after : NULL, collect, &g), 0);
        size_t k = 0;
        for (size_t i = 0; i < s.n; i++) {
            const ff_seg_row *r = &s.rows[i];
            if (r->ts < start || r->ts >= end) continue;
            if (use_after && ff_seg_key_cmp(r, &after) <= 0) continue;
            cr_assert_lt(k, g.n, "query %d: too few rows", q);
            cr_assert(row_eq(&g.v[k], r), "query %d row %zu", q, k);
            k++;
        }
        cr_assert_eq(k, g.n, "query %d: %zu rows, expected %zu", q, g.n, k);
        free(g.v);
    }
    int calls = 0;
    cr_assert_eq(ff_seg_rows(seg, 5, FF_TS_MIN, FF_TS_MAX, NULL, stop_after_3, &calls), 7);
    cr_assert_eq(calls, 3);
    cr_assert_eq(ff_seg_rows(seg, 6, FF_TS_MIN, FF_TS_MAX, NULL, stop_after_3, &calls),
                 FF_ENOTFOUND);
    ff_seg_close(seg);
    free(s.rows);
}

Test(segment, duplicates_equal_keys_and_extreme_values_survive)
{
    space s = {.id = 1, .occ_before = INT64_MAX - 2, .n = 6};
    s.rows = ff_xcalloc(6, sizeof *s.rows);
    ff_seg_row r = {INT64_MIN + 1, 7, 65535, -1, 1, 0};
    s.rows[0] = r;
    s.rows[1] = r; /* a duplicate kept with dedup off */
    r.ts = 0, r.dpu_id = UINT32_MAX, r.seq = 0, r.direction = 127, r.delta = -128;
    s.rows[2] = r;
    r.ts = INT64_MAX - 1, r.dpu_id = 0, r.direction = -128, r.delta = 127;
    s.rows[3] = r;
    s.rows[4] = r;
    s.rows[5] = (ff_seg_row){INT64_MAX - 1, 0, 1, 0, 0, 0};
    fold(&s, false); /* wraps around INT64_MAX: storage does not care */
    s.rows[5].occupancy = INT64_MIN;
    cr_assert_eq(write_seg("x.ffs", &s, 1, NULL, NULL), 0);
    ff_seg *seg = open_ok(path_of("x.ffs"));
    check_space(seg, &s);
    ff_seg_close(seg);
    ff_seg_report rep;
    cr_assert_eq(ff_seg_verify(path_of("x.ffs"), &rep), 0, "%s", rep.error);
    free(s.rows);
}

Test(segment, empty_segment_opens_with_no_spaces)
{
    cr_assert_eq(write_seg("e.ffs", NULL, 0, NULL, NULL), 0);
    ff_seg *seg = open_ok(path_of("e.ffs"));
    ff_seg_info info;
    ff_seg_get_info(seg, &info);
    cr_assert_eq(info.spaces, 0);
    cr_assert_eq(info.rows, 0);
    ff_seg_close(seg);
    ff_seg_report rep;
    cr_assert_eq(ff_seg_verify(path_of("e.ffs"), &rep), 0, "%s", rep.error);
}

Test(segment, writer_refuses_unordered_rows_and_spaces)
{
    ff_seg_writer *w;
    ff_seg_row rows[2] = {{10, 1, 0, 1, 1, 1}, {9, 1, 1, 1, 1, 2}};
    cr_assert_eq(ff_seg_writer_open(&w, tdir, "w.ffs", NULL), 0);
    cr_assert_eq(ff_seg_writer_add_space(w, 5, 0, rows, 2), FF_EINVAL);
    cr_assert_eq(ff_seg_writer_add_space(w, 5, 0, rows, 1), 0);
    cr_assert_eq(ff_seg_writer_add_space(w, 5, 0, rows, 1), FF_EINVAL);
    cr_assert_eq(ff_seg_writer_add_space(w, 4, 0, rows, 1), FF_EINVAL);
    cr_assert_eq(ff_seg_writer_add_space(w, 6, 0, rows + 1, 1), 0);
    cr_assert_eq(ff_seg_writer_finish(w, NULL, NULL), 0);
    cr_assert_eq(ff_seg_writer_open(&w, tdir, "a/b", NULL), FF_EINVAL);
    ff_seg_writer_opts o = {.block_rows = FF_SEG_MAX_BLOCK + 1};
    cr_assert_eq(ff_seg_writer_open(&w, tdir, "w.ffs", &o), FF_EINVAL);
    ff_seg *seg = open_ok(path_of("w.ffs"));
    ff_seg_close(seg);
}

/* ---- names, listing, replacement, crashes ---------------------------------------- */

Test(segment, names_round_trip_and_sort_by_start)
{
    static const int64_t ts[] = {INT64_MIN, -FF_DAY, -1, 0, 1, 1519461921893000, INT64_MAX};
    char prev[FF_SEG_NAME_MAX] = "";
    for (size_t i = 0; i < FF_ARRAY_LEN(ts); i++) {
        char name[FF_SEG_NAME_MAX];
        int64_t a, b;
        uint32_t v;
        size_t len = ff_seg_name(name, ts[i], ts[i] / 2 + 1, 7 + (uint32_t)i);
        cr_assert_eq(len, strlen(name));
        cr_assert_eq(ff_seg_name_parse(name, &a, &b, &v), 0, "%s", name);
        cr_assert_eq(a, ts[i]);
        cr_assert_eq(b, ts[i] / 2 + 1);
        cr_assert_eq(v, 7 + i);
        cr_assert_gt(strcmp(name, prev), 0, "%s sorts after %s", name, prev);
        strcpy(prev, name);
    }
    int64_t a, b;
    uint32_t v;
    cr_assert_eq(ff_seg_name_parse("log-0000000000000000.ffl", &a, &b, &v), FF_EFORMAT);
    cr_assert_eq(
        ff_seg_name_parse("seg-000000000000000g-0000000000000000-00000001.ffs", &a, &b, &v),
        FF_EFORMAT);
    cr_assert_eq(
        ff_seg_name_parse("seg-0000000000000000-0000000000000000-00000001.ffs.tmp", &a, &b, &v),
        FF_EFORMAT);
}

static void write_named(const char *name, space *s, const char *replaces)
{
    ff_seg_writer *w;
    cr_assert_eq(ff_seg_writer_open(&w, tdir, name, NULL), 0);
    cr_assert_eq(ff_seg_writer_add_space(w, s->id, s->occ_before, s->rows, s->n), 0);
    cr_assert_eq(ff_seg_writer_finish(w, replaces, NULL), 0);
}

static size_t list_n(int flags, ff_seg_entry **v)
{
    size_t n;
    cr_assert_eq(ff_seg_list(tdir, flags, v, &n), 0);
    return n;
}

static bool exists(const char *name)
{
    return access(path_of(name), F_OK) == 0;
}

Test(segment, replacement_is_atomic_and_old_mappings_stay_valid)
{
    char v1[FF_SEG_NAME_MAX], v2[FF_SEG_NAME_MAX], other[FF_SEG_NAME_MAX];
    ff_seg_name(v1, 0, FF_DAY, 1);
    ff_seg_name(v2, 0, FF_DAY, 2);
    ff_seg_name(other, FF_DAY, 2 * FF_DAY, 1);
    space a, b;
    gen_space(&a, 1, 300);
    gen_space(&b, 1, 310);
    write_named(v1, &a, NULL);
    write_named(other, &a, NULL);
    ff_seg *old = open_ok(path_of(v1));

    write_named(v2, &b, v1);
    cr_assert(!exists(v1), "the old version is gone");
    cr_assert(exists(v2));
    check_space(old, &a); /* the old mapping still answers with the old rows */
    ff_seg_close(old);
    ff_seg *seg = open_ok(path_of(v2));
    check_space(seg, &b);
    ff_seg_close(seg);

    ff_seg_entry *v;
    cr_assert_eq(list_n(0, &v), 2);
    cr_assert_str_eq(v[0].name, v2);
    cr_assert_eq(v[0].version, 2);
    cr_assert_str_eq(v[1].name, other);
    free(v);
    free(a.rows);
    free(b.rows);
}

Test(segment, crash_between_rename_and_unlink_leaves_the_new_version_live)
{
    char v1[FF_SEG_NAME_MAX], v2[FF_SEG_NAME_MAX];
    ff_seg_name(v1, -FF_DAY, 0, 1);
    ff_seg_name(v2, -FF_DAY, 0, 2);
    space a;
    gen_space(&a, 3, 50);
    write_named(v1, &a, NULL);
    write_named(v2, &a, NULL); /* as if the unlink of v1 never happened */
    ff_seg_entry *v;
    cr_assert_eq(list_n(0, &v), 1);
    cr_assert_str_eq(v[0].name, v2);
    free(v);
    cr_assert(exists(v1), "without clean nothing is removed");
    cr_assert_eq(list_n(FF_SEG_LIST_CLEAN, &v), 1);
    free(v);
    cr_assert(!exists(v1), "clean removes the superseded version");
    free(a.rows);
}

Test(segment, crash_while_writing_leaves_nothing_visible)
{
    char name[FF_SEG_NAME_MAX], tmp[FF_SEG_NAME_MAX + 8];
    ff_seg_name(name, 0, FF_HOUR, 1);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    space *sp = gen_spaces(20, 64);
    for (int crash_after = 0; crash_after < 3; crash_after++) {
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) { /* the child dies at a step of the write, as kill -9 would do */
            ff_seg_writer *w;
            if (ff_seg_writer_open(&w, tdir, name, NULL) != 0) _exit(3);
            for (size_t i = 0; i < 20 && (crash_after > 0); i++)
                ff_seg_writer_add_space(w, sp[i].id, sp[i].occ_before, sp[i].rows, sp[i].n);
            if (crash_after == 2) raise(SIGKILL);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        cr_assert(exists(tmp), "the temp file is left behind");
        cr_assert(!exists(name), "no final file");
        ff_seg_entry *v;
        cr_assert_eq(list_n(0, &v), 0);
        free(v);
        cr_assert_eq(list_n(FF_SEG_LIST_CLEAN, &v), 0);
        free(v);
        cr_assert(!exists(tmp), "clean removes the temp file");
    }
    ff_seg_writer *w;
    cr_assert_eq(ff_seg_writer_open(&w, tdir, name, NULL), 0);
    cr_assert(exists(tmp));
    ff_seg_writer_abort(w);
    cr_assert(!exists(tmp), "abort removes the temp file");
    cr_assert(!exists(name));
    spaces_free(sp, 20);
}

/* ---- format errors and corruption ------------------------------------------------ */

static void write_bytes(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    uint8_t *p = ff_xmalloc((size_t)st.st_size + 1);
    int fd = open(path, O_RDONLY);
    cr_assert_eq(read(fd, p, (size_t)st.st_size), st.st_size);
    close(fd);
    *n = (size_t)st.st_size;
    return p;
}

static int open_err(const char *path, char *err)
{
    ff_seg *seg = NULL;
    int rc = ff_seg_open(path, &seg, err, FF_SEG_ERRLEN);
    if (rc == 0) ff_seg_close(seg);
    return rc;
}

Test(segment, format_and_version_errors_are_distinct_and_named)
{
    char err[FF_SEG_ERRLEN];
    const char *p = path_of("junk.ffs");
    write_bytes(p, "hello, this is not a segment file at all, not even close to one....", 68);
    cr_assert_eq(open_err(p, err), FF_EFORMAT);
    cr_assert(strstr(err, "not a segment") && strstr(err, p), "%s", err);
    write_bytes(p, "", 0);
    cr_assert_eq(open_err(p, err), FF_EFORMAT, "%s", err);
    cr_assert_eq(open_err(path_of("missing.ffs"), err), -ENOENT);

    space s;
    gen_space(&s, 1, 10);
    cr_assert_eq(write_seg("v.ffs", &s, 1, NULL, NULL), 0);
    size_t n;
    uint8_t *b = read_bytes(path_of("v.ffs"), &n);
    uint32_t v = 2;
    memcpy(b + 8, &v, 4);
    uint64_t h = XXH3_64bits(b, 24);
    memcpy(b + 24, &h, 8); /* a well-formed header of a future version */
    write_bytes(p, b, n);
    cr_assert_eq(open_err(p, err), FF_EVERSION);
    cr_assert(strstr(err, "version 2, expected 1") && strstr(err, p), "%s", err);
    free(b);
    free(s.rows);
}

/* Offsets of the blocks of a segment, read through the format as segment.c specifies. */
static uint64_t *block_offsets(const uint8_t *b, size_t n, uint64_t *nb, uint64_t *foot)
{
    uint64_t f, k;
    memcpy(&f, b + n - 32, 8);
    memcpy(&k, b + f + 8, 8);
    uint32_t s;
    memcpy(&s, b + f, 4);
    uint64_t *v = ff_xcalloc(k + 1, sizeof *v);
    for (uint64_t i = 0; i < k; i++) memcpy(&v[i], b + f + 40 + 56 * (uint64_t)s + 40 * i, 8);
    *nb = k;
    *foot = f;
    return v;
}

/* The blocks of a segment without their checksums (those are seeded by the file's salt
 * and the block's offset): the bytes that depend on the rows only. */
static uint8_t *block_bytes(const char *path, size_t *len)
{
    size_t n;
    uint8_t *b = read_bytes(path, &n);
    uint64_t nb, foot, *off = block_offsets(b, n, &nb, &foot);
    off[nb] = foot;
    uint8_t *out = ff_xmalloc(foot + 1);
    *len = 0;
    for (uint64_t i = 0; i < nb; i++) {
        memcpy(out + *len, b + off[i] + 8, off[i + 1] - off[i] - 8);
        *len += off[i + 1] - off[i] - 8;
    }
    free(off);
    free(b);
    return out;
}

/* A writer keeps its encoder's memory from block to block (segment_write.c): a block
 * after larger ones, with more DPUs or exceptions, must come out as it does alone. */
Test(segment, a_block_does_not_depend_on_the_blocks_written_before_it, .timeout = 120)
{
    size_t n = SLOW_BUILD ? 30 : 60, all_len, at = 0;
    space *sp = gen_spaces(n, FF_SEG_BLOCK_ROWS);
    cr_assert_eq(write_seg("all.ffs", sp, n, NULL, NULL), 0);
    uint8_t *all = block_bytes(path_of("all.ffs"), &all_len);
    for (size_t i = 0; i < n; i++) {
        if (!sp[i].n) continue;
        char name[32];
        size_t len;
        snprintf(name, sizeof name, "one-%zu.ffs", i);
        cr_assert_eq(write_seg(name, &sp[i], 1, NULL, NULL), 0);
        uint8_t *one = block_bytes(path_of(name), &len);
        cr_assert(at + len <= all_len && memcmp(all + at, one, len) == 0,
                  "space %u (%zu rows): its blocks differ after those of %zu spaces", sp[i].id,
                  sp[i].n, i);
        at += len;
        free(one);
    }
    cr_assert_eq(at, all_len);
    free(all);
    spaces_free(sp, n);
}

/*
 * Opens a damaged copy and reads everything. Open may refuse it (FF_ECORRUPT or
 * FF_EFORMAT/FF_EVERSION naming the file); otherwise every answer must be either the
 * right one or FF_ECORRUPT naming file and offset, and verify must fail.
 */
static void check_damaged(const char *path, const space *sp, size_t nsp, const char *what)
{
    char err[FF_SEG_ERRLEN];
    ff_seg *seg = NULL;
    int rc = ff_seg_open(path, &seg, err, sizeof err);
    if (rc) {
        cr_assert(rc == FF_ECORRUPT || rc == FF_EFORMAT || rc == FF_EVERSION, "%s: open %s", what,
                  ff_strerror(rc));
        cr_assert(strstr(err, path), "%s: message names the file: %s", what, err);
        if (rc == FF_ECORRUPT) cr_assert(strstr(err, "corrupt at offset "), "%s: %s", what, err);
        return;
    }
    bool saw_error = false;
    for (size_t i = 0; i < nsp; i++) {
        const space *s = &sp[i];
        if (s->n == 0) continue;
        got g = {0};
        rc = ff_seg_rows(seg, s->id, FF_TS_MIN, FF_TS_MAX, NULL, collect, &g);
        cr_assert(rc == 0 || rc == FF_ECORRUPT, "%s: rows: %s", what, ff_strerror(rc));
        for (size_t j = 0; j < g.n; j++)
            cr_assert(row_eq(&g.v[j], &s->rows[j]), "%s: space %u row %zu is wrong", what, s->id,
                      j);
        if (rc == 0) cr_assert_eq(g.n, s->n, "%s: rows lost without an error", what);
        free(g.v);
        saw_error |= rc != 0;
        for (size_t j = 0; j < s->n; j += 1 + s->n / 16) {
            int64_t occ;
            bool found, wf;
            int64_t want = brute_count(s, s->rows[j].ts, &wf);
            rc = ff_seg_count_at(seg, s->id, s->rows[j].ts, &occ, &found);
            cr_assert(rc == 0 || rc == FF_ECORRUPT, "%s: count_at %s", what, ff_strerror(rc));
            if (rc == 0) cr_assert_eq(occ, want, "%s: wrong count in space %u", what, s->id);
            saw_error |= rc != 0;
        }
    }
    if (saw_error) {
        cr_assert(strstr(ff_seg_error(seg), "corrupt at offset ") &&
                      strstr(ff_seg_error(seg), path),
                  "%s: %s", what, ff_seg_error(seg));
        /* the news of it comes once: one log line per damaged file */
        const char *news = ff_seg_error_news(seg);
        cr_assert(news && strcmp(news, ff_seg_error(seg)) == 0, "%s: no news", what);
        cr_assert_null(ff_seg_error_news(seg), "%s: told twice", what);
    } else {
        cr_assert_null(ff_seg_error_news(seg), "%s: news without an error", what);
    }
    ff_seg_close(seg);
    ff_seg_report rep;
    rc = ff_seg_verify(path, &rep);
    cr_assert_eq(rc, FF_ECORRUPT, "%s: verify must fail (%s)", what, ff_strerror(rc));
    cr_assert(strstr(rep.error, "corrupt at offset ") && strstr(rep.error, path), "%s: %s", what,
              rep.error);
}

Test(segment, flipped_byte_anywhere_is_reported_never_read, .timeout = 240)
{
    ff_seg_writer_opts o = {.block_rows = 48};
    size_t nsp = 10;
    space *sp = gen_spaces(nsp, 48);
    cr_assert_eq(write_seg("good.ffs", sp, nsp, &o, NULL), 0);
    size_t n;
    uint8_t *good = read_bytes(path_of("good.ffs"), &n);
    uint64_t nb, foot;
    uint64_t *offs = block_offsets(good, n, &nb, &foot);
    cr_assert_geq(nb, 10);

    /* every block boundary (first bytes of each block and last of the one before), the
     * header, footer and trailer bytes, and a sample of offsets inside blocks */
    size_t *at = ff_xmalloc((n + 8 * nb + 64) * sizeof *at), m = 0;
    for (uint64_t i = 0; i < nb; i++) {
        for (int d = -1; d <= 13; d += SLOW_BUILD ? 7 : 1) at[m++] = (size_t)((int64_t)offs[i] + d);
    }
    for (size_t i = 0; i < 32; i++) at[m++] = i;
    for (size_t i = foot; i < n; i += 1 + (i - foot) / 16) at[m++] = i;
    for (size_t i = n - 32; i < n; i++) at[m++] = i;
    for (int i = 0; i < (SLOW_BUILD ? 60 : 300); i++) at[m++] = 32 + below(foot - 32);

    const char *bad = path_of("bad.ffs");
    char what[64];
    for (size_t i = 0; i < m; i++) {
        good[at[i]] ^= 0x5a;
        write_bytes(bad, good, n);
        good[at[i]] ^= 0x5a;
        snprintf(what, sizeof what, "byte %zu flipped", at[i]);
        check_damaged(bad, sp, nsp, what);
    }
    free(at);
    free(offs);
    free(good);
    spaces_free(sp, nsp);
}

Test(segment, truncated_file_is_refused, .timeout = 120)
{
    ff_seg_writer_opts o = {.block_rows = 40};
    space *sp = gen_spaces(5, 40);
    cr_assert_eq(write_seg("good.ffs", sp, 5, &o, NULL), 0);
    size_t n;
    uint8_t *good = read_bytes(path_of("good.ffs"), &n);
    const char *bad = path_of("cut.ffs");
    char err[FF_SEG_ERRLEN], what[64];
    for (size_t len = 0; len < n; len += 1 + (len < 64 ? 0 : len / 40)) {
        write_bytes(bad, good, len);
        int rc = open_err(bad, err);
        snprintf(what, sizeof what, "cut at %zu", len);
        cr_assert(rc == FF_ECORRUPT || rc == FF_EFORMAT, "%s: %s", what, ff_strerror(rc));
        cr_assert(strstr(err, bad), "%s: %s", what, err);
    }
    write_bytes(bad, good, n - 1);
    cr_assert_eq(open_err(bad, err), FF_ECORRUPT);
    cr_assert(strstr(err, "corrupt at offset"), "%s", err);
    free(good);
    spaces_free(sp, 5);
}

/* ---- size and speed of a realistic day ------------------------------------------- */

/*
 * A synthetic day of DPU events: 2,000 DPUs over 500 spaces, 500 events per DPU with a
 * day/night shape (most between 07:00 and 19:00), millisecond timestamps, seq counting
 * per DPU, directions mixed (more in mornings, more out in evenings), half the DPUs
 * between two spaces (exit side gets -direction); occupancy folded and clamped at zero.
 */
#define DAY_DPUS   2000
#define DAY_SPACES 500
#define DAY_EVENTS 500

static int i64_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static space *gen_day(size_t *total)
{
    space *sp = ff_xcalloc(DAY_SPACES, sizeof *sp);
    size_t *cap = ff_xcalloc(DAY_SPACES, sizeof *cap);
    int64_t day0 = 1519430400000000; /* 2018-02-24T00:00:00Z */
    for (uint32_t d = 0; d < DAY_DPUS; d++) {
        uint32_t dpu = 1000 + d * 7, entry = (uint32_t)below(DAY_SPACES);
        int64_t exit_sp =
            below(2) ? (int64_t)((entry + 1 + below(DAY_SPACES - 1)) % DAY_SPACES) : -1;
        int64_t times[DAY_EVENTS];
        for (uint32_t e = 0; e < DAY_EVENTS; e++)
            times[e] = below(10) < 9 ? 7 * 3600000 + (int64_t)below(12 * 3600000)
                                     : (int64_t)below(24 * 3600000);
        qsort(times, DAY_EVENTS, sizeof *times, i64_cmp);
        for (uint32_t e = 0; e < DAY_EVENTS; e++) { /* seq counts events in time order */
            int64_t ms = times[e];
            int8_t dir = below(24 * 3600000) < (uint64_t)(24 * 3600000 - ms) ? 1 : -1;
            for (int side = 0; side < (exit_sp >= 0 ? 2 : 1); side++) {
                space *s = &sp[side ? exit_sp : entry];
                s->rows =
                    ff_xgrow(s->rows, &cap[side ? exit_sp : entry], s->n + 1, sizeof *s->rows);
                s->rows[s->n++] = (ff_seg_row){
                    day0 + ms * 1000, dpu, (uint16_t)e, dir, (int8_t)(side ? -dir : dir), 0};
            }
        }
    }
    *total = 0;
    for (uint32_t i = 0; i < DAY_SPACES; i++) {
        space *s = &sp[i];
        s->id = i + 1;
        if (s->n) qsort(s->rows, s->n, sizeof *s->rows, key_cmp_rows);
        fold(s, true);
        *total += s->n;
    }
    free(cap);
    return sp;
}

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void day_size(const space *sp, size_t total, const ff_seg_writer_opts *o, const char *label,
                     double *bpr)
{
    ff_seg_stats st;
    double t0 = now_us();
    uint32_t br = o && o->block_rows ? o->block_rows : FF_SEG_BLOCK_ROWS;
    char name[32];
    snprintf(name, sizeof name, "day-%u.ffs", br);
    cr_assert_eq(write_seg(name, sp, DAY_SPACES, o, &st), 0);
    double t1 = now_us();
    *bpr = (double)st.file_bytes / (double)total;
    printf("segment day [%s]: %zu rows, %llu blocks, %llu bytes: %.3f bytes/row "
           "(payload %.3f B/row encoded, %.3f stored; write %.0f ms)\n",
           label, total, (unsigned long long)st.blocks, (unsigned long long)st.file_bytes, *bpr,
           (double)st.raw_bytes / (double)total, (double)st.stored_bytes / (double)total,
           (t1 - t0) / 1e3);
}

/* Times random count-at-T queries on a day file (warm: it is in the page cache). */
static ff_seg *day_latency(const space *sp, const char *name)
{
    ff_seg *seg = open_ok(path_of(name));
    enum { Q = SLOW_BUILD ? 5000 : 200000 };
    int64_t sink = 0;
    double t0 = now_us();
    for (int q = 0; q < Q; q++) {
        int64_t occ;
        bool found;
        uint32_t id = 1 + (uint32_t)below(DAY_SPACES);
        if (sp[id - 1].n == 0) continue;
        int64_t t = 1519430400000000 + (int64_t)below((uint64_t)FF_DAY);
        cr_assert_eq(ff_seg_count_at(seg, id, t, &occ, &found), 0, "%s", ff_seg_error(seg));
        sink += occ;
    }
    double t1 = now_us();
    printf("segment day [%s]: count_at %.2f us per query (warm, %d random, sink %lld)\n", name,
           (t1 - t0) / Q, Q, (long long)sink);
    return seg;
}

Test(segment, realistic_day_takes_at_most_4_bytes_per_row, .timeout = 120)
{
    size_t total;
    space *sp = gen_day(&total);
    double bpr, other;
    if (!SLOW_BUILD) {
        day_size(sp, total, &(ff_seg_writer_opts){.lz4_level = 9}, "1024 rows/block, lz4hc",
                 &other);
        day_size(sp, total, &(ff_seg_writer_opts){.block_rows = 4096}, "4096 rows/block", &other);
        day_size(sp, total, &(ff_seg_writer_opts){.block_rows = 256}, "256 rows/block", &other);
        day_size(sp, total, &(ff_seg_writer_opts){.block_rows = 512}, "512 rows/block", &other);
    }
    day_size(sp, total, NULL, "default: 1024 rows/block, lz4", &bpr);
    cr_assert_leq(bpr, 4.0, "%.3f bytes per settled row", bpr);

    if (!SLOW_BUILD) {
        day_latency(sp, "day-256.ffs");
        day_latency(sp, "day-512.ffs");
    }
    ff_seg *seg = day_latency(sp, "day-1024.ffs");
    for (uint32_t i = 0; i < DAY_SPACES; i += 50) {
        for (int k = 0; k < 20; k++) check_count(seg, &sp[i], sp[i].rows[below(sp[i].n)].ts);
    }
    ff_seg_close(seg);
    spaces_free(sp, DAY_SPACES);
}
