/*
 * engine.c -- opening and recovery, admission of event batches, the horizon, the tick
 * (contract in engine/engine.h; state in engine/engine_int.h).
 *
 * Admission. Each event of a batch is judged in this order, the first match deciding:
 *   invalid (direction not +-1, reserved != 0, ts < 0) -> future (ts > now +
 *   max_future) -> unknown_dpu (never registered) -> too_old (ts < H - max_lateness,
 *   once H exists) -> duplicate (an accepted event with equal dpu_id, ts, direction,
 *   seq; also earlier in the same batch) -> late (ts <= H: refused with late_reject,
 *   else accepted and flagged) -> accepted.
 * Duplicate detection needs no index of its own: an accepted event is a row of the entry
 * space (or exit space) of the version in force at its ts, or an orphan row of its DPU;
 * the canonical key is binary-searched there (from the back, where new events land).
 * Each accepted event is counted at once, so a later copy in the same batch is found.
 * An event with ts <= sealed_upto is searched in the one segment whose window holds its
 * ts (ff_seg_find), and if late and accepted it rewrites sealed segments synchronously
 * (engine/seal.c gives the cost): the only case where ingest makes system calls.
 *
 * Logging without copies. Before judging a batch the engine reserves room for all of
 * it in the log (ff_log_reserve), writes each accepted event (FF_EVF_LATE in .reserved)
 * straight into the reservation, and commits the final length at the end; a batch with
 * nothing accepted abandons the reservation. If the reservation fails the batch is
 * refused whole and nothing changes. Committing cannot fail, so counting events while
 * the record is still open is safe. Steady state: no allocation, no system call per
 * event (rings and arrays grow by doubling).
 *
 * Horizon. H = max(H, max_ts - settle) after every accepted event; a tick moves H up to
 * max_ts when nothing was accepted for settle of wall-clock time, writing an
 * FF_LOG_HORIZON record first. H never moves back.
 *
 * Recovery. Replay re-applies records in log order: events without any admission check
 * (they were accepted; the LATE flag bumps revisions), topology records through
 * topology.c, horizon records as H = max(H, value). Since H is a maximum of per-event
 * values and logged idle advances, the H after replay equals the H before, and so do
 * all answers, revisions and statuses. Rows are settled in full at the end of replay.
 */
#include "engine/engine_int.h"

#include <string.h>
#include <time.h>

#define TICK_SPACES 2048       /* spaces visited by one tick (8,192 took 3-4 ms of it) */
#define TICK_ROWS   (1u << 18) /* rows settled by one tick */

static int64_t realtime(void *ctx)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * FF_SECOND + t.tv_nsec / 1000;
}

int64_t ff__now(const ff_engine *e)
{
    return e->o.clock(e->o.clock_ctx);
}

void ff_engine_opts_default(ff_engine_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->settle_us = 5 * FF_MINUTE;
    o->max_lateness_us = 7 * FF_DAY;
    o->max_future_us = 5 * FF_MINUTE;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? FF_TS_MAX : FF_TS_MIN) : r;
}

const char *ff_outcome_reason(int outcome)
{
    switch (outcome) {
    case FF_OUT_REFUSED_LATE:
        return "late";
    case FF_OUT_REFUSED_TOO_OLD:
        return "too_old";
    case FF_OUT_REFUSED_FUTURE:
        return "future";
    case FF_OUT_REFUSED_UNKNOWN_DPU:
        return "unknown_dpu";
    case FF_OUT_REFUSED_INVALID:
        return "invalid";
    }
    return NULL;
}

/* ---- counting one accepted event ---- */

/* Returns whether the row went among the settled rows (a late one, behind H). */
static bool insert_row(ff__rows *rows, const ff_event *ev, int delta)
{
    ff__row row = {.ts = ev->ts,
                   .dpu = ev->dpu_id,
                   .seq = ev->seq,
                   .dir = ev->direction,
                   .delta = (int8_t)delta};
    return ff__rows_insert(rows, &row) < rows->nset;
}

