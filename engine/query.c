/*
 * query.c -- the answers: space views, count at T, buckets, occupancy rows, a DPU's
 * events, statistics and the invariant check (contract in engine/engine.h).
 *
 * Every answer reads one space's rows as a single sorted sequence: its sealed rows, then
 * its rows in memory (engine/seal.c, engine/rows.h). A count at T is one binary search
 * (the occupancy stored in the last row with ts <= T), buckets and rows are one search
 * followed by a forward walk (ff__space_scan). Status is ts vs H only.
 *
 * Invariants (ff_engine_check), beyond those of rows.c (R*) and topology.c (T*):
 *   E1 H <= max_ts, and H is FF_TS_MIN while no event was accepted.
 *   E2 the live counters match the live slots.
 */
#include "engine/engine_int.h"

#include <string.h>

/* First index with ts > t. */
static size_t upper_ts(const ff__rows *r, int64_t t)
{
    return t == FF_TS_MAX ? ff__rows_n(r) : ff__rows_lower_ts(r, t + 1);
}

void ff__space_info(const ff_engine *e, const ff__space *s, ff_space_info *out)
{
    out->def = s->def;
    out->revision = s->revision;
    ff__space_totals(s, &out->rows, &out->latest_ts, &out->occupancy);
    out->settled = out->latest_ts <= e->h;
}

int ff_engine_space_get(const ff_engine *e, uint32_t id, ff_space_info *out)
{
    const ff__space *s = ff__space_find(e, id);
    if (!s) return FF_ENOTFOUND;
    ff__space_info(e, s, out);
    return 0;
}

void ff_engine_spaces(const ff_engine *e, ff_space_cb cb, void *ctx)
{
    uint64_t *ids = ff_xmalloc((e->nspaces + 1) * sizeof(*ids));
    size_t n = 0;
    for (size_t i = 0; i < e->nspaces; i++)
        if (e->spaces[i].live) ids[n++] = (uint64_t)e->spaces[i].def.id << 32 | i;
    qsort(ids, n, sizeof(*ids), ff__cmp_u64);
    for (size_t i = 0; i < n; i++) {
        ff_space_info info;
        ff__space_info(e, &e->spaces[(uint32_t)ids[i]], &info);
        if (cb(ctx, &info)) break;
    }
    free(ids);
}

int ff_engine_count(const ff_engine *e, uint32_t space_id, bool has_at, int64_t at, ff_count *out)
{
    const ff__space *s = ff__space_find(e, space_id);
    if (!s) return FF_ENOTFOUND;
    int64_t occ;
    if (has_at && at < e->stub_upto) return FF_EARCHIVED; /* engine/archive.c */
    if (has_at) {
        int rc = ff__space_occ_at(e, s, at, &occ);
        if (rc < 0) return rc;
    } else {
        uint64_t rows;
        ff__space_totals(s, &rows, &at, &occ);
    }
    out->at = at;
    out->occupancy = occ;
    out->settled = at <= e->h;
    out->revision = s->revision;
    return 0;
}

/* Buckets filled by one forward walk over the rows of [start, end). */
typedef struct bucket_walk {
    ff_bucket *b;
    uint64_t k, nb;
    int64_t occ;
} bucket_walk;

static void bucket_open(bucket_walk *w)
{
    ff_bucket *b = &w->b[w->k];
    b->occupancy_start = b->min = b->max = w->occ;
}

static int bucket_row(void *ctx, const ff__row *x)
{
    bucket_walk *w = ctx;
    while (x->ts >= w->b[w->k].end) {
        w->b[w->k++].occupancy_end = w->occ;
        bucket_open(w);
    }
    ff_bucket *b = &w->b[w->k];
    w->occ = x->occ;
    if (w->occ < b->min) b->min = w->occ;
    if (w->occ > b->max) b->max = w->occ;
    if (x->delta > 0)
        b->entrances++;
    else
        b->exits++;
    return 0;
}

