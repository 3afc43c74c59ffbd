/*
 * segment_int.h -- storage-internal: what the two halves of the segment code share (the
 * writer in segment_write.c, the reader in segment.c): the format's constants (the format
 * itself is specified in segment.c), little-endian access, and the row rules of a block.
 */
#ifndef FF_STORAGE_SEGMENT_INT_H
#define FF_STORAGE_SEGMENT_INT_H

#include "storage/bytes.h"
#include "storage/segment.h"

#include <stdatomic.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the segment format is little-endian; add byte swapping for this host"
#endif

#define MAGIC      "FFSEG\0\0\1"
#define STUB_MAGIC "FFSTUB\0\1" /* an archived segment's stub (storage/archive.c) */
#define STUB_HDR   64u
#define END_MAGIC  "FFSEGEND"
#define HDR        32u
#define TRAILER    32u
#define FOOT_HDR   40u
#define SPACE_ENT  56u
#define BLOCK_ENT  40u
#define BLOCK_HDR  13u
#define MAX_RAW    (64u * FF_SEG_MAX_BLOCK)
#define RICE_LIMIT 16u
#define CODEC_RAW  0
#define CODEC_LZ4  1

/* An open segment file, or the stub of an archived one (footer only: a stub's blocks
 * are in the archive, and reading them gives FF_EARCHIVED). */
struct ff_seg {
    char *path;
    const uint8_t *map;
    uint64_t size, salt, foot;
    const uint8_t *spaces, *blocks; /* footer tables, in the mapping */
    uint32_t nspaces;
    uint64_t nblocks, rows;
    int64_t first_ts, last_ts;
    bool stub;
    uint64_t blocks_end;  /* where the blocks end: foot, or the original's for a stub */
    uint64_t orig_size;   /* the segment file's size (the original's for a stub) */
    uint64_t footsum;     /* the segment's footer checksum (the original's for a stub) */
    int64_t archived_at;  /* a stub: when it was archived */
    atomic_int err_state; /* 0 none, 1 being written, 2 set */
    char err[FF_SEG_ERRLEN];
    atomic_bool err_told; /* ff_seg_error_news() returned err once */
};

/* ---- bytes ------------------------------------------------------------------------- */

static inline uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t unzigzag(uint64_t u)
{
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static inline unsigned bitlen(uint64_t v)
{
    return v ? 64u - (unsigned)__builtin_clzll(v) : 0;
}

/* A dictionary entry: a DPU of a block with its seq step and delta rule. */
typedef struct dent {
    uint32_t id;
    uint16_t first_seq;
    uint8_t step, rule;
    uint32_t nstep[2], nrule[3]; /* writer: frequencies */
    int32_t prev;                /* writer: previous seq, -1 before the first row */
} dent;

/* The delta of a row of direction dir under a dictionary entry's rule. */
static inline int rule_delta(unsigned rule, int dir)
{
    return rule == 0 ? dir : rule == 1 ? -dir : 0;
}

/* Canonical order of two rows. */
static inline int row_cmp(const ff_seg_row *a, const ff_seg_row *b)
{
    ff_seg_key k = {b->ts, b->dpu_id, b->seq, b->direction};
    return ff_seg_key_cmp(a, &k);
}

/* snprintf into err (errlen bytes; nothing when 0). (storage/segment.c) */
void ff__seg_errf(char *err, size_t errlen, const char *f, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes all n bytes to fd (retrying short writes and EINTR): 0 or -errno.
 * (storage/segment_write.c; also used by storage/archive.c) */

#endif /* FF_STORAGE_SEGMENT_INT_H */
