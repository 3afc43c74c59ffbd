/*
 * rows.h -- engine-internal: the occupancy rows of one space (or the orphan events of
 * one DPU) in canonical order (ts, dpu_id, seq, direction), each with its delta and the
 * folded occupancy after it.
 *
 * The rows form ONE logical sequence, indexed 0..n-1: the settled part (rows moved out
 * of the ring by ff__rows_settle, all with ts <= H at the time) followed by the pending
 * ring. Whether a row is settled for an answer is decided by ts vs H, never by where
 * it lives. Every index below is an index into that logical sequence.
 *
 * Base. Rows that were sealed into segments (engine/seal.c) have left the sequence; the
 * fold then starts from `base`, the occupancy after the last sealed row (0 when none).
 *
 * Pointers returned by ff__rows_at() are valid until the next change of the rows.
 *
 * Last row. The key and occ of row n-1 are also kept in the struct (last_*, valid while
 * n > 0), so that an in-order append -- nearly every event -- is placed, checked for a
 * duplicate and folded without reading the ring: at 100,000 DPUs that read was the
 * costliest cache miss of ingest (bench/ingest). Removing rows from the front (settle,
 * drop_front) never changes row n-1; everything else that does goes through rows.c.
 * The fields ingest reads come first, so that they share one cache line.
 *
 * Pinned rows. A seal job reads the settled rows it writes where they lie, on its own
 * thread (engine/seal.c), instead of copying them. While set[0 .. pinned) is pinned that
 * memory is neither written, moved nor freed: a change that would (a late row inserted
 * among them, a refold over them, growing or compacting the array, freeing the rows)
 * first moves the settled part to a new allocation and leaves the old one to the job
 * (ff__rows_release). Appending after the settled part within its allocation is allowed.
 */
#ifndef FF_ENGINE_ROWS_H
#define FF_ENGINE_ROWS_H

#include "engine/engine.h"

typedef struct ff__row {
    int64_t ts;
    uint32_t dpu;
    uint16_t seq;
    int8_t dir;
    int8_t delta; /* +1 / -1 in a space; 0 in an orphan list */
    int32_t occ;  /* fold after this row (saturates at the int32 range) */
} ff__row;
_Static_assert(sizeof(ff__row) == 24, "a pending row is 24 bytes");

typedef struct ff__rows {
    ff__row *ring; /* pending part: power-of-two ring */
    uint32_t head, npend, capring;
    int32_t last_occ; /* row n-1's occ and key (see above) */
    int64_t last_ts;
    uint32_t last_dpu;
    uint16_t last_seq;
    int8_t last_dir;
    bool clamp;   /* fold with occ = max(0, occ + delta) */
    int64_t base; /* occupancy before row 0 (after the sealed rows) */
    size_t nset;
    ff__row *set;    /* settled part: a plain sorted array, set[0 .. nset) */
    ff__row *setmem; /* its allocation, capset rows; set = setmem + rows sealed since the
                      * last compaction (so a seal's drop is O(1): engine/rows.c) */
    size_t capset;
    size_t pinned; /* set[0 .. pinned) is read by a seal job (above); 0: none */
} ff__rows;

/* Number of rows. */
static inline size_t ff__rows_n(const ff__rows *r)
{
    return r->nset + r->npend;
}

/* Row i (i < n). */
static inline const ff__row *ff__rows_at(const ff__rows *r, size_t i)
{
    if (i < r->nset) return &r->set[i];
    return &r->ring[(r->head + (i - r->nset)) & (r->capring - 1)];
}

/* One step of the fold: occ + delta, or max(0, occ + delta) with clamp, saturated to
 * the int32 range. */
int32_t ff__fold(int64_t occ, int delta, bool clamp);

/* Canonical comparison of a row with a key: <0, 0, >0. */
int ff__row_cmp(const ff__row *a, const ff_row_key *k);

/* First index whose key is greater than k (searched from the back: O(1) for an
 * append, O(log distance) otherwise). */
size_t ff__rows_upper(const ff__rows *r, const ff_row_key *k);
/* First index with ts >= ts (plain binary search). */
size_t ff__rows_lower_ts(const ff__rows *r, int64_t ts);
/* Whether a row with exactly key k exists. */
bool ff__rows_has(const ff__rows *r, const ff_row_key *k);
/* The occupancy before row i (after row i-1; base for i == 0). */
int64_t ff__rows_occ_before(const ff__rows *r, size_t i);

/* Inserts row (occ ignored) after the rows with an equal or smaller key and refolds
 * from there on, stopping as soon as an old value is reproduced. Returns its index. */
size_t ff__rows_insert(ff__rows *r, const ff__row *row);
/* Removes every row of DPU dpu with ts >= from, appending them in order to the growable
 * array *out (*n used, *cap allocated), and refolds. All of them must be pending. */
void ff__rows_take_dpu(ff__rows *r, uint32_t dpu, int64_t from, ff__row **out, size_t *n,
                       size_t *cap);
/* Moves at most budget rows with ts <= h from the front of the ring to the settled part.
 * Returns the number moved. */
size_t ff__rows_settle(ff__rows *r, int64_t h, size_t budget);
/* Removes the first k rows (all settled: k <= nset), making the occupancy after them,
 * occ (the caller knows it: row k-1's occ), the new base. Used once they are sealed. O(1): the
 * memory is compacted and fitted later, by the next append or settle. */
void ff__rows_drop_front(ff__rows *r, size_t k, int32_t occ);
/* Pins the first k settled rows (0 < k <= nset; none pinned yet) for a seal job, which
 * then owns a claim on setmem (returned) until ff__rows_release. It may first grow the
 * allocation, moving the rows: the job reads set after the call. */
ff__row *ff__rows_pin(ff__rows *r, size_t k);
/* Ends the claim on mem of a job that pinned r (r NULL: the rows are gone): r keeps mem
 * if it still uses it (unpinned), otherwise mem was left to the job and is freed. */
void ff__rows_release(ff__rows *r, ff__row *mem);
/* Sets the base and refolds every row from it (a late event amended sealed history). */
void ff__rows_rebase(ff__rows *r, int64_t base);
/* Frees the storage (pinned memory is left to its job); the rows are empty afterwards
 * (clamp and base are kept). */
void ff__rows_free(ff__rows *r);
/* Checks the invariants of rows.c (numbered there); panics on a broken one. h is the
 * current horizon; fold false skips the fold check (orphan lists). */
void ff__rows_check(const ff__rows *r, int64_t h, bool fold);

#endif /* FF_ENGINE_ROWS_H */