void ff__apply_event(ff_engine *e, ff__dpu *d, const ff_event *ev)
{
    const uint32_t *sl = ff__dpu_slots_at(d, ev->ts);
    bool late = ev->reserved & FF_EVF_LATE;
    if (!sl || (sl[0] == FF__NOIX && sl[1] == FF__NOIX)) {
        if (!d->orphans) {
            d->orphans = ff_xcalloc(1, sizeof(*d->orphans));
            e->orphan_dpus++;
        }
        (void)insert_row(d->orphans, ev, 0); /* kept whole, never sealed */
    } else {
        if (e->job && ev->ts <= e->seal_to) e->seal_dirty = true; /* engine/seal.c */
        for (int k = 0; k < 2; k++) {
            if (sl[k] == FF__NOIX) continue;
            ff__space *s = &e->spaces[sl[k]];
            int delta = k == 0 ? ev->direction : -ev->direction;
            if (ev->ts <= e->sealed_upto) { /* amends sealed history (engine/seal.c) */
                ff__row row = {.ts = ev->ts,
                               .dpu = ev->dpu_id,
                               .seq = ev->seq,
                               .dir = ev->direction,
                               .delta = (int8_t)delta};
                ff__seal_amend(e, s, &row);
            } else if (insert_row(&s->rows, ev, delta)) {
                e->settled_since_seal++; /* one more settled row to seal */
            }
            if (late) s->revision++;
        }
    }
    if (ev->ts > e->max_ts) {
        e->max_ts = ev->ts;
        int64_t h = e->max_ts - e->o.settle_us;
        if (h > e->h) e->h = h;
    }
}

/* ---- admission ---- */

static bool is_duplicate(const ff_engine *e, const ff__dpu *d, const ff_event *ev)
{
    const ff__rows *rows = d->orphans;
    const ff__space *s = NULL;
    const uint32_t *sl = ff__dpu_slots_at(d, ev->ts);
    if (sl && (sl[0] != FF__NOIX || sl[1] != FF__NOIX)) {
        s = &e->spaces[sl[0] != FF__NOIX ? sl[0] : sl[1]];
        rows = &s->rows;
    }
    ff_row_key k = {.ts = ev->ts, .dpu_id = ev->dpu_id, .seq = ev->seq, .direction = ev->direction};
    if (s && ev->ts <= e->sealed_upto) return ff__space_sealed_has(e, s, &k);
    return rows && ff__rows_has(rows, &k);
}

static int admit(const ff_engine *e, const ff_event *ev, int64_t now, ff__dpu **pd)
{
    if ((ev->direction != 1 && ev->direction != -1) || ev->reserved || ev->ts < 0)
        return FF_OUT_REFUSED_INVALID;
    if (ev->ts > sat_add(now, e->o.max_future_us)) return FF_OUT_REFUSED_FUTURE;
    ff__dpu *d = *pd = ff__dpu_find(e, ev->dpu_id);
    if (!d) return FF_OUT_REFUSED_UNKNOWN_DPU;
    if (e->h != FF_TS_MIN && ev->ts < sat_add(e->h, -e->o.max_lateness_us))
        return FF_OUT_REFUSED_TOO_OLD;
    if (ev->ts <= e->archived_upto) return FF_OUT_REFUSED_TOO_OLD; /* engine/archive.c */
    if (!e->o.dedup_off && is_duplicate(e, d, ev)) return FF_OUT_DUPLICATE;
    if (ev->ts <= e->h) return e->o.late_reject ? FF_OUT_REFUSED_LATE : FF_OUT_LATE;
    return FF_OUT_ACCEPTED;
}

/*
 * Memory-level parallelism. With 100,000 DPUs and 50,000 spaces every event misses the
 * cache along a chain of dependent loads: id map slot -> DPU slot (holding the latest
 * version's space slots) -> space (its rows struct) -> the ring slot an append writes.
 * Ingest runs them as a software pipeline: while event i is admitted, the ring slots
 * of event i + PF_DIST are fetched, the rows structs of i + 2 PF_DIST, the DPU slot of
 * i + 3 PF_DIST and the id map slot of i + 4 PF_DIST, each stage reading what the one
 * before fetched PF_DIST events earlier, so the misses of about 4 PF_DIST events
 * overlap while every load that the code waits on hits. Hints only: nothing here
 * changes state, and stale guesses cost nothing but a wasted fetch. (Before, one pass
 * per link over chunks of 64 events: each pass's loads waited on the misses of the one
 * before, and admission could only start once the last pass was done.)
 */
#define PF_DIST 4             /* 2 to 12 did about as well; 4 best (bench/ingest) */
#define PF_LEAD (4 * PF_DIST) /* how far the first stage runs ahead */
#define PF_WIN  64            /* a power of two > PF_LEAD: the per-event state kept */
_Static_assert(PF_WIN > PF_LEAD && (PF_WIN & (PF_WIN - 1)) == 0, "PF_WIN");

