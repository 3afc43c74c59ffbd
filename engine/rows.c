/*
 * rows.c -- the rows of one space: a settled sorted array followed by a pending ring,
 * one logical sequence in canonical order (contract in engine/rows.h).
 *
 * Pending ring. Events arrive roughly in ts order, so most inserts land at the back: the
 * insertion point is found by galloping from the last row (1, 2, 4, ... rows back, then
 * a binary search in the last step), which is O(1) for an append and O(log d) for a row
 * d places from the back. The ring then shifts whichever side of the insertion point is
 * shorter by one slot, so a row that is early relative to a short ring is as cheap as a
 * late one. The ring doubles when full, in place of its allocation (ring_resize).
 *
 * Settled part. ff__rows_settle() moves rows with ts <= H off the front of the ring and
 * appends them to a sorted array (bounded work per call). A late event whose place is
 * inside that array is inserted there with a memmove: late events are rare and their
 * refold is O(rows after them) anyway. Sealing drops rows off its front by moving the
 * start (set) within the allocation (setmem): a seal drops rows from every busy space,
 * 100,000 of them at a time, and a memmove and a free or realloc each cost 11 ms of the
 * loop where this costs about 1. The space in front is taken back by the next append
 * that needs room (set_room), and the allocation fitted to the rows by the next settle
 * (set_fit).
 *
 * Pinned rows (rows.h). While a seal job reads set[0 .. pinned), every change below that
 * would write, move or free that memory first calls set_unshare, which copies the
 * settled part to a new allocation and leaves the old one to the job; the new one is
 * not pinned. So a space is copied at most once per seal, and only if, while the job
 * runs, it grows past its allocation, takes a late row among the pinned ones or is
 * rebased; the engine's thread copies nothing for the job (its worker turns each
 * space's rows into the segment's form as it writes them: engine/seal.c).
 *
 * Fold. occ[i] = f(occ[i-1], delta[i]) with f(o, d) = o + d, or max(0, o + d) with
 * clamp. After an insert or removal at p, rows from p on are refolded; since the deltas
 * after p do not change, the refold stops at the first row whose stored value it
 * reproduces (after removals, only past the last removed row: see refold). Values
 * saturate at the int32 range (billions of events in one space would be needed to
 * reach it).
 *
 * Invariants (ff__rows_check):
 *   R1 capring is 0 or a power of two; npend <= capring; head < capring (or 0).
 *   R2 setmem <= set and (set - setmem) + nset <= capset.
 *   R3 the whole sequence is in non-decreasing canonical order.
 *   R4 every settled-part row has ts <= H.
 *   R5 every occ is the fold of the deltas before it, from base (spaces only).
 *   R6 when n > 0, last_* equal the key and occ of row n-1.
 *   R7 pinned <= nset.
 */
#include "engine/rows.h"

#include <string.h>

int ff__row_cmp(const ff__row *a, const ff_row_key *k)
{
    if (a->ts != k->ts) return a->ts < k->ts ? -1 : 1;
    if (a->dpu != k->dpu_id) return a->dpu < k->dpu_id ? -1 : 1;
    if (a->seq != k->seq) return a->seq < k->seq ? -1 : 1;
    if (a->dir != k->direction) return a->dir < k->direction ? -1 : 1;
    return 0;
}

static ff_row_key key_of(const ff__row *a)
{
    return (ff_row_key){.ts = a->ts, .dpu_id = a->dpu, .seq = a->seq, .direction = a->dir};
}

static ff__row *at_mut(ff__rows *r, size_t i)
{
    return (ff__row *)ff__rows_at(r, i);
}

/* ff__row_cmp() of row n-1 (n > 0) with k, from the copy of its key: no ring read. */
static int last_cmp(const ff__rows *r, const ff_row_key *k)
{
    if (r->last_ts != k->ts) return r->last_ts < k->ts ? -1 : 1;
    if (r->last_dpu != k->dpu_id) return r->last_dpu < k->dpu_id ? -1 : 1;
    if (r->last_seq != k->seq) return r->last_seq < k->seq ? -1 : 1;
    if (r->last_dir != k->direction) return r->last_dir < k->direction ? -1 : 1;
    return 0;
}

