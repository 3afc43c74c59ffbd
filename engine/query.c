/*
 * query.c -- the answers: space views, count at T, buckets, occupancy rows, a DPU's
 * events, statistics and the invariant check (contract in engine/engine.h).
 *
 * Every answer reads one space's rows as a single sorted sequence (engine/rows.h): a
 * count at T is one binary search (the occupancy stored in the last row with ts <= T),
 * buckets and rows are one search followed by a forward walk. Status is ts vs H only.
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
    size_t n = ff__rows_n(&s->rows);
    const ff__row *last = n ? ff__rows_at(&s->rows, n - 1) : NULL;
    out->def = s->def;
    out->revision = s->revision;
    out->rows = n;
    out->occupancy = last ? last->occ : 0;
    out->latest_ts = last ? last->ts : FF_TS_MIN;
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
    const ff__rows *r = &s->rows;
    size_t i = has_at ? upper_ts(r, at) : ff__rows_n(r);
    if (!has_at) at = i ? ff__rows_at(r, i - 1)->ts : FF_TS_MIN;
    out->at = at;
    out->occupancy = ff__rows_occ_before(r, i);
    out->settled = at <= e->h;
    out->revision = s->revision;
    return 0;
}

/* Walks the rows from *i up to ts < b->end into bucket b (occupancy_start preset). */
static void fill_bucket(const ff__rows *r, size_t *i, ff_bucket *b)
{
    size_t n = ff__rows_n(r);
    int64_t occ = b->occupancy_start;
    b->min = b->max = occ;
    for (; *i < n; (*i)++) {
        const ff__row *x = ff__rows_at(r, *i);
        if (x->ts >= b->end) break;
        occ = x->occ;
        if (occ < b->min) b->min = occ;
        if (occ > b->max) b->max = occ;
        if (x->delta > 0)
            b->entrances++;
        else
            b->exits++;
    }
    b->occupancy_end = occ;
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
    const ff__rows *r = &s->rows;
    size_t i = ff__rows_lower_ts(r, start);
    int64_t occ = ff__rows_occ_before(r, i);
    for (uint64_t k = 0; k < nb; k++) {
        ff_bucket *b = &out[k];
        memset(b, 0, sizeof(*b));
        b->start = (int64_t)((uint64_t)start + k * (uint64_t)interval);
        b->end = k + 1 == nb ? end : (int64_t)((uint64_t)b->start + (uint64_t)interval);
        b->occupancy_start = occ;
        fill_bucket(r, &i, b);
        occ = b->occupancy_end;
        b->settled = b->end <= e->h;
    }
    *n = (size_t)nb;
    if (revision) *revision = s->revision;
    return 0;
}

int ff_engine_rows(const ff_engine *e, uint32_t space_id, int64_t start, int64_t end,
                   const ff_row_key *after, ff_row_cb cb, void *ctx)
{
    const ff__space *s = ff__space_find(e, space_id);
    if (!s) return FF_ENOTFOUND;
    const ff__rows *r = &s->rows;
    size_t i = ff__rows_lower_ts(r, start), n = ff__rows_n(r);
    if (after) {
        size_t j = ff__rows_upper(r, after);
        if (j > i) i = j;
    }
    for (; i < n; i++) {
        const ff__row *x = ff__rows_at(r, i);
        if (x->ts >= end) break;
        ff_occ_row o = {.ts = x->ts,
                        .dpu_id = x->dpu,
                        .seq = x->seq,
                        .direction = x->dir,
                        .delta = x->delta,
                        .occupancy = x->occ,
                        .settled = x->ts <= e->h};
        int rc = cb(ctx, &o);
        if (rc) return rc;
    }
    return 0;
}

/* ---- a DPU's events ---- */

typedef struct evbuf {
    ff_event *ev;
    size_t n, cap;
} evbuf;

/* Appends the rows of DPU dpu with lo <= ts < hi. */
static void gather(evbuf *b, const ff__rows *r, uint32_t dpu, int64_t lo, int64_t hi)
{
    size_t n = ff__rows_n(r);
    for (size_t i = ff__rows_lower_ts(r, lo); i < n; i++) {
        const ff__row *x = ff__rows_at(r, i);
        if (x->ts >= hi) break;
        if (x->dpu != dpu) continue;
        b->ev = ff_xgrow(b->ev, &b->cap, b->n + 1, sizeof(*b->ev));
        b->ev[b->n++] = (ff_event){.dpu_id = dpu, .direction = x->dir, .seq = x->seq, .ts = x->ts};
    }
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
    evbuf b = {0};
    const ff_assignment *v = ff__dpu_versions(d);
    for (uint32_t i = 0; i < d->nv; i++) {
        int64_t lo = v[i].effective_from > start ? v[i].effective_from : start;
        int64_t hi = i + 1 < d->nv && v[i + 1].effective_from < end ? v[i + 1].effective_from : end;
        const uint32_t *sl = ff__dpu_slots(d, i);
        uint32_t slot = sl[0] != FF__NOIX ? sl[0] : sl[1];
        if (lo < hi && slot != FF__NOIX) gather(&b, &e->spaces[slot].rows, d->id, lo, hi);
    }
    if (d->orphans) gather(&b, d->orphans, d->id, start, end);
    qsort(b.ev, b.n, sizeof(*b.ev), cmp_event);
    int rc = 0;
    for (size_t i = 0; i < b.n && !rc; i++) rc = cb(ctx, &b.ev[i]);
    free(b.ev);
    return rc;
}

/* ---- statistics and invariants ---- */

void ff_engine_stats_get(const ff_engine *e, ff_engine_stats *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->outcomes, e->outcomes, sizeof(out->outcomes));
    for (size_t i = 0; i < e->nspaces; i++) {
        const ff__rows *r = &e->spaces[i].rows;
        if (!e->spaces[i].live) continue;
        size_t settled = upper_ts(r, e->h);
        out->settled_rows += settled;
        out->pending_rows += ff__rows_n(r) - settled;
    }
    out->horizon = e->h;
    out->max_ts = e->max_ts;
    if (e->log) {
        out->log_bytes = ff_log_disk_bytes(e->log);
        out->log_files = ff_log_files(e->log);
    }
    out->pending_row_bytes = sizeof(ff__row);
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
}