typedef struct pf_state {
    const ff__dpu *d[PF_WIN];
    const uint32_t *sl[PF_WIN];
} pf_state;

static const ff__rows *space_rows(const ff_engine *e, uint32_t slot)
{
    return slot == FF__NOIX ? NULL : &e->spaces[slot].rows;
}

/* An append reads no row (the last one's key and occ are in the ff__rows), it only
 * writes the ring slot after the last: fetched here for writing. */
static void prefetch_append(const ff__rows *r)
{
    if (r && r->ring) __builtin_prefetch(&r->ring[(r->head + r->npend) & (r->capring - 1)], 1);
}

/* Step j of the pipeline over ev[0..n): the stages of events j, j - PF_DIST, ... */
static void prefetch_step(const ff_engine *e, const ff_event *ev, size_t n, size_t j, pf_state *p)
{
    size_t i = j;
    if (i < n) ff__idmap_prefetch(&e->dpu_ix, ev[i].dpu_id);
    if ((i -= PF_DIST) < n) { /* wraps below 0 */
        const ff__dpu *d = p->d[i % PF_WIN] = ff__dpu_find(e, ev[i].dpu_id);
        if (d) __builtin_prefetch(d);
    }
    if ((i -= PF_DIST) < n) {
        const ff__dpu *d = p->d[i % PF_WIN];
        const uint32_t *sl = p->sl[i % PF_WIN] = d ? ff__dpu_slots_at(d, ev[i].ts) : NULL;
        for (int k = 0; sl && k < 2; k++)
            if (sl[k] != FF__NOIX) __builtin_prefetch(&e->spaces[sl[k]].rows);
    }
    if ((i -= PF_DIST) < n) {
        const uint32_t *sl = p->sl[i % PF_WIN];
        for (int k = 0; sl && k < 2; k++) prefetch_append(space_rows(e, sl[k]));
    }
}

int ff_engine_ingest(ff_engine *e, const ff_event *ev, size_t n, uint8_t *outcome,
                     ff_ingest_result *res)
{
    ff_ingest_result r = {0};
    if (res) *res = r;
    if (n == 0) return 0;
    ff_event *rec = NULL;
    if (e->log) {
        int err = FF_ETOOBIG;
        if (n <= FF_LOG_MAX_PAYLOAD / sizeof(ff_event))
            rec = ff_log_reserve(e->log, FF_LOG_EVENTS, (uint32_t)(n * sizeof(ff_event)), &err);
        if (!rec) return err;
    }
    int64_t now = ff__now(e), bmax = FF_TS_MIN;
    size_t k = 0;
    pf_state pf;
    for (size_t j = 0; j < PF_LEAD; j++) prefetch_step(e, ev, n, j, &pf);
    for (size_t i = 0; i < n; i++) {
        prefetch_step(e, ev, n, i + PF_LEAD, &pf);
        ff__dpu *d = NULL;
        int o = admit(e, &ev[i], now, &d);
        e->outcomes[o]++;
        if (outcome) outcome[i] = (uint8_t)o;
        if (o == FF_OUT_DUPLICATE) r.duplicates++;
        if (o > FF_OUT_DUPLICATE) r.refused++;
        if (o > FF_OUT_LATE) continue;
        ff_event x = ev[i];
        x.reserved = o == FF_OUT_LATE ? FF_EVF_LATE : 0;
        if (rec) rec[k] = x;
        k++;
        if (x.ts > bmax) bmax = x.ts;
        r.late += o == FF_OUT_LATE;
        ff__apply_event(e, d, &x);
    }
    if (e->log) {
        uint64_t lsn = ff_log_commit(e->log, (uint32_t)(k * sizeof(ff_event)));
        if (k) ff__ckpt_note(e, lsn, bmax);
    }
    if (e->amend_pending && !e->o.seal_async) /* else a commit job's (engine/seal.c) */
        ff__seal_commit(e);                   /* on failure, retried by the next tick */
    if (k) e->last_accept = now;
    r.accepted = (uint32_t)k;
    if (res) *res = r;
    return 0;
}

/* ---- time passing ---- */

