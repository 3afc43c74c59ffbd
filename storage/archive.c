/*
 * archive.c -- archiving segment files and the stubs they leave behind (contract and
 * the protocol in storage/archive.h; the segment format in storage/segment.c).
 *
 * STUB FILE "<segment name>.archived", little-endian, written once like a segment:
 *
 *   header (64 bytes) | footer (L bytes) | trailer (32 bytes)
 *
 * Header:
 *   0   8  magic "FFSTUB\0\1"
 *   8   4  format version (1, the segment format's)
 *   12  4  header size (64)
 *   16  8  salt: the archived segment's (seeds the trailer checksum, as in a segment)
 *   24  8  S: the archived segment file's size
 *   32  8  F: the archived segment's footer offset (where its blocks end)
 *   40  8  C: the archived segment's footer checksum (its trailer bytes 16..23)
 *   48  8  when it was archived (ff_ts, microseconds since 1970, UTC)
 *   56  8  XXH3_64bits of bytes 0..55
 * Footer: the archived segment's footer, byte for byte (L = S - F - 32): space and block
 *   tables with every time range, row count and occupancy. Block offsets still point
 *   into the archived file: the blocks lie back to back from 32 to F there.
 * Trailer: as a segment's, for this file: 0 8 footer offset (64), 8 8 L, 16 8
 *   XXH3_64bits_withSeed(footer and trailer bytes 0..15, salt), 24 8 "FFSEGEND".
 *
 * A stub is VALID when its header checksum, trailer and footer rules hold as for a
 * segment (storage/segment.c) and S = F + L + 32. It describes the same segment as a
 * file when salt, S and C agree (ff_seg_same): the salt is random per file, and C
 * covers the footer, which covers every block's checksum position and occupancy.
 * A stub is 136 bytes plus 56 per space and 40 per block: 192 KB (2.8 %) for a 1M-row
 * segment of 2,000 spaces, 45 KB (0.75 %) for one of 50 (bench/archive_cost).
 */
#include "storage/archive.h"
#include "storage/file.h"
#include "storage/segment_int.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

int ff_arc_test_stop = FF_ARC_STOP_NONE;

/* Whether a test asked to stop (crash) at this step. */
static bool stop_at(int step)
{
    if (ff_arc_test_stop != step) return false;
    ff_arc_test_stop = FF_ARC_STOP_HIT;
    return true;
}

void ff_arc_stub_name(char out[FF_ARC_NAME_MAX], const char *name)
{
    snprintf(out, FF_ARC_NAME_MAX, "%s%s", name, FF_ARC_SUFFIX);
}

/* Writes n bytes as dir/name atomically: name.tmp, fsync, rename, fsync of dir. A test
 * may stop it after the temp file (stop_tmp). */
static int write_atomic(const char *dir, const char *name, const void *p, size_t n, int stop_tmp)
{
    char tmp[FF_ARC_NAME_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (dfd < 0) return -errno;
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) rc = -errno;
    ff_wfile f;
    ff_wfile_init(&f, fd, 0);
    if (!rc) rc = ff_wfile_write(&f, p, n);
    if (!rc && fsync(fd) != 0) rc = -errno;
    if (fd >= 0) close(fd);
    if (!rc && stop_at(stop_tmp)) {
        close(dfd);
        return -EINTR;
    }
    if (!rc && renameat(dfd, tmp, dfd, name) != 0) rc = -errno;
    if (rc) unlinkat(dfd, tmp, 0);
    if (!rc && fsync(dfd) != 0) rc = -errno;
    close(dfd);
    return rc;
}

int ff_arc_stub_write(const ff_seg *seg, const char *dir, const char *name, int64_t now,
                      uint64_t *bytes)
{
    uint64_t len = seg->size - TRAILER - seg->foot;
    size_t n = STUB_HDR + len + TRAILER;
    uint8_t *b = ff_xcalloc(1, n);
    memcpy(b, STUB_MAGIC, 8);
    put32(b + 8, FF_SEG_VERSION);
    put32(b + 12, STUB_HDR);
    put64(b + 16, seg->salt);
    put64(b + 24, seg->orig_size);
    put64(b + 32, seg->blocks_end);
    put64(b + 40, seg->footsum);
    put64(b + 48, (uint64_t)now);
    put64(b + 56, XXH3_64bits(b, 56));
    memcpy(b + STUB_HDR, seg->map + seg->foot, len);
    uint8_t *t = b + STUB_HDR + len;
    put64(t, STUB_HDR);
    put64(t + 8, len);
    put64(t + 16, XXH3_64bits_withSeed(b + STUB_HDR, len + 16, seg->salt));
    memcpy(t + 24, END_MAGIC, 8);
    char stub[FF_ARC_NAME_MAX];
    ff_arc_stub_name(stub, name);
    int rc = write_atomic(dir, stub, b, n, FF_ARC_STOP_STUB_TMP);
    free(b);
    if (!rc && bytes) *bytes = n;
    return rc;
}

