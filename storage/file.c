/*
 * file.c -- writing a file sequentially without flooding the disk's queue (file.h).
 *
 * Linux's sync_file_range: SYNC_FILE_RANGE_WRITE starts the writeback of a range without
 * waiting; WAIT_BEFORE | WRITE | WAIT_AFTER on the range before waits until it is on the
 * disk (not durably: the caller's fsync still flushes the disk's cache). Elsewhere the
 * writes are plain, and the final fsync does all the work.
 */
#include "storage/file.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#define CHUNK (1u << 20)

void ff_wfile_init(ff_wfile *f, int fd, uint64_t off)
{
    f->fd = fd;
    f->off = f->wb = off;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -errno;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Starts the writeback of [from, f->off) and waits for that of [f->wb, from). */
static void trickle(ff_wfile *f, uint64_t from)
{
#ifdef SYNC_FILE_RANGE_WRITE
    (void)sync_file_range(f->fd, (off_t)from, (off_t)(f->off - from), SYNC_FILE_RANGE_WRITE);
    if (from > f->wb)
        (void)sync_file_range(f->fd, (off_t)f->wb, (off_t)(from - f->wb),
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
    f->wb = from;
#else
    (void)f, (void)from;
#endif
}

int ff_wfile_write(ff_wfile *f, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        size_t k = n < CHUNK ? n : CHUNK;
        int rc = write_all(f->fd, p, k);
        if (rc) return rc;
        uint64_t from = f->off;
        f->off += k;
        p += k, n -= k;
        trickle(f, from);
    }
    return 0;
}