/* Settles rows of up to max_spaces spaces, at most max_rows rows, round robin. */
static void settle_some(ff_engine *e, size_t max_spaces, size_t max_rows)
{
    size_t rows = 0;
    for (size_t v = 0; v < max_spaces && v < e->nspaces && rows < max_rows; v++) {
        if (e->settle_cursor >= e->nspaces) e->settle_cursor = 0;
        if (e->settle_cursor + 8 < e->nspaces) __builtin_prefetch(&e->spaces[e->settle_cursor + 8]);
        ff__space *s = &e->spaces[e->settle_cursor];
        size_t moved = s->live ? ff__rows_settle(&s->rows, e->h, max_rows - rows) : 0;
        rows += moved;
        e->settled_since_seal += moved;
        /* stay on a space whose settled rows exceeded this tick's budget */
        if (rows < max_rows) e->settle_cursor++;
    }
}

static void idle_advance(ff_engine *e)
{
    if (e->log) {
        unsigned char b[8];
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)e->max_ts >> (8 * i));
        uint64_t lsn;
        if (ff_log_append(e->log, FF_LOG_HORIZON, b, sizeof(b), &lsn) < 0) return;
    }
    e->h = e->max_ts;
}

void ff_engine_tick(ff_engine *e)
{
    int64_t now = ff__now(e);
    if (e->max_ts != FF_TS_MIN && e->h < e->max_ts && now - e->last_accept >= e->o.settle_us)
        idle_advance(e);
    settle_some(e, TICK_SPACES, TICK_ROWS);
    e->commit_failed = false; /* ff_engine_seal_begin may try again */
    ff__seal_tick(e, now);
    ff__arc_tick(e, now);
}

/* ---- durability ---- */

uint64_t ff_engine_written(const ff_engine *e)
{
    return e->log ? ff_log_written(e->log) : 0;
}

uint64_t ff_engine_durable(const ff_engine *e)
{
    return e->log ? ff_log_durable(e->log) : 0;
}

int ff_engine_sync(ff_engine *e)
{
    return e->log ? ff_log_sync(e->log) : 0;
}

int ff_engine_sync_begin(ff_engine *e, ff_log_sync_job *job)
{
    return e->log ? ff_log_sync_begin(e->log, job) : 0;
}

int ff_engine_sync_run(const ff_log_sync_job *job)
{
    return ff_log_sync_run(job);
}

int ff_engine_sync_end(ff_engine *e, const ff_log_sync_job *job, int rc)
{
    return ff_log_sync_end(e->log, job, rc);
}

int64_t ff_engine_horizon(const ff_engine *e)
{
    return e->h;
}

/* ---- open, replay, close ---- */

/* Replays the events of one record; covered: the record is at or before the
 * checkpoint's LSN (engine/checkpoint.c gives the rules). */
static int replay_events(ff_engine *e, const void *payload, uint32_t len, uint64_t lsn,
                         bool covered)
{
    if (len % sizeof(ff_event)) return FF_ECORRUPT;
    const unsigned char *p = payload;
    int64_t bmax = FF_TS_MIN;
    for (uint32_t off = 0; off < len; off += sizeof(ff_event)) {
        ff_event ev;
        memcpy(&ev, p + off, sizeof(ev));
        ff__dpu *d = ff__dpu_find(e, ev.dpu_id);
        if (!d || (ev.direction != 1 && ev.direction != -1) || ev.ts < 0 ||
            (ev.reserved & ~FF_EVF_LATE))
            return FF_ECORRUPT;
        if (ev.ts > bmax) bmax = ev.ts;
        if (covered) ev.reserved = 0; /* its revision is in the checkpoint */
        if (covered && ev.ts <= e->sealed_upto) {
            e->events_skipped++; /* in the segments or the checkpoint's orphan rows */
            continue;
        }
        if (ff__arc_gone(e, ev.ts)) { /* would rewrite a stub (engine/archive.c) */
            e->arc_replay_ts = ev.ts;
            return FF_EARCHIVED;
        }
        ff__apply_event(e, d, &ev);
        e->events_replayed++;
    }
    ff__ckpt_note(e, lsn, bmax);
    return 0;
}

