/*
 * archive_cost -- what `footfall archive` costs per segment (storage/archive.h): writes
 * one segment of ROWS rows over SPACES spaces (a day of events, 1,024 rows a block),
 * archives it (verify, copy, fsync, verify the copy, stub, unlink) and prints the time,
 * the segment's and the stub's size.
 *
 *   archive_cost [ROWS [SPACES [DIR]]]     default 1048576 2000 /tmp
 */
#include "storage/archive.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_seg(const char *dir, const char *name, size_t rows, uint32_t spaces)
{
    ff_seg_writer *w;
    int rc = ff_seg_writer_open(&w, dir, name, NULL);
    if (rc) return rc;
    size_t per = rows / spaces;
    ff_seg_row *r = ff_xmalloc(per * sizeof *r);
    uint64_t x = 88172645463325252ull;
    for (uint32_t s = 1; s <= spaces && !rc; s++) {
        int64_t ts = (int64_t)1700000000 * FF_SECOND, occ = 0;
        for (size_t i = 0; i < per; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int8_t d = occ > 0 && x % 2 ? -1 : 1;
            ts += (int64_t)(x % (2 * 86400000000ull / per)) + 1;
            occ += d;
            r[i] = (ff_seg_row){.ts = ts,
                                .dpu_id = s * 4 + (uint32_t)(x >> 40) % 4,
                                .seq = (uint16_t)i,
                                .direction = d,
                                .delta = d,
                                .occupancy = occ};
        }
        rc = ff_seg_writer_add_space(w, s, 0, r, per);
    }
    free(r);
    if (rc) {
        ff_seg_writer_abort(w);
        return rc;
    }
    return ff_seg_writer_finish(w, NULL, NULL);
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? strtoull(argv[1], NULL, 10) : 1048576;
    uint32_t spaces = argc > 2 ? (uint32_t)atoi(argv[2]) : 2000;
    const char *base = argc > 3 ? argv[3] : "/tmp";
    char root[512], segs[600], arc[600], err[FF_SEG_ERRLEN];
    snprintf(root, sizeof root, "%s/ff-archive-cost-XXXXXX", base);
    if (!spaces || !rows || !mkdtemp(root)) return fprintf(stderr, "usage or mkdtemp\n"), 2;
    snprintf(segs, sizeof segs, "%s/segments", root);
    snprintf(arc, sizeof arc, "%s/archive", root);
    mkdir(segs, 0755);
    mkdir(arc, 0755);
    const char *name = "seg-0000000000000001-0000000000000002-00000001.ffs";
    int rc = write_seg(segs, name, rows, spaces);
    if (rc) return fprintf(stderr, "write: %s\n", ff_strerror(rc)), 1;
    sync();
    double t = now_s();
    ff_arc_stats st;
    rc = ff_arc_segment(segs, name, arc, 0, &st, err, sizeof err);
    double dt = now_s() - t;
    if (rc) return fprintf(stderr, "archive: %s\n", err), 1;
    printf("archive_cost: %llu rows, %u spaces: segment %llu bytes, stub %llu bytes (%.2f %%), "
           "archived in %.3f s (%.1f MB/s)\n",
           (unsigned long long)st.rows, spaces, (unsigned long long)st.bytes,
           (unsigned long long)st.stub_bytes, 100.0 * (double)st.stub_bytes / (double)st.bytes, dt,
           (double)st.bytes / dt / 1e6);
    char p[700];
    snprintf(p, sizeof p, "%s/%s", arc, name);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s%s", segs, name, FF_ARC_SUFFIX);
    unlink(p);
    rmdir(segs);
    rmdir(arc);
    rmdir(root);
    return 0;
}
