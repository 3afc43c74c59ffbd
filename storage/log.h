/*
 * log.h -- the durable record of footfall: a memory-mapped, preallocated, append-only
 * log of checksummed records in a directory of numbered files.
 *
 * (The file format -- byte offsets, when a record is valid, how recovery scans -- is
 * specified in the opening comment of storage/log.c.)
 *
 * The log knows record types and bytes, not occupancy rules: the engine decides what a
 * payload means. Types in use:
 *
 *   FF_LOG_EVENTS   payload = n * sizeof(ff_event), the accepted events of one batch,
 *                   with FF_EVF_* flags in ff_event.reserved.
 *   FF_LOG_TOPO     payload = one engine-encoded topology operation.
 *   FF_LOG_HORIZON  payload = one int64 little-endian horizon value (idle advance).
 *
 * Positions. Every record has a log sequence number (LSN): the byte position of its
 * end in the never-ending concatenation of all log files. ff_log_written() is the LSN
 * of the last appended record, ff_log_durable() the LSN up to which everything is on
 * stable storage. An ack for a record at LSN x may be released once durable >= x.
 *
 * Threads: one ff_log is used by one thread (the owner), with these exceptions: the
 * run of a sync, release or datasync job (ff_log_sync_run, ff_log_release_run,
 * ff_log_datasync_run, below) may run on any other thread while the owner goes on.
 */
#ifndef FF_STORAGE_LOG_H
#define FF_STORAGE_LOG_H

#include "engine/ff.h"

#include <stdbool.h>

enum ff_log_type {
    FF_LOG_EVENTS = 1,
    FF_LOG_TOPO = 2,
    FF_LOG_HORIZON = 3,
};

/* Largest payload one record may carry (a 4096-event frame is 64 KiB). */
#define FF_LOG_MAX_PAYLOAD (1u << 20)

typedef struct ff_log ff_log;

typedef struct ff_log_opts {
    size_t file_bytes; /* preallocated size of each log file; 0 = default 64 MiB */
} ff_log_opts;

/* What recovery found. Filled by ff_log_open(). */
typedef struct ff_log_recovery {
    uint32_t files;       /* log files scanned */
    uint64_t start;       /* ff_log_start(): set before the first record is replayed */
    uint64_t records;     /* valid records replayed */
    uint64_t bytes;       /* bytes of valid records */
    uint64_t cut_bytes;   /* non-zero bytes after the last valid record that were cut */
    int64_t cut_offset;   /* offset in cut_file where the cut began, -1 if nothing cut */
    char cut_file[256];   /* file name (inside the directory) of the cut, "" if none */
    char cut_reason[256]; /* "checksum mismatch", "bad length", ... */
} ff_log_recovery;

/*
 * Called for each valid record in log order during ff_log_open(). `payload` is valid
 * only during the call. A non-zero return stops the replay and ff_log_open() returns it.
 */
typedef int (*ff_log_replay_cb)(void *ctx, int type, const void *payload, uint32_t len,
                                uint64_t lsn);

/*
 * Opens (creating if needed) the log in directory `dir` (created if missing), replays
 * every valid record through cb (may be NULL), cuts a torn or corrupt tail of the last
 * file (zeroing it durably so it can never reappear) and reports the cut in *rep (may be
 * NULL). Corruption inside a file that is not the last one, or followed by valid
 * records in the last one, is not a tail: the open fails with FF_ECORRUPT, changes
 * nothing, and the message in rep->cut_reason names file and offset.
 * On success *out owns the log until ff_log_close().
 */
int ff_log_open(ff_log **out, const char *dir, const ff_log_opts *opts, ff_log_replay_cb cb,
                void *ctx, ff_log_recovery *rep);

/*
 * Reserves room for a record of at most `len` payload bytes and returns a pointer into
 * the mapping where the caller writes the payload; nothing is visible to recovery until
 * ff_log_commit(). Rotates to a new file when the current one cannot hold the record.
 * Returns NULL with *err set (-ENOSPC, -EIO, FF_ETOOBIG) on failure. The pointer is
 * valid until ff_log_commit(). At most one reservation is open at a time.
 */
void *ff_log_reserve(ff_log *log, int type, uint32_t len, int *err);
/*
 * Seals the open reservation with its final payload length (<= the reserved length):
 * writes the header and checksum and returns the record's LSN. A len of 0 abandons the
 * reservation: nothing is written and the current ff_log_written() is returned.
 */
uint64_t ff_log_commit(ff_log *log, uint32_t len);
/* Reserve + copy + commit in one call. Returns 0 and *lsn, or a negative error. */
int ff_log_append(ff_log *log, int type, const void *payload, uint32_t len, uint64_t *lsn);

/*
 * Makes every committed record durable (msync of the dirty range, and of any file
 * rotated away since the last sync). Cheap when nothing is dirty. Returns 0 or -errno;
 * after a failure nothing new is reported durable.
 */
int ff_log_sync(ff_log *log);

