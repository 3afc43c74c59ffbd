/*
 * segment.h -- sealed segments: immutable, columnar, lz4-compressed, checksummed files
 * holding the settled rows of a set of spaces over one time range.
 *
 * (The file format -- byte offsets, encodings, when a block is valid, how a reader finds
 * a row -- is specified in the opening comment of storage/segment.c.)
 *
 * Storage knows rows, not occupancy rules: a row carries the occupancy after it, already
 * folded by the engine, and a segment only checks that what it reads back is what was
 * written (checksums) and self-consistent (canonical order, counts, the occupancy chain).
 *
 * Writing. ff_seg_writer_open() creates "<name>.tmp" in a directory; spaces are added in
 * ascending id order, each with all its rows; ff_seg_writer_finish() writes the footer,
 * fsyncs, renames the temp file to <name> and fsyncs the directory. Until the rename a
 * crash leaves only a "*.tmp" file, which ff_seg_list(..., FF_SEG_LIST_CLEAN) removes.
 *
 * Names. "seg-<start>-<end>-<version>.ffs": start and end are the range the segment
 * covers (the engine's sealing window), each as 16 hex digits of (uint64)ts ^ 2^63, so
 * names sort by start; version is 8 hex digits, 1 for the first seal of a range and one
 * more for each corrected version. For one (start, end) the highest version is the live
 * one; lower versions are superseded (see ff_seg_writer_finish's `replaces`).
 *
 * Reading. ff_seg_open() maps a file read-only and validates header, trailer and footer
 * (magic -> FF_EFORMAT, version -> FF_EVERSION, checksum or structure -> FF_ECORRUPT),
 * each with a message naming the file. The footer is then used in place; a block is
 * checked against its checksum every time it is read, so a corrupt block gives
 * FF_ECORRUPT ("corrupt at offset X in FILE: ...", see ff_seg_error()), never rows.
 *
 * Threads: an open ff_seg is immutable; any number of threads may read it at once.
 * A writer is used by one thread.
 */
#ifndef FF_STORAGE_SEGMENT_H
#define FF_STORAGE_SEGMENT_H

#include "engine/ff.h"

#include <stdbool.h>

#define FF_SEG_VERSION    1u /* the format version this code reads and writes */
#define FF_SEG_NAME_MAX   64 /* room for a segment file name with its NUL */
#define FF_SEG_ERRLEN     512
#define FF_SEG_BLOCK_ROWS 1024u  /* default rows per block */
#define FF_SEG_MAX_BLOCK  65536u /* most rows one block may hold */

/* One row: an event of a space and the occupancy after it. */
typedef struct ff_seg_row {
    int64_t ts; /* ff_ts, microseconds */
    uint32_t dpu_id;
    uint16_t seq;
    int8_t direction;
    int8_t delta;
    int64_t occupancy; /* after this row */
} ff_seg_row;
_Static_assert(sizeof(ff_seg_row) == 24, "a segment row is 24 bytes in memory");

/* A position in canonical order: rows are sorted by (ts, dpu_id, seq, direction);
 * equal keys (duplicates kept with dedup off) are allowed and keep their order. */
typedef struct ff_seg_key {
    int64_t ts;
    uint32_t dpu_id;
    uint16_t seq;
    int8_t direction;
} ff_seg_key;

/* <0, 0, >0 as row's key is before, equal to or after k. */
int ff_seg_key_cmp(const ff_seg_row *row, const ff_seg_key *k);

/* ---- names ------------------------------------------------------------------------- */

/* Writes the file name of (start, end, version) into out; returns its length. */
size_t ff_seg_name(char out[FF_SEG_NAME_MAX], int64_t start, int64_t end, uint32_t version);
/* Parses a segment file name (no directory). Returns 0 or FF_EFORMAT. */
int ff_seg_name_parse(const char *name, int64_t *start, int64_t *end, uint32_t *version);

/* One live segment file found by ff_seg_list(). */
typedef struct ff_seg_entry {
    char name[FF_SEG_NAME_MAX];
    int64_t start, end;
    uint32_t version;
} ff_seg_entry;

#define FF_SEG_LIST_CLEAN 1 /* remove "*.ffs.tmp" leftovers and superseded versions */

/*
 * Lists the live segments of directory dir (highest version of each (start, end)),
 * sorted by (start, end), into a new array *out (free() it) of *n entries. Other files
 * are ignored. With FF_SEG_LIST_CLEAN, leftovers of interrupted writes and superseded
 * versions are unlinked (and the directory fsync'd): call it only when no writer runs
 * in dir. Returns 0 or -errno.
 */