static void last_set(ff__rows *r, const ff__row *x)
{
    r->last_ts = x->ts;
    r->last_dpu = x->dpu;
    r->last_seq = x->seq;
    r->last_dir = x->dir;
    r->last_occ = x->occ;
}

/* Copies row n-1 into last_* after a change that may have touched it. */
static void last_sync(ff__rows *r)
{
    size_t n = ff__rows_n(r);
    if (n) last_set(r, ff__rows_at(r, n - 1));
}

size_t ff__rows_upper(const ff__rows *r, const ff_row_key *k)
{
    size_t n = ff__rows_n(r);
    if (n == 0 || last_cmp(r, k) <= 0) return n;
    size_t hi = n - 1, lo = 0, step = 1; /* row hi > k */
    while (hi >= step) {
        size_t m = hi - step;
        if (ff__row_cmp(ff__rows_at(r, m), k) <= 0) {
            lo = m + 1;
            break;
        }
        hi = m;
        step *= 2;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ff__row_cmp(ff__rows_at(r, mid), k) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t ff__rows_lower_ts(const ff__rows *r, int64_t ts)
{
    size_t lo = 0, hi = ff__rows_n(r);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ff__rows_at(r, mid)->ts < ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool ff__rows_has(const ff__rows *r, const ff_row_key *k)
{
    size_t i = ff__rows_upper(r, k), n = ff__rows_n(r);
    if (i == n) return n > 0 && last_cmp(r, k) == 0;
    return i > 0 && ff__row_cmp(ff__rows_at(r, i - 1), k) == 0;
}

int64_t ff__rows_occ_before(const ff__rows *r, size_t i)
{
    if (i == ff__rows_n(r)) return i ? r->last_occ : r->base;
    return i ? ff__rows_at(r, i - 1)->occ : r->base;
}

int32_t ff__fold(int64_t occ, int delta, bool clamp)
{
    int64_t v = occ + delta;
    if (clamp && v < 0) v = 0;
    if (v > INT32_MAX) v = INT32_MAX;
    if (v < INT32_MIN) v = INT32_MIN;
    return (int32_t)v;
}

/* Refolds from p. The rows before `sure` (>= p) are rewritten whatever they hold: a new
 * row has no stored value, and a row between removed ones may hold the right value by
 * chance (removed +1 and -1) while a later one does not. From `sure` on, the first
 * row whose stored value is reproduced ends it: the deltas after it are unchanged. */
static void refold(ff__rows *r, size_t p, size_t sure)
{
    FF_ASSERT(p >= r->pinned); /* the rows before p keep their values */
    size_t n = ff__rows_n(r);
    int64_t occ = ff__rows_occ_before(r, p);
    for (size_t i = p; i < n; i++) {
        ff__row *x = at_mut(r, i);
        int32_t v = ff__fold(occ, x->delta, r->clamp);
        if (x->occ == v && i >= sure) break;
        x->occ = v;
        occ = v;
    }
}

/* ---- the settled part (to be replaced by segments) ---- */

#define FIT_MIN 16 /* fewest rows an allocation is fitted down to (ring_fit, set_fit) */
/* Rows (96 KiB): a growth of a ring by as many or more is mapped in one call
 * (ff_populate) rather than a fault per page as it fills. */
#define POPULATE_ROWS 4096
#define PIN_ROOM_ROWS 16384 /* 384 KiB: a pinned array this large gets room (ff__rows_pin) */

/* Makes room for n more rows after the settled part: first by moving it back to the
 * start of its allocation, then by growing that. */
/* Rows in front of the settled part (0 without an allocation: NULL - NULL is undefined). */
static size_t set_off(const ff__rows *r)
{
    return r->setmem ? (size_t)(r->set - r->setmem) : 0;
}

/* Moves the settled part to a new allocation with room for n more rows, leaving the
 * pinned one to its job (see Pinned rows). */
static void set_unshare(ff__rows *r, size_t n)
{
    size_t cap = r->capset ? r->capset : FIT_MIN;
    while (cap < r->nset + n) cap *= 2;
    ff__row *m = ff_xmalloc(cap * sizeof(*m));
    memcpy(m, r->set, r->nset * sizeof(*m));
    r->set = r->setmem = m;
    r->capset = cap;
    r->pinned = 0;
}

static void set_room(ff__rows *r, size_t n)
{
    size_t off = set_off(r);
    if (off + r->nset + n <= r->capset) return;
    if (r->pinned) {
        set_unshare(r, n);
        return;
    }
    if (off) {
        memmove(r->setmem, r->set, r->nset * sizeof(*r->set));
        r->set = r->setmem;
    }
    r->setmem = ff_xgrow(r->setmem, &r->capset, r->nset + n, sizeof(*r->setmem));
    r->set = r->setmem;
}

static void set_insert(ff__rows *r, size_t i, const ff__row *row)
{
    if (i < r->pinned) set_unshare(r, 1);
    set_room(r, 1);
    memmove(&r->set[i + 1], &r->set[i], (r->nset - i) * sizeof(*r->set));
    r->set[i] = *row;
    r->nset++;
}

static void set_append(ff__rows *r, const ff__row *rows, size_t n)
{
    set_room(r, n);
    memcpy(&r->set[r->nset], rows, n * sizeof(*rows));
    r->nset += n;
}

/* ---- the pending ring ---- */

/*
 * Reallocates the ring to ncap slots (>= npend). Grown or shrunk in place of its
 * allocation where the rows allow: a large ring is remapped by realloc, and its pages
 * are not copied and faulted in anew. A ring grows every few seconds while a space's
 * rate rises, and at 200 DPUs and 1.4 M events/s over UDP the fresh copies' page faults
 * were a fifth of the loop thread (BENCHMARKS). Growing, the rows that wrapped around
 * move to the new half (or the rows before the wrap to the end, whichever are fewer);
 * shrinking, rows that lie beyond the new size are first moved to the front.
 */
static void ring_resize(ff__rows *r, uint32_t ncap)
{
    FF_ASSERT(ncap >= r->npend);
    uint32_t old = r->capring, wrap = r->head + r->npend > old ? r->head + r->npend - old : 0;
    if (ncap >= old) {
        r->ring = ff_xrealloc(r->ring, (size_t)ncap * sizeof(*r->ring));
        if (ncap - old >= POPULATE_ROWS) /* the new half is filled next */
            ff_populate(&r->ring[old], (size_t)(ncap - old) * sizeof(*r->ring));
        uint32_t front = old - r->head; /* rows from head to the old end (when wrapped) */
        if (wrap && wrap <= front && old + wrap <= ncap) {
            memcpy(&r->ring[old], &r->ring[0], (size_t)wrap * sizeof(*r->ring));
        } else if (wrap) {
            memmove(&r->ring[ncap - front], &r->ring[r->head], (size_t)front * sizeof(*r->ring));
            r->head = ncap - front;
        }
    } else if (wrap) { /* a ring at most a quarter full: a fresh copy is small */
        ff__row *nr = ff_xmalloc((size_t)ncap * sizeof(*nr));
        for (uint32_t i = 0; i < r->npend; i++) nr[i] = r->ring[(r->head + i) & (old - 1)];
        free(r->ring);
        r->ring = nr;
        r->head = 0;
    } else {
        if (r->head + r->npend > ncap) {
            memmove(r->ring, &r->ring[r->head], (size_t)r->npend * sizeof(*r->ring));
            r->head = 0;
        }
        r->ring = ff_xrealloc(r->ring, (size_t)ncap * sizeof(*r->ring));
    }
    if (r->npend == 0) r->head = 0;
    r->capring = ncap;
}

static void ring_grow(ff__rows *r)
{
    uint32_t ncap = r->capring ? r->capring * 2 : 16;
    FF_ASSERT(ncap > r->capring);
    ring_resize(r, ncap);
}

/*
 * Memory follows the current window, not the busiest hour a space ever had: the ring
 * and the settled array are halved while at most a quarter full (amortised O(1) a row,
 * like the doubling). Without this they kept their peak-hour capacity for good, and the
 * day's noise raised that peak a little more each day (bench/week).
 *
 * The ring is fitted to what it held when a settle came, not to what is left after it.
 * When the horizon moves faster than the tick comes back to a space (2.4 s for each of
 * 50,000 spaces: TICK_SPACES in engine.c; a replay, or a load whose timestamps run ahead
 * of the wall clock), a settle empties the ring and the next interval fills it again:
 * fitted to the remainder it went 128 -> 16 -> 32 -> 64 -> 128 slots at every visit, one
 * malloc and free per 12 events at 100,000 DPUs and a million events a second. (In real
 * time a ring holds the whole settle window and a visit moves a sliver of it: both rules
 * fit it alike.) So a burst's capacity is given back one settle later, when the ring
 * held little at that settle.
 */
static void ring_fit(ff__rows *r, uint32_t held)
{
    uint32_t need = held > r->npend ? held : r->npend, ncap = r->capring;
    while (ncap > FIT_MIN && need <= ncap / 4) ncap /= 2;
    if (ncap != r->capring) ring_resize(r, ncap); /* in one step, not one per halving */
}

static void set_fit(ff__rows *r)
{
    if (r->pinned) return; /* fitted by a settle after the seal */
    if (r->nset == 0) {    /* give the memory back: the settled part refills slowly */
        free(r->setmem);
        r->set = r->setmem = NULL;
        r->capset = 0;
        return;
    }
    if (r->capset <= FIT_MIN || r->nset > r->capset / 4) return;
    size_t ncap = r->capset / 2;
    while (ncap > FIT_MIN && r->nset <= ncap / 4) ncap /= 2;
    memmove(r->setmem, r->set, r->nset * sizeof(*r->set));
    r->set = r->setmem = ff_xrealloc(r->setmem, ncap * sizeof(*r->setmem));
    r->capset = ncap;
}

static void ring_insert(ff__rows *r, uint32_t q, const ff__row *row)
{
    if (r->npend == r->capring) ring_grow(r);
    uint32_t mask = r->capring - 1;
    if (q >= r->npend / 2) {
        for (uint32_t i = r->npend; i > q; i--)
            r->ring[(r->head + i) & mask] = r->ring[(r->head + i - 1) & mask];
    } else {
        r->head = (r->head - 1) & mask;
        for (uint32_t i = 0; i < q; i++)
            r->ring[(r->head + i) & mask] = r->ring[(r->head + i + 1) & mask];
    }
    r->ring[(r->head + q) & mask] = *row;
    r->npend++;
}

size_t ff__rows_insert(ff__rows *r, const ff__row *row)
{
    ff_row_key k = key_of(row);
    size_t p = ff__rows_upper(r, &k), n = ff__rows_n(r);
    if (p == n) { /* an append: folded from last_occ, nothing after it to refold */
        ff__row x = *row;
        x.occ = ff__fold(n ? r->last_occ : r->base, x.delta, r->clamp);
        ring_insert(r, r->npend, &x);
        last_set(r, &x);
        return p;
    }
    if (p < r->nset)
        set_insert(r, p, row);
    else
        ring_insert(r, (uint32_t)(p - r->nset), row);
    refold(r, p, p + 1);
    last_sync(r);
    return p;
}

void ff__rows_take_dpu(ff__rows *r, uint32_t dpu, int64_t from, ff__row **out, size_t *n,
                       size_t *cap)
{
    size_t p = ff__rows_lower_ts(r, from), total = ff__rows_n(r), w = p, first = total, last = p;
    FF_ASSERT(p >= r->nset);
    for (size_t i = p; i < total; i++) {
        ff__row x = *ff__rows_at(r, i);
        if (x.dpu != dpu) {
            *at_mut(r, w++) = x;
            continue;
        }
        if (first == total) first = w;
        last = w; /* the kept row after it lands here */
        *out = ff_xgrow(*out, cap, *n + 1, sizeof(**out));
        (*out)[(*n)++] = x;
    }
    r->npend -= (uint32_t)(total - w);
    if (first < w) refold(r, first, last);
    last_sync(r);
}

size_t ff__rows_settle(ff__rows *r, int64_t h, size_t budget)
{
    size_t moved = 0;
    uint32_t held = r->npend;
    while (moved < budget && r->npend) {
        /* the contiguous run from head to the end of the ring array */
        uint32_t run = r->capring - r->head;
        if (run > r->npend) run = r->npend;
        if (run > budget - moved) run = (uint32_t)(budget - moved);
        const ff__row *src = &r->ring[r->head];
        uint32_t k = 0;
        while (k < run && src[k].ts <= h) k++;
        if (k == 0) break;
        set_append(r, src, k);
        r->head = (r->head + k) & (r->capring - 1);
        r->npend -= k;
        moved += k;
        if (k < run) break;
    }
    ring_fit(r, held); /* also when nothing moved: a ring that went quiet shrinks */
    if (r->capset && (r->nset == 0 || r->nset <= r->capset / 4)) set_fit(r); /* after a seal */
    return moved;
}

void ff__rows_drop_front(ff__rows *r, size_t k, int32_t occ)
{
    FF_ASSERT(k <= r->nset && !r->pinned);
    if (k == 0) return;
    FF_DEBUG_ASSERT(occ == r->set[k - 1].occ);
    r->base = occ;
    r->set += k;
    r->nset -= k;
}

ff__row *ff__rows_pin(ff__rows *r, size_t k)
{
    FF_ASSERT(k > 0 && k <= r->nset && !r->pinned);
    /* A large array gets room for as many rows again, so that the settles during the
     * job rarely need to unshare it: grown in place of the allocation (realloc remaps
     * its pages, copying nothing, above footfalld's mmap threshold of 256 KiB) and
     * without moving the rows to its front, which would copy them; the room costs
     * address space, not memory, until it is filled. A small one is left as it is:
     * realloc would copy it, and at 100,000 spaces that doubled the rows' memory at
     * every seal (VmHWM 203 -> 295 MiB at the daily peak); if it must grow during the
     * job, its unshared copy is small too. */
    size_t off = set_off(r);
    if (r->nset >= PIN_ROOM_ROWS && off + 2 * r->nset > r->capset) {
        r->setmem = ff_xgrow(r->setmem, &r->capset, off + 2 * r->nset, sizeof(*r->setmem));
        r->set = r->setmem + off;
    }
    r->pinned = k;
    return r->setmem;
}

void ff__rows_release(ff__rows *r, ff__row *mem)
{
    if (r && r->setmem == mem) { /* still its own: nothing was left to the job */
        FF_ASSERT(r->pinned);
        r->pinned = 0;
        return;
    }
    free(mem); /* unshared or freed meanwhile: no one else points at it */
}

void ff__rows_rebase(ff__rows *r, int64_t base)
{
    if (r->pinned) set_unshare(r, 0);
    r->base = base;
    if (ff__rows_n(r)) refold(r, 0, 1);
    last_sync(r);
}

void ff__rows_free(ff__rows *r)
{
    bool clamp = r->clamp;
    int64_t base = r->base;
    if (!r->pinned) free(r->setmem); /* else the job frees it (ff__rows_release) */
    free(r->ring);
    memset(r, 0, sizeof(*r));
    r->clamp = clamp;
    r->base = base;
}

void ff__rows_check(const ff__rows *r, int64_t h, bool fold_check)
{
    /* R1, R2 */
    FF_ASSERT(r->capring == 0 || (r->capring & (r->capring - 1)) == 0);
    FF_ASSERT(r->npend <= r->capring && (r->capring == 0 || r->head < r->capring));
    FF_ASSERT(r->setmem <= r->set && set_off(r) + r->nset <= r->capset);
    FF_ASSERT(r->pinned <= r->nset); /* R7 */
    size_t n = ff__rows_n(r);
    int64_t occ = r->base;
    for (size_t i = 0; i < n; i++) {
        const ff__row *x = ff__rows_at(r, i);
        if (i > 0) { /* R3 */
            ff_row_key k = key_of(x);
            FF_ASSERT(ff__row_cmp(ff__rows_at(r, i - 1), &k) <= 0);
        }
        if (i < r->nset) FF_ASSERT(x->ts <= h); /* R4 */
        if (fold_check) {                       /* R5 */
            occ = ff__fold(occ, x->delta, r->clamp);
            FF_ASSERT(x->occ == occ);
        }
    }
    if (n) { /* R6 */
        const ff__row *x = ff__rows_at(r, n - 1);
        ff_row_key k = key_of(x);
        FF_ASSERT(last_cmp(r, &k) == 0 && r->last_occ == x->occ);
    }
}