static int replay_cb(void *ctx, int type, const void *payload, uint32_t len, uint64_t lsn)
{
    ff_engine *e = ctx;
    if (e->lrep->start > e->ck_lsn) { /* records the checkpoint does not cover are gone */
        e->log_gap = true;
        return FF_ECORRUPT;
    }
    if (lsn <= e->ck_lsn) { /* the checkpoint holds the topology and H as of its LSN */
        if (type == FF_LOG_EVENTS) return replay_events(e, payload, len, lsn, true);
        return type == FF_LOG_TOPO || type == FF_LOG_HORIZON ? 0 : FF_EVERSION;
    }
    switch (type) {
    case FF_LOG_EVENTS:
        return replay_events(e, payload, len, lsn, false);
    case FF_LOG_TOPO:
        return ff__topo_replay(e, payload, len);
    case FF_LOG_HORIZON: {
        if (len != 8) return FF_ECORRUPT;
        const unsigned char *p = payload;
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
        if ((int64_t)v > e->max_ts) return FF_ECORRUPT;
        if ((int64_t)v > e->h) e->h = (int64_t)v;
        return 0;
    }
    }
    return FF_EVERSION;
}

static void opts_fill(ff_engine_opts *o)
{
    ff_engine_opts d;
    ff_engine_opts_default(&d);
    if (o->settle_us <= 0) o->settle_us = d.settle_us;
    if (o->max_lateness_us <= 0) o->max_lateness_us = d.max_lateness_us;
    if (o->max_future_us <= 0) o->max_future_us = d.max_future_us;
    if (!o->clock) o->clock = realtime;
}

int ff_engine_open(ff_engine **out, const ff_engine_opts *opts, ff_engine_recovery *rep)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ff_engine *e = ff_xcalloc(1, sizeof(*e));
    e->o = *opts;
    opts_fill(&e->o);
    e->h = e->max_ts = FF_TS_MIN;
    if (rep) memset(rep, 0, sizeof(*rep));
    char err[512] = "";
    e->replaying = true;
    int rc = ff__seal_open(e, err, sizeof(err));
    if (rc == 0 && e->o.data_dir) {
        ff_log_opts lo = {.file_bytes = e->o.log_file_bytes};
        ff_log_recovery lr, *plr = rep ? &rep->log : &lr;
        memset(plr, 0, sizeof(*plr));
        e->lrep = plr;
        rc = ff_log_open(&e->log, e->o.data_dir, &lo, replay_cb, e, plr);
        e->lrep = NULL;
        if ((rc < 0 && e->log_gap) || (rc == 0 && ff_log_start(e->log) > e->ck_lsn)) {
            snprintf(err, sizeof(err),
                     "%s: log files before LSN %llu are missing and no checkpoint covers them",
                     e->o.data_dir, (unsigned long long)plr->start);
            rc = FF_ECORRUPT;
        } else if (rc == FF_EARCHIVED) {
            snprintf(err, sizeof(err),
                     "%s: the log holds an event at %lld us into archived history (archived "
                     "while it could still be amended): start with --archive-dir DIR",
                     e->o.data_dir, (long long)e->arc_replay_ts);
        } else if (rc < 0 && plr->cut_reason[0]) /* the log's message names file and offset */
            snprintf(err, sizeof(err), "%s", plr->cut_reason);
        else if (rc < 0)
            snprintf(err, sizeof(err), "%s: log: %s", e->o.data_dir, ff_strerror(rc));
        else if (ff_log_written(e->log) < e->ck_lsn) {
            snprintf(err, sizeof(err), "%s: the log ends before the checkpoint's position",
                     e->o.data_dir);
            rc = FF_ECORRUPT;
        }
    }
    e->replaying = false;
    if (rc == 0 && e->amend_pending) { /* late events replayed into sealed history */
        rc = ff__seal_commit(e);
        if (rc < 0)
            snprintf(err, sizeof(err), "%s: checkpoint: %s", e->o.data_dir, ff_strerror(rc));
    }
    if (rc < 0) {
        if (rep) snprintf(rep->error, sizeof(rep->error), "%s", err);
        if (e->log) ff_log_close(e->log);
        ff__seal_close(e);
        ff__topo_free(e);
        free(e);
        return rc;
    }
    settle_some(e, SIZE_MAX, SIZE_MAX);
    e->last_accept = e->last_seal = e->last_arc_scan = ff__now(e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rep) {
        rep->events_replayed = e->events_replayed;
        rep->topo_ops_replayed = e->topo_replayed;
        rep->events_skipped = e->events_skipped;
        rep->segments = (uint32_t)e->nsegs;
        rep->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    }
    *out = e;
    return 0;
}

void ff_engine_close(ff_engine *e)
{
    if (!e) return;
    ff__seal_abandon(e); /* a capture the caller has not been handed yet */
    FF_ASSERT(!e->job);  /* the caller ends its seal job first */
    if (e->log) ff_log_close(e->log);
    ff__seal_close(e);
    ff__topo_free(e);
    free(e);
}