int ff_seg_list(const char *dir, int flags, ff_seg_entry **out, size_t *n);

/* ---- writing ----------------------------------------------------------------------- */

typedef struct ff_seg_writer ff_seg_writer;

typedef struct ff_seg_writer_opts {
    uint32_t block_rows; /* rows per block, 1..FF_SEG_MAX_BLOCK; 0 = FF_SEG_BLOCK_ROWS */
    int lz4_level;       /* 0: LZ4_compress_default; 1..12: LZ4_compress_HC level */
} ff_seg_writer_opts;

/* What a finished writer wrote. */
typedef struct ff_seg_stats {
    uint64_t rows, spaces, blocks;
    uint64_t file_bytes;   /* size of the segment file */
    uint64_t raw_bytes;    /* encoded block payloads before lz4 */
    uint64_t stored_bytes; /* block payloads as stored (lz4 or raw, whichever is less) */
} ff_seg_stats;

/*
 * Starts a segment to be named `name` (see ff_seg_name(); any name without '/' works)
 * in directory dir, writing "<name>.tmp" (an existing one is overwritten). opts may be
 * NULL. On success *out owns the writer until ff_seg_writer_finish() or _abort().
 */
int ff_seg_writer_open(ff_seg_writer **out, const char *dir, const char *name,
                       const ff_seg_writer_opts *opts);
/*
 * Adds the n rows of space space_id, in canonical order, and occ_before, the space's
 * occupancy before the first of them (the fold of all earlier history). Space ids must
 * ascend from call to call; n == 0 adds nothing (the space is not in the segment). rows
 * is only read during the call. FF_EINVAL (rows out of order, space id not ascending)
 * leaves the writer usable; an I/O error (-errno) leaves it failed: abort it.
 */
int ff_seg_writer_add_space(ff_seg_writer *w, uint32_t space_id, int64_t occ_before,
                            const ff_seg_row *rows, size_t n);
/*
 * Completes the segment: footer, fsync, rename to its name, fsync of the directory.
 * When `replaces` is not NULL (the name of a segment in the same directory that the new
 * one supersedes, typically the same range with a lower version), that file is then
 * unlinked and the directory fsync'd again. A crash at any point leaves either the old
 * segment live or the new one (a left-over old version is superseded by the higher
 * version and removed by ff_seg_list's clean), never a half-written file under a final
 * name. Readers that have the old file mapped keep reading it. Frees w in all cases; on
 * failure the temp file is removed. st may be NULL.
 */
int ff_seg_writer_finish(ff_seg_writer *w, const char *replaces, ff_seg_stats *st);
/* Abandons the segment: removes the temp file, frees w. */
void ff_seg_writer_abort(ff_seg_writer *w);

/* ---- reading ----------------------------------------------------------------------- */

typedef struct ff_seg ff_seg;

/* One space of a segment. */
typedef struct ff_seg_space {
    uint32_t space_id;
    uint32_t blocks;
    uint64_t rows; /* >= 1 */
    int64_t first_ts, last_ts;
    int64_t occ_before; /* occupancy before the first row (the fold of earlier history) */
    int64_t first_occ;  /* occupancy after the first row */
    int64_t last_occ;   /* occupancy after the last row */
} ff_seg_space;

/* The whole segment. */
typedef struct ff_seg_info {
    uint32_t version;
    uint32_t spaces;
    uint64_t blocks, rows;
    int64_t first_ts, last_ts; /* over all rows */
    uint64_t file_bytes;
    bool stub;              /* the stub of an archived segment (storage/archive.h) */
    uint64_t segment_bytes; /* the segment file's size (file_bytes unless a stub) */
    int64_t archived_at;    /* a stub: when it was archived; else 0 */
} ff_seg_info;

/*
 * Opens and validates segment file `path`, or the stub an archive left in its place
 * (storage/archive.h): a stub has the segment's footer and no blocks, so its info and
 * space tables read as the segment's, ff_seg_count_at() answers what the footer alone
 * answers, and every read that needs a block returns FF_EARCHIVED. Checks header,
 * trailer, footer checksum and the footer's structure; blocks are checked when read.
 * On failure returns FF_EFORMAT,
 * FF_EVERSION, FF_ECORRUPT or -errno and writes a message naming the file into err
 * (errlen bytes, may be 0). On success *out owns the mapping until ff_seg_close(); the
 * file may be unlinked or replaced meanwhile. The pages the validation read are dropped
 * from the process's resident set (ff_seg_drop_pages).
 */