/* Opens dir/name (a segment or stub) into *out. */
static int open_in(const char *dir, const char *name, ff_seg **out, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return ff_seg_open(path, out, err, errlen);
}

/* Verifies dir/name whole; a message naming the file in err. */
static int verify_in(const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ff_seg_report rep;
    int rc = ff_seg_verify(path, &rep);
    if (rc) ff__seg_errf(err, errlen, "%s", rep.error[0] ? rep.error : ff_strerror(rc));
    return rc;
}

/* Step 2: the copy of seg as to_dir/name, durable. Reuses a sound identical one. */
static int copy_to(const ff_seg *seg, const char *to_dir, const char *name, char *err,
                   size_t errlen)
{
    ff_seg *old;
    char e2[FF_SEG_ERRLEN];
    int rc = open_in(to_dir, name, &old, e2, sizeof e2);
    if (rc == 0) {
        bool same = ff_seg_same(seg, old) && !old->stub;
        ff_seg_close(old);
        if (!same) {
            ff__seg_errf(err, errlen, "%s/%s: exists and is another segment", to_dir, name);
            return FF_EEXIST;
        }
        return 0; /* a previous run's copy; verified below */
    }
    if (rc != -ENOENT) { /* a torn or foreign file: a copy never lands half-written */
        ff__seg_errf(err, errlen, "%s/%s: exists and is not this segment (%s)", to_dir, name, e2);
        return FF_EEXIST;
    }
    rc = write_atomic(to_dir, name, seg->map, seg->size, FF_ARC_STOP_COPY_TMP);
    if (rc) ff__seg_errf(err, errlen, "%s/%s: %s", to_dir, name, strerror(-rc));
    return rc;
}

int ff_arc_segment(const char *seg_dir, const char *name, const char *to_dir, int64_t now,
                   ff_arc_stats *st, char *err, size_t errlen)
{
    ff__seg_errf(err, errlen, "%s", "");
    int rc = verify_in(seg_dir, name, err, errlen); /* 1 */
    if (rc) return rc;
    ff_seg *seg, *copy;
    rc = open_in(seg_dir, name, &seg, err, errlen);
    if (rc) return rc;
    if (seg->stub) {
        ff_seg_close(seg);
        ff__seg_errf(err, errlen, "%s/%s: is a stub", seg_dir, name);
        return FF_EINVAL;
    }
    rc = copy_to(seg, to_dir, name, err, errlen); /* 2 */
    if (!rc && stop_at(FF_ARC_STOP_COPY)) rc = -EINTR;
    if (!rc) rc = verify_in(to_dir, name, err, errlen);
    if (!rc) rc = open_in(to_dir, name, &copy, err, errlen);
    if (!rc) {
        bool same = ff_seg_same(seg, copy);
        ff_seg_close(copy);
        if (!same)
            ff__seg_errf(err, errlen, "%s/%s: the copy differs from %s", to_dir, name, seg->path);
        rc = same ? 0 : FF_ECORRUPT;
    }
    uint64_t stub_bytes = 0;
    if (!rc) rc = ff_arc_stub_write(seg, seg_dir, name, now, &stub_bytes); /* 3 */
    if (rc && rc != -EINTR && !err[0])
        ff__seg_errf(err, errlen, "%s: stub: %s", seg->path, ff_strerror(rc));
    if (!rc && stop_at(FF_ARC_STOP_STUB)) rc = -EINTR;
    if (!rc && st)
        *st = (ff_arc_stats){.rows = seg->rows, .bytes = seg->size, .stub_bytes = stub_bytes};
    ff_seg_close(seg);
    int k = rc ? 0 : ff_arc_settle(seg_dir, name); /* 4 */
    if (k < 0) {
        rc = k;
        ff__seg_errf(err, errlen, "%s/%s: archived, but cannot be removed: %s", seg_dir, name,
                     ff_strerror(rc));
    }
    return rc;
}

int ff_arc_settle(const char *seg_dir, const char *name)
{
    char stub[FF_ARC_NAME_MAX];
    ff_arc_stub_name(stub, name);
    ff_seg *s, *seg;
    int rc = open_in(seg_dir, stub, &s, NULL, 0);
    if (rc) return rc == -ENOENT ? 0 : rc;
    rc = open_in(seg_dir, name, &seg, NULL, 0);
    if (rc) {
        ff_seg_close(s);
        return rc == -ENOENT ? 0 : rc;
    }
    bool same = s->stub && ff_seg_same(s, seg) && !seg->stub;
    ff_seg_close(s);
    ff_seg_close(seg);
    if (!same) return FF_ECONFLICT;
    int dfd = open(seg_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -errno;
    rc = unlinkat(dfd, name, 0) == 0 || errno == ENOENT ? 0 : -errno;
    if (!rc && fsync(dfd) != 0) rc = -errno;
    close(dfd);
    return rc ? rc : 1;
}
