/*
 * seg_codec -- the segment writer and reader on their own: rows/s encoded and decoded,
 * and bytes per row on disk, for rows shaped like a day of a DPU fleet.
 *
 * Rows: --spaces spaces, each with 2 to 4 DPUs of its own, --rows rows per space. Gaps
 * between a space's rows are exponential with mean --gap (microsecond timestamps),
 * each DPU's seq counts up by one, directions are random and the occupancy is the
 * clamped fold, as the engine writes it. The rows are built first; then --rounds times
 * a segment is written (ff_seg_writer, the code sealing runs) and read back whole
 * (ff_seg_rows, every row compared with what was written).
 *
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so that builds or other
 * benchmarks on the machine change them less than wall-clock figures; the median of
 * the rounds is printed. fsync and rename are part of the write and use little CPU.
 *
 * Usage: seg_codec [--spaces N] [--rows N] [--gap DUR_US] [--rounds N] [--dir DIR]
 */
#include "storage/segment.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct check {
    const ff_seg_row *want;
    size_t i, bad;
} check;

static int check_row(void *ctx, const ff_seg_row *row)
{
    check *c = ctx;
    c->bad += memcmp(row, &c->want[c->i++], sizeof(*row)) != 0;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: seg_codec [--spaces N] [--rows N] [--gap US] [--rounds N] [--dir DIR]\n"
               "  --spaces N   spaces in the segment (default 50000)\n"
               "  --rows N     rows per space (default 100)\n"
               "  --gap US     mean gap between a space's rows, microseconds (default 60e6)\n"
               "  --rounds N   write + read rounds; the median is printed (default 5)\n"
               "  --dir DIR    where the segment is written and removed (default .)\n");
}

int main(int argc, char **argv)
{
    size_t nspaces = 50000, per = 100, rounds = 5;
    double gap = 60e6;
    const char *dir = ".";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--spaces"))
            nspaces = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--rows"))
            per = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--gap"))
            gap = strtod(v, NULL);
        else if (!strcmp(a, "--rounds"))
            rounds = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dir"))
            dir = v;
        else {
            fprintf(stderr, "seg_codec: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!nspaces || !per || !rounds || gap < 1) {
        fprintf(stderr, "seg_codec: --spaces, --rows, --rounds and --gap must be positive\n");
        return 2;
    }
    size_t n = nspaces * per;
    ff_seg_row *rows = malloc(n * sizeof(*rows));
    if (!rows) return 1;
    for (size_t s = 0; s < nspaces; s++) {
        unsigned ndpu = 2 + (unsigned)(next() % 3);
        uint16_t seq[4] = {0};
        int64_t ts = 1700000000000000 + (int64_t)(next() % 1000000), occ = 0;
        for (size_t k = 0; k < per; k++) {
            ff_seg_row *r = &rows[s * per + k];
            double u = ((double)(next() >> 11) + 0.5) / 9007199254740992.0;
            ts += 1 + (int64_t)(-gap * __builtin_log(u));
            unsigned d = (unsigned)(next() % ndpu);
            r->ts = ts;
            r->dpu_id = (uint32_t)(s * 4 + d + 1);
            r->seq = seq[d]++;
            r->direction = next() & 1 ? 1 : -1;
            r->delta = (int8_t)(d & 1 ? -r->direction : r->direction);
            occ += r->delta;
            if (occ < 0) occ = 0;
            r->occupancy = occ;
        }
    }
    double *tw = calloc(rounds, sizeof(double)), *tr = calloc(rounds, sizeof(double));
    ff_seg_stats st = {0};
    char name[FF_SEG_NAME_MAX], path[4096], err[FF_SEG_ERRLEN];
    ff_seg_name(name, 0, 1, 1);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    for (size_t r = 0; r < rounds; r++) {
        ff_seg_writer *w;
        double t0 = cpu_s();
        int rc = ff_seg_writer_open(&w, dir, name, NULL);
        for (size_t s = 0; s < nspaces && rc == 0; s++)
            rc = ff_seg_writer_add_space(w, (uint32_t)s + 1, 0, rows + s * per, per);
        if (rc == 0) rc = ff_seg_writer_finish(w, NULL, &st);
        tw[r] = cpu_s() - t0;
        if (rc < 0) {
            fprintf(stderr, "seg_codec: writing %s: %s\n", path, ff_strerror(rc));
            return 1;
        }
        ff_seg *seg;
        if (ff_seg_open(path, &seg, err, sizeof(err)) < 0) {
            fprintf(stderr, "seg_codec: %s\n", err);
            return 1;
        }
        check c = {.want = rows};
        t0 = cpu_s();
        for (size_t s = 0; s < nspaces && rc == 0; s++)
            rc = ff_seg_rows(seg, (uint32_t)s + 1, INT64_MIN, INT64_MAX, NULL, check_row, &c);
        tr[r] = cpu_s() - t0;
        ff_seg_close(seg);
        unlink(path);
        if (rc < 0 || c.bad || c.i != n) {
            fprintf(stderr, "seg_codec: read back %zu of %zu rows, %zu differ (%s)\n", c.i, n,
                    c.bad, rc < 0 ? ff_strerror(rc) : "ok");
            return 1;
        }
    }
    qsort(tw, rounds, sizeof(double), cmp_double);
    qsort(tr, rounds, sizeof(double), cmp_double);
    double w = tw[rounds / 2], rd = tr[rounds / 2];
    printf("seg_codec spaces=%zu rows=%zu write_cpu_s=%.3f write_rows_per_s=%.0f "
           "read_cpu_s=%.3f read_rows_per_s=%.0f file_bytes=%llu bytes_per_row=%.3f\n",
           nspaces, n, w, (double)n / w, rd, (double)n / rd, (unsigned long long)st.file_bytes,
           (double)st.file_bytes / (double)n);
    free(rows);
    free(tw);
    free(tr);
    return 0;
}