int ff_seg_open(const char *path, ff_seg **out, char *err, size_t errlen);
void ff_seg_close(ff_seg *seg);
/* Whether a and b (segment files or stubs) describe the same segment file: same salt,
 * size and footer checksum (the salt is random per file). */
bool ff_seg_same(const ff_seg *a, const ff_seg *b);
/*
 * Drops the pages of seg's mapping from this process's resident set (madvise
 * MADV_DONTNEED on the read-only shared mapping). Nothing is lost: the pages stay in the
 * page cache and the next read faults them back in. Resident file pages count in RSS,
 * and an open segment's footer is read whole at open (about 100 bytes per space), so
 * without this a long-running engine's RSS grows with its history. Safe while other
 * threads read seg; a failure (never expected) only leaves the pages resident.
 */
void ff_seg_drop_pages(const ff_seg *seg);

const char *ff_seg_path(const ff_seg *seg); /* as given to ff_seg_open; valid until close */
void ff_seg_get_info(const ff_seg *seg, ff_seg_info *out);
/* The i-th space in ascending id order (i < info.spaces). */
void ff_seg_space_at(const ff_seg *seg, uint32_t i, ff_seg_space *out);
/* The space with id space_id: 0, or FF_ENOTFOUND when the segment has no rows of it. */
int ff_seg_space_info(const ff_seg *seg, uint32_t space_id, ff_seg_space *out);

/*
 * The occupancy of space_id after its last row with ts <= t: *found = true and *occ set.
 * When t is before the space's first row, *found = false and *occ = occ_before. Costs a
 * binary search in the footer and at most one block decode. Returns 0, FF_ENOTFOUND
 * (space not in the segment) or FF_ECORRUPT (see ff_seg_error()).
 */
int ff_seg_count_at(const ff_seg *seg, uint32_t space_id, int64_t t, int64_t *occ, bool *found);

/* Called for each row; a non-zero return stops the iteration and is returned. The row
 * is valid only during the call. */
typedef int (*ff_seg_row_cb)(void *ctx, const ff_seg_row *row);
/*
 * Calls cb for the rows of space_id with start <= ts < end in canonical order, beginning
 * strictly after *after when it is not NULL. Returns 0, cb's non-zero value, FF_ENOTFOUND
 * or FF_ECORRUPT (then no row of the corrupt block has been passed to cb; rows of earlier
 * blocks may have been).
 */
int ff_seg_rows(const ff_seg *seg, uint32_t space_id, int64_t start, int64_t end,
                const ff_seg_key *after, ff_seg_row_cb cb, void *ctx);
/*
 * Exact-match lookup of key in space_id (for duplicate checks). Returns 1 and the first
 * matching row in *row (may be NULL), 0 when there is none (also for a space not in the
 * segment), or FF_ECORRUPT.
 */
int ff_seg_find(const ff_seg *seg, uint32_t space_id, const ff_seg_key *key, ff_seg_row *row);

/* The message of the first corruption a read of seg found ("corrupt at offset X in
 * FILE: ..."), or "" if none. Valid until ff_seg_close(). */
const char *ff_seg_error(const ff_seg *seg);
/* ff_seg_error()'s message the first time it is asked for after a read failed a check,
 * NULL before and after: for one log line per damaged file. Any thread. */
const char *ff_seg_error_news(const ff_seg *seg);

/* ---- verification ------------------------------------------------------------------ */

typedef struct ff_seg_report {
    ff_seg_info info;          /* filled as far as the open succeeded */
    uint64_t rows_checked;     /* rows decoded and checked */
    char error[FF_SEG_ERRLEN]; /* "" when the file is sound */
} ff_seg_report;

/*
 * Opens path and checks everything (a stub: what ff_seg_open checks; no blocks): every block
 * checksum, every row decoded, and the invariants (numbered in segment.c): canonical order within
 * each space, row counts, block and space time ranges, and the occupancy chain (each block starts
 * from the occupancy the previous one ended with; first and last occupancy as in the footer).
 * Returns 0 when sound, else the error of the first problem, described in rep->error.
 */
int ff_seg_verify(const char *path, ff_seg_report *rep);

#endif /* FF_STORAGE_SEGMENT_H */