/*
 * Asynchronous sync, in three steps, so the owner can go on appending while the disk
 * works. At most one job is in flight per log.
 *
 *   ff_log_sync_begin  (owner) captures in *job the range written since the last
 *                      completed sync and the target LSN (= ff_log_written() now), and
 *                      pins the mapping of that range: a rotation while the job runs
 *                      keeps the old file mapped until ff_log_sync_end(). Returns 1 if
 *                      a job was started, 0 if there is nothing to sync or a job is
 *                      already in flight (then *job is untouched), or the sticky error.
 *   ff_log_sync_run    (any thread) msyncs the captured range; touches nothing but *job
 *                      and the pinned pages. Returns 0 or -errno.
 *   ff_log_sync_end    (owner) with run's result: on 0, durable becomes at least the
 *                      target LSN; on an error nothing new is durable and the log fails
 *                      for good (as ff_log_sync). Unpins. Returns rc.
 *
 * Records committed after begin are not covered by the job: they wait for the next one.
 * ff_log_sync() and rotation may run while a job is in flight (they sync everything
 * themselves); ff_log_close() may not. *job is owned by the caller from begin to end
 * and must not be touched in between except by ff_log_sync_run().
 */
typedef struct ff_log_sync_job {
    uint8_t *addr;    /* page-aligned start of the range, inside the pinned mapping */
    size_t len;       /* bytes to msync */
    uint64_t base;    /* base LSN of the file the range is in */
    uint64_t end_off; /* file offset the range ends at */
    uint64_t lsn;     /* durable becomes this once the job succeeds */
} ff_log_sync_job;

int ff_log_sync_begin(ff_log *log, ff_log_sync_job *job);
int ff_log_sync_run(const ff_log_sync_job *job);
int ff_log_sync_end(ff_log *log, const ff_log_sync_job *job, int rc);
bool ff_log_sync_busy(const ff_log *log); /* a job is between begin and end */

uint64_t ff_log_written(const ff_log *log);    /* LSN of the last committed record */
uint64_t ff_log_durable(const ff_log *log);    /* everything <= this LSN is durable */
uint64_t ff_log_disk_bytes(const ff_log *log); /* bytes the log files take on disk */
uint32_t ff_log_files(const ff_log *log);      /* number of log files */

/*
 * Release: unlinks, oldest first, every file before the current one whose records all
 * have LSN <= upto (the caller has made them redundant, e.g. by a checkpoint), and
 * fsyncs the directory. The current file is never released. Returns the number of files
 * released or -errno (files released before the error stay released).
 */
int ff_log_release(ff_log *log, uint64_t upto);
/*
 * Release off the owner's thread, in three steps like a sync job (unlinking a 64 MiB
 * file took 20-30 ms, which the owner's loop should not wait for):
 *   ff_log_release_begin (owner) notes in *job the files ff_log_release(log, upto)
 *                        would unlink (none is fine) and the directory.
 *   ff_log_release_run   (any thread) unlinks them oldest first and fsyncs the
 *                        directory; stops at the first failure. Touches only *job.
 *   ff_log_release_end   (owner) forgets the files run unlinked and frees *job.
 *                        Returns their number, or run's error.
 * No other release may run between begin and end.
 */
typedef struct ff_log_release_job {
    int dirfd;
    uint32_t n, done; /* files noted; unlinked by run */
    char (*names)[32];
    int rc;
} ff_log_release_job;
void ff_log_release_begin(ff_log *log, uint64_t upto, ff_log_release_job *job);
void ff_log_release_run(ff_log_release_job *job);
int ff_log_release_end(ff_log *log, ff_log_release_job *job);
/*
 * Making every committed record durable from another thread, while the owner goes on
 * appending, with one fdatasync() of the current file (older files were synced when the
 * log rotated away from them); footfall's engine commits a checkpoint this way. The
 * descriptor is one the log opened on the file before writing to it, so that no
 * writeback error since can escape it (storage/log.c, DATASYNC JOBS).
 *   ff_log_datasync_begin (owner) notes the target LSN (= ff_log_written() now) and a
 *                         descriptor of the current file in *job. Returns 0, or the
 *                         log's sticky error or -errno (then run returns it too).
 *   ff_log_datasync_run   (any thread) fdatasync()s it; touches only *job. Returns 0
 *                         (every record <= job->lsn is durable) or the error.
 *   ff_log_datasync_end   (owner) closes the descriptor and returns the job's result. A
 *                         failed fdatasync() makes the log fail for good, as a failed
 *                         sync does (jobs share the descriptor, and an error is
 *                         reported to it once). Does not move ff_log_durable().
 * Every begin needs its end, also when begin failed. Jobs may overlap sync jobs,
 * rotation and each other; not ff_log_close().
 */
typedef struct ff_log_datasync_job {
    int fd;       /* a dup of the log's descriptor of the file current at begin, or -1 */
    uint64_t lsn; /* every record <= lsn is durable once run succeeds */
    int rc;       /* begin's error, then run's */
    bool ran;     /* run called fdatasync() */
    bool t_eio;   /* tests: an error ff__log_test_wb_error() injected before begin */
} ff_log_datasync_job;
int ff_log_datasync_begin(ff_log *log, ff_log_datasync_job *job);
int ff_log_datasync_run(ff_log_datasync_job *job);
int ff_log_datasync_end(ff_log *log, ff_log_datasync_job *job);
/* Every record with LSN <= this was released (0 when nothing ever was): the first
 * file's prev_end. Recovery only replays records after it. */
uint64_t ff_log_start(const ff_log *log);

/* Syncs and closes; frees log. */
int ff_log_close(ff_log *log);

/* Tests only: as if the writeback of the current file failed now. Linux then reports
 * EIO once to each open description of the file, at its next sync (errseq): here to the
 * log's own (its next ff_log_sync() or rotation fails) and to the one datasync jobs
 * share (the next job begun fails). told: the log's own description was told already
 * (as by the run of a sync job whose end has not run yet), so its syncs do not fail. */
void ff__log_test_wb_error(ff_log *log, bool told);

#endif /* FF_STORAGE_LOG_H */