int ff_engine_counts(const ff_engine *e, uint32_t space_id, int64_t start, int64_t end,
                     int64_t interval, ff_bucket *out, size_t *n, uint64_t *revision)
{
    const ff__space *s = ff__space_find(e, space_id);
    *n = 0;
    if (!s) return FF_ENOTFOUND;
    if (interval <= 0 || end <= start) return FF_EINVAL;
    uint64_t span = (uint64_t)end - (uint64_t)start;
    uint64_t nb = span / (uint64_t)interval + (span % (uint64_t)interval != 0);
    if (nb > FF_MAX_BUCKETS) return FF_ETOOBIG;
    if (ff__arc_gone(e, start)) return FF_EARCHIVED;
    bucket_walk w = {.b = out, .nb = nb};
    int rc = start == FF_TS_MIN ? 0 : ff__space_occ_at(e, s, start - 1, &w.occ);
    if (rc < 0) return rc;
    for (uint64_t k = 0; k < nb; k++) {
        ff_bucket *b = &out[k];
        memset(b, 0, sizeof(*b));
        b->start = (int64_t)((uint64_t)start + k * (uint64_t)interval);
        b->end = k + 1 == nb ? end : (int64_t)((uint64_t)b->start + (uint64_t)interval);
        b->settled = b->end <= e->h;
    }
    bucket_open(&w);
    rc = ff__space_scan(e, s, start, end, NULL, bucket_row, &w);
    if (rc < 0) return rc;
    for (; w.k < nb; w.k++) {
        out[w.k].occupancy_end = w.occ;
        if (w.k + 1 < nb)
            out[w.k + 1].occupancy_start = out[w.k + 1].min = out[w.k + 1].max = w.occ;
    }
    *n = (size_t)nb;
    if (revision) *revision = s->revision;
    return 0;
}

typedef struct rows_walk {
    ff_row_cb cb;
    void *ctx;
    int64_t h;
} rows_walk;

static int occ_row(void *ctx, const ff__row *x)
{
    rows_walk *w = ctx;
    ff_occ_row o;
    memset(&o, 0, sizeof(o)); /* padding too: callers may compare rows bytewise */
    o.ts = x->ts;
    o.dpu_id = x->dpu;
    o.seq = x->seq;
    o.direction = x->dir;
    o.delta = x->delta;
    o.occupancy = x->occ;
    o.settled = x->ts <= w->h;
    return w->cb(w->ctx, &o);
}

int ff_engine_rows(const ff_engine *e, uint32_t space_id, int64_t start, int64_t end,
                   const ff_row_key *after, ff_row_cb cb, void *ctx)
{
    const ff__space *s = ff__space_find(e, space_id);
    if (!s) return FF_ENOTFOUND;
    if (ff__arc_gone(e, after && after->ts > start ? after->ts : start)) return FF_EARCHIVED;
    rows_walk w = {.cb = cb, .ctx = ctx, .h = e->h};
    return ff__space_scan(e, s, start, end, after, occ_row, &w);
}

/* ---- a DPU's events ---- */

typedef struct evbuf {
    ff_event *ev;
    size_t n, cap;
    uint32_t dpu;
} evbuf;

static int gather_row(void *ctx, const ff__row *x)
{
    evbuf *b = ctx;
    if (x->dpu != b->dpu) return 0;
    b->ev = ff_xgrow(b->ev, &b->cap, b->n + 1, sizeof(*b->ev));
    b->ev[b->n++] = (ff_event){.dpu_id = x->dpu, .direction = x->dir, .seq = x->seq, .ts = x->ts};
    return 0;
}

/* Appends the rows of DPU b->dpu with lo <= ts < hi (memory rows only when s is NULL). */
static int gather(const ff_engine *e, evbuf *b, const ff__space *s, const ff__rows *r, int64_t lo,
                  int64_t hi)
{
    if (s) return ff__space_scan(e, s, lo, hi, NULL, gather_row, b);
    size_t n = ff__rows_n(r);
    for (size_t i = ff__rows_lower_ts(r, lo); i < n; i++) {
        const ff__row *x = ff__rows_at(r, i);
        if (x->ts >= hi) break;
        gather_row(b, x);
    }
    return 0;
}

static int cmp_event(const void *a, const void *b)
{
    const ff_event *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return (x->direction > y->direction) - (x->direction < y->direction);
}

