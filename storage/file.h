/*
 * file.h -- writing a file sequentially without flooding the disk's queue.
 *
 * footfalld's acknowledged answers wait for the log's group-commit sync, and that sync
 * waits behind whatever else is in the disk's queue. A segment or a topology snapshot
 * written whole and then fsynced reaches the disk as one burst of tens or hundreds of MB,
 * and every sync issued meanwhile queues behind it (measured: syncs of 25-300 ms instead
 * of 0.3, at 10 million DPUs). An ff_wfile sends each MiB to the disk as soon as it is
 * written and waits for the MiB before it, so at most about 2 MiB of the file are ever
 * queued; its final fsync then has little left to do.
 */
#ifndef FF_STORAGE_FILE_H
#define FF_STORAGE_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ff_wfile {
    int fd;
    uint64_t off; /* bytes written so far (the file's offset) */
    uint64_t wb;  /* the writeback of [0, wb) was waited for */
} ff_wfile;

/* Starts writing fd at offset off (its current file offset). */
void ff_wfile_init(ff_wfile *f, int fd, uint64_t off);

/* Writes all n bytes, a MiB at a time as above. Returns 0 or a negative errno; the
 * writeback's own errors are left to the caller's fsync, which reports them. */
int ff_wfile_write(ff_wfile *f, const void *buf, size_t n);

#endif /* FF_STORAGE_FILE_H */
