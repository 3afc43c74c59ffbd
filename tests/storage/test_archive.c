/*
 * test_archive.c -- tests of storage/archive.c: a stub reads as its segment's footer
 * (and FF_EARCHIVED for blocks), archiving moves every row to an identical verified
 * copy, every crash point leaves the segment or (copy + stub), a re-run completes, and
 * damaged stubs, foreign copies and corrupt segments are refused.
 */
#include "storage/archive.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tdir[128], sdir[160], adir[160];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void setup(void)
{
    snprintf(tdir, sizeof tdir, "/tmp/ff-test-arc-XXXXXX");
    cr_assert_not_null(mkdtemp(tdir));
    snprintf(sdir, sizeof sdir, "%s/segments", tdir);
    snprintf(adir, sizeof adir, "%s/archive", tdir);
    cr_assert_eq(mkdir(sdir, 0755), 0);
    cr_assert_eq(mkdir(adir, 0755), 0);
    ff_arc_test_stop = FF_ARC_STOP_NONE;
}

static void teardown(void)
{
    if (!getenv("FF_TEST_KEEP")) nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static bool exists(const char *dir, const char *name)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

static const char *stub_of(const char *name)
{
    static char s[FF_ARC_NAME_MAX];
    ff_arc_stub_name(s, name);
    return s;
}

/* Writes a segment of `spaces` spaces with n rows each (small blocks: many of them). */
static void write_seg(const char *name, uint32_t spaces, size_t n, uint64_t *rows)
{
    ff_seg_writer *w;
    ff_seg_writer_opts o = {.block_rows = 64};
    cr_assert_eq(ff_seg_writer_open(&w, sdir, name, &o), 0);
    ff_seg_row *r = calloc(n, sizeof *r);
    for (uint32_t s = 1; s <= spaces; s++) {
        int64_t occ = 3;
        for (size_t i = 0; i < n; i++) {
            int8_t d = (i * 7 + s) % 3 ? 1 : -1;
            occ += d;
            r[i] = (ff_seg_row){.ts = 1000000 + (int64_t)i * 1000 + s,
                                .dpu_id = 100 + s,
                                .seq = (uint16_t)i,
                                .direction = d,
                                .delta = d,
                                .occupancy = occ};
        }
        cr_assert_eq(ff_seg_writer_add_space(w, s, 3, r, n), 0);
    }
    free(r);
    cr_assert_eq(ff_seg_writer_finish(w, NULL, NULL), 0);
    if (rows) *rows = (uint64_t)spaces * n;
}

static ff_seg *open_in(const char *dir, const char *name)
{
    char p[512], err[FF_SEG_ERRLEN];
    ff_seg *s = NULL;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int rc = ff_seg_open(p, &s, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    return s;
}

static int count_rows(void *ctx, const ff_seg_row *r)
{
    (*(uint64_t *)ctx)++;
    return 0;
}

static const char NAME[] = "seg-0000000000000001-0000000000000002-00000001.ffs";

TestSuite(archive, .init = setup, .fini = teardown);

Test(archive, stub_reads_as_the_footer_and_refuses_blocks)
{
    write_seg(NAME, 3, 500, NULL);
    ff_seg *seg = open_in(sdir, NAME);
    uint64_t bytes;
    cr_assert_eq(ff_arc_stub_write(seg, sdir, NAME, 42, &bytes), 0);
    ff_seg *stub = open_in(sdir, stub_of(NAME));
    ff_seg_info a, b;
    ff_seg_get_info(seg, &a);
    ff_seg_get_info(stub, &b);
    cr_assert(b.stub && !a.stub);
    cr_assert_eq(b.file_bytes, bytes);
    cr_assert_eq(b.segment_bytes, a.file_bytes);
    cr_assert_eq(b.archived_at, 42);
    cr_assert_eq(bytes, 64 + 40 + 56 * a.spaces + 40 * a.blocks + 32, "stub of %llu bytes",
                 (unsigned long long)bytes);
    cr_assert_lt(bytes, a.file_bytes);
    cr_assert(a.rows == b.rows && a.spaces == b.spaces && a.blocks == b.blocks);
    cr_assert(a.first_ts == b.first_ts && a.last_ts == b.last_ts);
    cr_assert(ff_seg_same(seg, stub));
    for (uint32_t i = 0; i < a.spaces; i++) {
        ff_seg_space x, y;
        ff_seg_space_at(seg, i, &x);
        ff_seg_space_at(stub, i, &y);
        cr_assert_eq(memcmp(&x, &y, sizeof x), 0);
        int64_t occ, occ2;
        bool found;
        cr_assert_eq(ff_seg_count_at(stub, x.space_id, x.last_ts, &occ, &found), 0);
        cr_assert_eq(occ, x.last_occ);
        cr_assert_eq(ff_seg_count_at(stub, x.space_id, x.first_ts - 1, &occ, &found), 0);
        cr_assert_eq(occ, x.occ_before);
        int64_t mid = x.first_ts + (x.last_ts - x.first_ts) / 2 + 1;
        cr_assert_eq(ff_seg_count_at(stub, x.space_id, mid, &occ, &found), FF_EARCHIVED);
        cr_assert_eq(ff_seg_count_at(seg, x.space_id, mid, &occ2, &found), 0);
        uint64_t n = 0;
        cr_assert_eq(ff_seg_rows(stub, x.space_id, FF_TS_MIN, FF_TS_MAX, NULL, count_rows, &n),
                     FF_EARCHIVED);
        cr_assert_eq(n, 0);
    }
    ff_seg_report rep;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", sdir, stub_of(NAME));
    cr_assert_eq(ff_seg_verify(p, &rep), 0, "%s", rep.error);
    ff_seg_close(stub);
    ff_seg_close(seg);
}

Test(archive, a_damaged_stub_is_refused_by_name)
{
    write_seg(NAME, 2, 100, NULL);
    ff_seg *seg = open_in(sdir, NAME);
    cr_assert_eq(ff_arc_stub_write(seg, sdir, NAME, 1, NULL), 0);
    ff_seg_close(seg);
    char p[512], err[FF_SEG_ERRLEN];
    snprintf(p, sizeof p, "%s/%s", sdir, stub_of(NAME));
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    for (off_t off = 0; off < st.st_size; off += 7) {
        int fd = open(p, O_RDWR);
        uint8_t c;
        cr_assert_eq(pread(fd, &c, 1, off), 1);
        c ^= 0x20;
        cr_assert_eq(pwrite(fd, &c, 1, off), 1);
        ff_seg *s = NULL;
        int rc = ff_seg_open(p, &s, err, sizeof err);
        cr_assert(rc < 0, "flipped byte %lld accepted", (long long)off);
        cr_assert(strstr(err, stub_of(NAME)), "%s", err);
        c ^= 0x20;
        cr_assert_eq(pwrite(fd, &c, 1, off), 1);
        close(fd);
    }
}

Test(archive, moves_every_row_to_a_verified_identical_copy)
{
    uint64_t rows;
    write_seg(NAME, 4, 700, &rows);
    ff_seg *orig = open_in(sdir, NAME);
    ff_arc_stats st;
    char err[FF_SEG_ERRLEN];
    cr_assert_eq(ff_arc_segment(sdir, NAME, adir, 7, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(st.rows, rows);
    cr_assert(!exists(sdir, NAME) && exists(sdir, stub_of(NAME)) && exists(adir, NAME));
    ff_seg *copy = open_in(adir, NAME), *stub = open_in(sdir, stub_of(NAME));
    cr_assert(ff_seg_same(orig, copy) && ff_seg_same(copy, stub));
    uint64_t n = 0;
    for (uint32_t s = 1; s <= 4; s++)
        cr_assert_eq(ff_seg_rows(copy, s, FF_TS_MIN, FF_TS_MAX, NULL, count_rows, &n), 0);
    cr_assert_eq(n, rows);
    ff_seg_close(stub);
    ff_seg_close(copy);
    ff_seg_close(orig);
    /* nothing left to settle; a second archive of the name finds no segment */
    cr_assert_eq(ff_arc_settle(sdir, NAME), 0);
    cr_assert_lt(ff_arc_segment(sdir, NAME, adir, 7, &st, err, sizeof err), 0);
}

/* The state after a crash: the segment, or a sound copy with a stub; never neither. */
static void assert_no_row_lost(uint64_t rows)
{
    if (exists(sdir, NAME) && !exists(sdir, stub_of(NAME))) return; /* not archived */
    cr_assert(exists(sdir, stub_of(NAME)), "neither the segment nor a stub");
    char p[512];
    ff_seg_report rep;
    snprintf(p, sizeof p, "%s/%s", adir, NAME);
    cr_assert_eq(ff_seg_verify(p, &rep), 0, "a stub without a sound copy: %s", rep.error);
    cr_assert_eq(rep.rows_checked, rows);
}

Test(archive, every_crash_point_leaves_the_segment_or_copy_and_stub)
{
    for (int stop = FF_ARC_STOP_COPY_TMP; stop < FF_ARC_STOP_HIT; stop++) {
        uint64_t rows;
        write_seg(NAME, 3, 300, &rows);
        ff_arc_test_stop = stop;
        char err[FF_SEG_ERRLEN];
        int rc = ff_arc_segment(sdir, NAME, adir, 7, NULL, err, sizeof err);
        cr_assert_eq(rc, -EINTR, "stop %d: %d %s", stop, rc, err);
        cr_assert_eq(ff_arc_test_stop, FF_ARC_STOP_HIT);
        ff_arc_test_stop = FF_ARC_STOP_NONE;
        assert_no_row_lost(rows);
        if (stop == FF_ARC_STOP_STUB) { /* committed: settling finishes it */
            cr_assert_eq(ff_arc_settle(sdir, NAME), 1);
            cr_assert(!exists(sdir, NAME));
        } else { /* a re-run completes, reusing a finished copy */
            rc = ff_arc_segment(sdir, NAME, adir, 8, NULL, err, sizeof err);
            cr_assert_eq(rc, 0, "stop %d: re-run: %s", stop, err);
        }
        assert_no_row_lost(rows);
        cr_assert(!exists(sdir, NAME) && exists(sdir, stub_of(NAME)));
        char p[512];
        snprintf(p, sizeof p, "%s/%s", sdir, stub_of(NAME));
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", adir, NAME);
        unlink(p);
    }
}

Test(archive, refuses_a_foreign_copy_and_a_corrupt_segment)
{
    write_seg(NAME, 2, 200, NULL);
    char p[512], q[512], err[FF_SEG_ERRLEN];
    snprintf(p, sizeof p, "%s/%s", sdir, NAME);
    snprintf(q, sizeof q, "%s/%s", adir, NAME);
    cr_assert_eq(link(p, q), 0);
    cr_assert_eq(unlink(p), 0);
    write_seg(NAME, 2, 200, NULL); /* same rows, another file (salt) */
    cr_assert_eq(ff_arc_segment(sdir, NAME, adir, 1, NULL, err, sizeof err), FF_EEXIST);
    cr_assert(strstr(err, "another segment"), "%s", err);
    cr_assert(exists(sdir, NAME) && !exists(sdir, stub_of(NAME)));
    unlink(q);
    int fd = open(p, O_RDWR); /* a flipped bit inside the first block */
    uint8_t c;
    cr_assert_eq(pread(fd, &c, 1, 40), 1);
    c ^= 1;
    cr_assert_eq(pwrite(fd, &c, 1, 40), 1);
    close(fd);
    cr_assert_eq(ff_arc_segment(sdir, NAME, adir, 1, NULL, err, sizeof err), FF_ECORRUPT);
    cr_assert(strstr(err, NAME), "%s", err);
    cr_assert(exists(sdir, NAME) && !exists(sdir, stub_of(NAME)) && !exists(adir, NAME));
}