int ff_engine_dpu_events(const ff_engine *e, uint32_t dpu_id, int64_t start, int64_t end,
                         ff_event_cb cb, void *ctx)
{
    const ff__dpu *d = ff__dpu_find(e, dpu_id);
    if (!d) return FF_ENOTFOUND;
    if (ff__arc_gone(e, start)) return FF_EARCHIVED;
    evbuf b = {.dpu = d->id};
    const ff_assignment *v = ff__dpu_versions(d);
    int rc = 0;
    for (uint32_t i = 0; i < d->nv && rc >= 0; i++) {
        int64_t lo = v[i].effective_from > start ? v[i].effective_from : start;
        int64_t hi = i + 1 < d->nv && v[i + 1].effective_from < end ? v[i + 1].effective_from : end;
        const uint32_t *sl = ff__dpu_slots(d, i);
        uint32_t slot = sl[0] != FF__NOIX ? sl[0] : sl[1];
        if (lo < hi && slot != FF__NOIX) rc = gather(e, &b, &e->spaces[slot], NULL, lo, hi);
    }
    if (d->orphans && rc >= 0) rc = gather(e, &b, NULL, d->orphans, start, end);
    if (rc < 0) {
        free(b.ev);
        return rc;
    }
    if (b.n > 1) qsort(b.ev, b.n, sizeof(*b.ev), cmp_event); /* b.ev is NULL when empty */
    for (size_t i = 0; i < b.n && !rc; i++) rc = cb(ctx, &b.ev[i]);
    free(b.ev);
    return rc;
}

/* ---- statistics and invariants ---- */

bool ff_engine_stats_step(const ff_engine *e, ff_engine_stats_walk *w, size_t max_spaces,
                          ff_engine_stats *out)
{
    if (w->topo_gen != e->topo_gen + 1) { /* not begun, or rows may have changed spaces */
        if (w->topo_gen) w->restarts++;
        *w = (ff_engine_stats_walk){.topo_gen = e->topo_gen + 1, .restarts = w->restarts};
    }
    if (w->restarts >= 2) max_spaces = SIZE_MAX;
    size_t left = w->next < e->nspaces ? e->nspaces - w->next : 0;
    size_t end = w->next + (max_spaces < left ? max_spaces : left);
    for (; w->next < end; w->next++) {
        const ff__space *s = &e->spaces[w->next];
        if (!s->live) continue;
        const ff__rows *r = &s->rows;
        /* all settled when the last row is (no read of the rows themselves) */
        size_t settled = r->last_ts <= e->h ? ff__rows_n(r) : upper_ts(r, e->h);
        w->settled_rows += settled;
        w->pending_rows += ff__rows_n(r) - settled;
        w->sealed_rows += s->sealed_rows;
    }
    if (w->next < e->nspaces) return false;
    memset(out, 0, sizeof(*out));
    memcpy(out->outcomes, e->outcomes, sizeof(out->outcomes));
    out->settled_rows = w->settled_rows;
    out->pending_rows = w->pending_rows;
    out->sealed_rows = w->sealed_rows;
    out->segments_sealed = e->segments_sealed;
    out->segments_rewritten = e->segments_rewritten;
    out->segments_merged = e->segments_merged;
    out->segments = (uint32_t)e->nsegs;
    out->segments_archived = e->segments_archived;
    out->archived_upto = e->archived_upto;
    out->horizon = e->h;
    out->max_ts = e->max_ts;
    if (e->log) {
        out->log_bytes = ff_log_disk_bytes(e->log);
        out->log_files = ff_log_files(e->log);
        out->log_files_released = e->log_released;
        out->seal_jobs_discarded = e->seal_jobs_discarded;
    }
    out->pending_row_bytes = sizeof(ff__row);
    return true;
}

void ff_engine_stats_get(const ff_engine *e, ff_engine_stats *out)
{
    ff_engine_stats_walk w = {0};
    ff_engine_stats_step(e, &w, SIZE_MAX, out);
}

void ff_engine_check(const ff_engine *e)
{
    /* E1 */
    FF_ASSERT(e->h <= e->max_ts);
    /* E2 */
    size_t live = 0;
    for (size_t i = 0; i < e->nspaces; i++) live += e->spaces[i].live;
    FF_ASSERT(live == e->live_spaces);
    live = 0;
    for (size_t i = 0; i < e->ndoorways; i++) live += e->doorways[i].live;
    FF_ASSERT(live == e->live_doorways);
    for (size_t i = 0; i < e->nspaces; i++)
        if (e->spaces[i].live) ff__rows_check(&e->spaces[i].rows, e->h, true);
    for (size_t i = 0; i < e->ndpus; i++)
        if (e->dpus[i].orphans) ff__rows_check(e->dpus[i].orphans, e->h, false);
    ff__topo_check(e);
    ff__seal_check(e);
}

size_t ff_engine_corrupt_news(const ff_engine *e, void (*fn)(void *ctx, const char *message),
                              void *ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nsegs; i++) {
        const char *msg = e->segs[i].seg ? ff_seg_error_news(e->segs[i].seg) : NULL;
        if (msg) fn(ctx, msg), n++;
    }
    return n;
}
