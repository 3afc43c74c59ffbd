/*
 * topology.c -- spaces, doorways and DPU assignment versions: validation, the topology
 * log record, application and re-attribution (contract in engine/engine.h).
 *
 * Every change goes through one path: check -> encode -> append to the log (FF_LOG_TOPO)
 * -> apply. Replay decodes the record and applies it again through the same check (minus
 * the horizon rule, which held when the change was made) and the same apply, so the
 * state after replay is the state before. The record carries resolved values only (the
 * effective_from that "now" meant at the time), never a request.
 *
 * TOPO record payload (little-endian), byte 0 = op:
 *   1 space put     u32 id, u8 flags (1 has_capacity, 2 clamp_at_zero), i64 capacity,
 *                   u8 name length (1..100), name bytes
 *   2 space delete  u32 id
 *   3 doorway put   u32 id, u8 name length, name bytes
 *   4 doorway del   u32 id
 *   5 dpu assign    u32 dpu id, u32 doorway, u32 entry space, u32 exit space,
 *                   i64 effective_from
 *
 * Re-attribution. A new version V with effective_from E is later than every earlier
 * version and (outside replay) later than H, so the DPU's rows with ts >= E are all
 * pending and all sit where the previous version put them: its entry and exit spaces, or
 * the orphan rows when it had neither. They are taken out (the spaces refold) and placed
 * again under V. Rows before E are never touched: a move never rewrites history.
 *
 * Invariants (ff__topo_check):
 *   T1 every live space / doorway / DPU slot is found by its id, every live space and
 *      doorway by its name, and the maps hold nothing else.
 *   T2 a DPU's versions are strictly increasing in effective_from; their space slots
 *      match their space ids and name live spaces; entry != exit unless both are 0;
 *      the ff__dpu's copy of the latest one (last_from, last_sl) equals it.
 *   T3 refs of every space and doorway equals the number of versions naming it.
 *   T4 every row of a space belongs to a DPU version in force at the row's ts naming the
 *      space, with delta +direction (entry) or -direction (exit); every orphan row
 *      belongs to no space.
 */
#include "engine/engine_int.h"

#include <string.h>

enum { OP_SPACE_PUT = 1, OP_SPACE_DEL, OP_DOOR_PUT, OP_DOOR_DEL, OP_ASSIGN };

typedef struct topo_op {
    uint8_t op;
    uint32_t id; /* space, doorway or DPU id */
    ff_space_def space;
    ff_doorway_def door;
    ff_assignment a;
} topo_op;

#define TOPO_MAX 128

/* ---- lookups ---- */

ff__space *ff__space_find(const ff_engine *e, uint32_t id)
{
    uint32_t ix = ff__idmap_get(&e->space_ix, id);
    return ix == FF__NOIX ? NULL : &e->spaces[ix];
}

static ff__doorway *doorway_find(const ff_engine *e, uint32_t id)
{
    uint32_t ix = ff__idmap_get(&e->doorway_ix, id);
    return ix == FF__NOIX ? NULL : &e->doorways[ix];
}

ff__dpu *ff__dpu_find(const ff_engine *e, uint32_t id)
{
    uint32_t ix = ff__idmap_get(&e->dpu_ix, id);
    return ix == FF__NOIX ? NULL : &e->dpus[ix];
}

static const char *space_name_of(const void *ctx, uint32_t ix)
{
    return ((const ff_engine *)ctx)->spaces[ix].def.name;
}

static const char *door_name_of(const void *ctx, uint32_t ix)
{
    return ((const ff_engine *)ctx)->doorways[ix].def.name;
}

int ff__dpu_version_at(const ff__dpu *d, int64_t ts)
{
    if (FF_LIKELY(d->last_from <= ts)) return (int)d->nv - 1;
    const ff_assignment *v = ff__dpu_versions(d);
    int lo = 0, hi = (int)d->nv - 1; /* v[hi] > ts */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v[mid].effective_from <= ts)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* ---- encoding ---- */

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

static unsigned char *put_i64(unsigned char *p, int64_t v)
{
    for (int i = 0; i < 8; i++) *p++ = (unsigned char)((uint64_t)v >> (8 * i));
    return p;
}

static unsigned char *put_name(unsigned char *p, const char *name)
{
    size_t n = strlen(name);
    *p++ = (unsigned char)n;
    memcpy(p, name, n);
    return p + n;
}

static uint32_t encode(const topo_op *op, unsigned char *buf)
{
    unsigned char *p = buf;
    *p++ = op->op;
    p = put_u32(p, op->id);
    if (op->op == OP_SPACE_PUT) {
        *p++ = (unsigned char)(op->space.has_capacity | op->space.clamp_at_zero << 1);
        p = put_i64(p, op->space.capacity);
        p = put_name(p, op->space.name);
    } else if (op->op == OP_DOOR_PUT) {
        p = put_name(p, op->door.name);
    } else if (op->op == OP_ASSIGN) {
        p = put_u32(p, op->a.doorway_id);
        p = put_u32(p, op->a.entry_space_id);
        p = put_u32(p, op->a.exit_space_id);
        p = put_i64(p, op->a.effective_from);
    }
    return (uint32_t)(p - buf);
}

typedef struct reader {
    const unsigned char *p, *end;
    bool bad;
} reader;

static uint64_t get_le(reader *r, int n)
{
    if (r->end - r->p < n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

static void get_name(reader *r, char *name)
{
    size_t n = (size_t)get_le(r, 1);
    if (r->bad || n > FF_NAME_MAX || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return;
    }
    memset(name, 0, FF_NAME_MAX + 1);
    memcpy(name, r->p, n);
    r->p += n;
}

static int decode(const void *payload, uint32_t len, topo_op *op)
{
    reader r = {payload, (const unsigned char *)payload + len, false};
    memset(op, 0, sizeof(*op));
    op->op = (uint8_t)get_le(&r, 1);
    op->id = (uint32_t)get_le(&r, 4);
    if (op->op == OP_SPACE_PUT) {
        unsigned flags = (unsigned)get_le(&r, 1);
        op->space = (ff_space_def){
            .id = op->id, .has_capacity = flags & 1, .clamp_at_zero = (flags >> 1) & 1};
        op->space.capacity = (int64_t)get_le(&r, 8);
        get_name(&r, op->space.name);
    } else if (op->op == OP_DOOR_PUT) {
        op->door.id = op->id;
        get_name(&r, op->door.name);
    } else if (op->op == OP_ASSIGN) {
        op->a.doorway_id = (uint32_t)get_le(&r, 4);
        op->a.entry_space_id = (uint32_t)get_le(&r, 4);
        op->a.exit_space_id = (uint32_t)get_le(&r, 4);
        op->a.effective_from = (int64_t)get_le(&r, 8);
    } else if (op->op != OP_SPACE_DEL && op->op != OP_DOOR_DEL) {
        return FF_ECORRUPT;
    }
    return r.bad || r.p != r.end ? FF_ECORRUPT : 0;
}

/* ---- validation: 0 = a change, 1 = nothing to change, < 0 = error ---- */

static bool utf8_ok(const unsigned char *s)
{
    while (*s) {
        int n = *s < 0x80             ? 0
                : (*s & 0xE0) == 0xC0 ? 1
                : (*s & 0xF0) == 0xE0 ? 2
                : (*s & 0xF8) == 0xF0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *s < 0xC2)) return false;
        for (s++; n > 0; n--, s++)
            if ((*s & 0xC0) != 0x80) return false;
    }
    return true;
}

/* Copies a caller's name into a zero-filled buffer; FF_EINVAL unless 1..100 bytes UTF-8. */
static int name_norm(const char *in, char *out)
{
    char tmp[FF_NAME_MAX + 1] = {0};
    size_t n = strnlen(in, FF_NAME_MAX + 1);
    if (n == 0 || n > FF_NAME_MAX) return FF_EINVAL;
    memcpy(tmp, in, n);
    memcpy(out, tmp, sizeof(tmp));
    return utf8_ok((const unsigned char *)out) ? 0 : FF_EINVAL;
}

static int check_space_put(const ff_engine *e, const ff_space_def *d)
{
    if (d->id == 0 || (d->has_capacity && d->capacity < 0)) return FF_EINVAL;
    uint32_t ix = ff__namemap_get(&e->space_names, d->name, space_name_of, e);
    if (ix != FF__NOIX && e->spaces[ix].def.id != d->id) return FF_EEXIST;
    const ff__space *s = ff__space_find(e, d->id);
    if (!s) return 0;
    if (strcmp(s->def.name, d->name) == 0 && s->def.has_capacity == d->has_capacity &&
        s->def.capacity == d->capacity && s->def.clamp_at_zero == d->clamp_at_zero)
        return 1;
    if (s->def.clamp_at_zero != d->clamp_at_zero &&
        (ff__rows_n(&s->rows) > 0 || s->sealed_rows > 0))
        return FF_ECONFLICT;
    return 0;
}

static int check_door_put(const ff_engine *e, const ff_doorway_def *d)
{
    if (d->id == 0) return FF_EINVAL;
    uint32_t ix = ff__namemap_get(&e->doorway_names, d->name, door_name_of, e);
    if (ix != FF__NOIX && e->doorways[ix].def.id != d->id) return FF_EEXIST;
    const ff__doorway *w = doorway_find(e, d->id);
    return w && strcmp(w->def.name, d->name) == 0 ? 1 : 0;
}

static bool same_place(const ff_assignment *a, const ff_assignment *b)
{
    return a->doorway_id == b->doorway_id && a->entry_space_id == b->entry_space_id &&
           a->exit_space_id == b->exit_space_id;
}

static int check_assign(const ff_engine *e, uint32_t dpu_id, const ff_assignment *a)
{
    if (a->entry_space_id && a->entry_space_id == a->exit_space_id) return FF_EINVAL;
    if ((a->doorway_id && !doorway_find(e, a->doorway_id)) ||
        (a->entry_space_id && !ff__space_find(e, a->entry_space_id)) ||
        (a->exit_space_id && !ff__space_find(e, a->exit_space_id)))
        return FF_EREF;
    const ff__dpu *d = ff__dpu_find(e, dpu_id);
    if (!d) return 0;
    const ff_assignment *v = ff__dpu_versions(d);
    for (uint32_t i = 0; i < d->nv; i++)
        if (same_place(&v[i], a) && v[i].effective_from == a->effective_from) return 1;
    if (a->effective_from <= v[d->nv - 1].effective_from) return FF_ECONFLICT;
    if (!e->replaying && a->effective_from <= e->h) return FF_ECONFLICT;
    return 0;
}

static int check(const ff_engine *e, const topo_op *op)
{
    switch (op->op) {
    case OP_SPACE_PUT:
        return check_space_put(e, &op->space);
    case OP_DOOR_PUT:
        return check_door_put(e, &op->door);
    case OP_ASSIGN:
        return check_assign(e, op->id, &op->a);
    case OP_SPACE_DEL: {
        const ff__space *s = ff__space_find(e, op->id);
        return !s ? FF_ENOTFOUND : s->refs ? FF_ECONFLICT : 0;
    }
    case OP_DOOR_DEL: {
        const ff__doorway *w = doorway_find(e, op->id);
        return !w ? FF_ENOTFOUND : w->refs ? FF_ECONFLICT : 0;
    }
    }
    return FF_EINVAL;
}

/* ---- application ---- */

/* Grows the space slots like ff_xgrow, but cache-line aligned (engine_int.h). */
static void spaces_grow(ff_engine *e, size_t need)
{
    if (need <= e->capspaces) return;
    size_t cap = e->capspaces ? e->capspaces : 16;
    while (cap < need) cap *= 2;
    ff__space *ns = aligned_alloc(_Alignof(ff__space), cap * sizeof(*ns));
    if (!ns) FF_PANIC("out of memory");
    if (e->nspaces) memcpy(ns, e->spaces, e->nspaces * sizeof(*ns));
    free(e->spaces);
    e->spaces = ns;
    e->capspaces = cap;
}

static void apply_space_put(ff_engine *e, const ff_space_def *d)
{
    ff__space *s = ff__space_find(e, d->id);
    if (!s) {
        spaces_grow(e, e->nspaces + 1);
        s = &e->spaces[e->nspaces];
        memset(s, 0, sizeof(*s));
        s->live = true;
        ff__idmap_put(&e->space_ix, d->id, (uint32_t)e->nspaces++);
        e->live_spaces++;
    } else if (strcmp(s->def.name, d->name) != 0) {
        ff__namemap_del(&e->space_names, s->def.name, (uint32_t)(s - e->spaces));
    } else {
        s->def = *d;
        s->rows.clamp = d->clamp_at_zero;
        return;
    }
    s->def = *d;
    s->rows.clamp = d->clamp_at_zero;
    ff__namemap_put(&e->space_names, d->name, (uint32_t)(s - e->spaces));
}

static void apply_space_del(ff_engine *e, uint32_t id)
{
    ff__space *s = ff__space_find(e, id);
    uint32_t ix = (uint32_t)(s - e->spaces);
    ff__namemap_del(&e->space_names, s->def.name, ix);
    ff__idmap_del(&e->space_ix, id);
    ff__rows_free(&s->rows);
    s->live = false;
    e->live_spaces--;
}

static void apply_door_put(ff_engine *e, const ff_doorway_def *d)
{
    ff__doorway *w = doorway_find(e, d->id);
    if (!w) {
        e->doorways =
            ff_xgrow(e->doorways, &e->capdoorways, e->ndoorways + 1, sizeof(*e->doorways));
        w = &e->doorways[e->ndoorways];
        memset(w, 0, sizeof(*w));
        w->live = true;
        ff__idmap_put(&e->doorway_ix, d->id, (uint32_t)e->ndoorways++);
        e->live_doorways++;
    } else {
        ff__namemap_del(&e->doorway_names, w->def.name, (uint32_t)(w - e->doorways));
    }
    w->def = *d;
    ff__namemap_put(&e->doorway_names, d->name, (uint32_t)(w - e->doorways));
}

static void apply_door_del(ff_engine *e, uint32_t id)
{
    ff__doorway *w = doorway_find(e, id);
    ff__namemap_del(&e->doorway_names, w->def.name, (uint32_t)(w - e->doorways));
    ff__idmap_del(&e->doorway_ix, id);
    w->live = false;
    e->live_doorways--;
}

static ff__dpu *dpu_new(ff_engine *e, uint32_t id)
{
    e->dpus = ff_xgrow(e->dpus, &e->capdpus, e->ndpus + 1, sizeof(*e->dpus));
    ff__dpu *d = &e->dpus[e->ndpus];
    memset(d, 0, sizeof(*d));
    d->id = id;
    ff__idmap_put(&e->dpu_ix, id, (uint32_t)e->ndpus++);
    return d;
}

/* Makes room for version nv (growing the block when its capacity is reached). */
static void versions_reserve(ff__dpu *d)
{
    size_t oc = d->nv ? ff__vcap(d->nv) : 0, nc = ff__vcap(d->nv + 1);
    if (d->blk && nc == oc) return;
    unsigned char *nb = ff_xmalloc(nc * (sizeof(ff_assignment) + 2 * sizeof(uint32_t)));
    if (d->blk) {
        memcpy(nb, d->blk, d->nv * sizeof(ff_assignment));
        memcpy(nb + nc * sizeof(ff_assignment), d->blk + oc * sizeof(ff_assignment),
               d->nv * 2 * sizeof(uint32_t));
        free(d->blk);
    }
    d->blk = nb;
}

static uint32_t space_slot(ff_engine *e, uint32_t id)
{
    return id ? ff__idmap_get(&e->space_ix, id) : FF__NOIX;
}

static void place_rows(ff_engine *e, ff__dpu *d, const ff__row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ff_event ev = {
            .dpu_id = d->id, .direction = rows[i].dir, .seq = rows[i].seq, .ts = rows[i].ts};
        ff__apply_event(e, d, &ev);
    }
}

/* Takes the DPU's rows with ts >= from out of where version vi put them. */
static void take_rows(ff_engine *e, ff__dpu *d, uint32_t vi, int64_t from)
{
    uint32_t *sl = ff__dpu_slots(d, vi);
    e->nscratch = 0;
    if (sl[0] == FF__NOIX && sl[1] == FF__NOIX) {
        if (d->orphans)
            ff__rows_take_dpu(d->orphans, d->id, from, &e->scratch, &e->nscratch, &e->capscratch);
        return;
    }
    for (int k = 0; k < 2; k++) {
        if (sl[k] == FF__NOIX) continue;
        size_t before = e->nscratch;
        ff__rows_take_dpu(&e->spaces[sl[k]].rows, d->id, from, &e->scratch, &e->nscratch,
                          &e->capscratch);
        if (k == 1 && sl[0] != FF__NOIX) e->nscratch = before; /* same events twice */
    }
}

static void apply_assign(ff_engine *e, uint32_t dpu_id, const ff_assignment *a)
{
    ff__dpu *d = ff__dpu_find(e, dpu_id);
    if (!d) d = dpu_new(e, dpu_id);
    versions_reserve(d);
    uint32_t vi = d->nv++;
    ff__dpu_versions(d)[vi] = *a;
    uint32_t *sl = ff__dpu_slots(d, vi);
    sl[0] = space_slot(e, a->entry_space_id);
    sl[1] = space_slot(e, a->exit_space_id);
    d->last_from = a->effective_from; /* the copy ingest reads (engine_int.h) */
    d->last_sl[0] = sl[0];
    d->last_sl[1] = sl[1];
    if (a->doorway_id) doorway_find(e, a->doorway_id)->refs++;
    for (int k = 0; k < 2; k++)
        if (sl[k] != FF__NOIX) e->spaces[sl[k]].refs++;
    if (vi == 0) return;
    take_rows(e, d, vi - 1, a->effective_from);
    place_rows(e, d, e->scratch, e->nscratch);
    e->nscratch = 0;
}

static void apply(ff_engine *e, const topo_op *op)
{
    e->topo_gen++; /* the checkpoint's snapshot is out of date (engine/checkpoint.c) */
    switch (op->op) {
    case OP_SPACE_PUT:
        apply_space_put(e, &op->space);
        break;
    case OP_SPACE_DEL:
        apply_space_del(e, op->id);
        break;
    case OP_DOOR_PUT:
        apply_door_put(e, &op->door);
        break;
    case OP_DOOR_DEL:
        apply_door_del(e, op->id);
        break;
    case OP_ASSIGN:
        apply_assign(e, op->id, &op->a);
        break;
    }
}

/* Checks, logs and applies op. Returns 0 when changed, 1 when nothing changed. */
static int commit(ff_engine *e, const topo_op *op)
{
    int rc = check(e, op);
    if (rc) return rc;
    if (e->log) {
        unsigned char buf[TOPO_MAX];
        uint64_t lsn;
        rc = ff_log_append(e->log, FF_LOG_TOPO, buf, encode(op, buf), &lsn);
        if (rc < 0) return rc;
    }
    apply(e, op);
    return 0;
}

int ff__topo_replay(ff_engine *e, const void *payload, uint32_t len)
{
    topo_op op;
    if (decode(payload, len, &op) < 0) return FF_ECORRUPT;
    if (op.op == OP_SPACE_PUT && name_norm(op.space.name, op.space.name) < 0) return FF_ECORRUPT;
    if (op.op == OP_DOOR_PUT && name_norm(op.door.name, op.door.name) < 0) return FF_ECORRUPT;
    int rc = check(e, &op);
    if (rc < 0) return FF_ECORRUPT;
    if (rc == 0) apply(e, &op);
    e->topo_replayed++;
    return 0;
}

int ff__topo_dump(const ff_engine *e, ff__topo_op_cb cb, void *ctx)
{
    unsigned char buf[TOPO_MAX];
    int rc = 0;
    for (size_t i = 0; i < e->nspaces && !rc; i++)
        if (e->spaces[i].live) {
            topo_op op = {.op = OP_SPACE_PUT, .id = e->spaces[i].def.id, .space = e->spaces[i].def};
            rc = cb(ctx, buf, encode(&op, buf));
        }
    for (size_t i = 0; i < e->ndoorways && !rc; i++)
        if (e->doorways[i].live) {
            topo_op op = {
                .op = OP_DOOR_PUT, .id = e->doorways[i].def.id, .door = e->doorways[i].def};
            rc = cb(ctx, buf, encode(&op, buf));
        }
    for (size_t i = 0; i < e->ndpus && !rc; i++) {
        const ff__dpu *d = &e->dpus[i];
        for (uint32_t k = 0; k < d->nv && !rc; k++) {
            topo_op op = {.op = OP_ASSIGN, .id = d->id, .a = ff__dpu_versions(d)[k]};
            rc = cb(ctx, buf, encode(&op, buf));
        }
    }
    return rc;
}

/* ---- the public topology calls ---- */

int ff_engine_space_put(ff_engine *e, const ff_space_def *def, bool *created)
{
    topo_op op = {.op = OP_SPACE_PUT, .id = def->id, .space = *def};
    if (created) *created = false;
    int rc = name_norm(def->name, op.space.name);
    if (rc < 0) return rc;
    if (!op.space.has_capacity) op.space.capacity = 0;
    bool is_new = !ff__space_find(e, def->id);
    rc = commit(e, &op);
    if (rc < 0) return rc;
    if (created) *created = rc == 0 && is_new;
    return 0;
}

int ff_engine_space_delete(ff_engine *e, uint32_t id)
{
    topo_op op = {.op = OP_SPACE_DEL, .id = id};
    int rc = commit(e, &op);
    return rc < 0 ? rc : 0;
}

int ff_engine_doorway_put(ff_engine *e, const ff_doorway_def *def, bool *created)
{
    topo_op op = {.op = OP_DOOR_PUT, .id = def->id, .door = *def};
    if (created) *created = false;
    int rc = name_norm(def->name, op.door.name);
    if (rc < 0) return rc;
    bool is_new = !doorway_find(e, def->id);
    rc = commit(e, &op);
    if (rc < 0) return rc;
    if (created) *created = rc == 0 && is_new;
    return 0;
}

int ff_engine_doorway_delete(ff_engine *e, uint32_t id)
{
    topo_op op = {.op = OP_DOOR_DEL, .id = id};
    int rc = commit(e, &op);
    return rc < 0 ? rc : 0;
}

int ff_engine_dpu_assign(ff_engine *e, uint32_t dpu_id, const ff_assignment *a,
                         bool has_effective_from, bool *added)
{
    topo_op op = {.op = OP_ASSIGN, .id = dpu_id, .a = *a};
    if (added) *added = false;
    const ff__dpu *d = ff__dpu_find(e, dpu_id);
    if (!has_effective_from) {
        if (d && same_place(&ff__dpu_versions(d)[d->nv - 1], a)) return 0;
        op.a.effective_from = d ? ff__now(e) : FF_TS_MIN;
    }
    int rc = commit(e, &op);
    if (rc < 0) return rc;
    if (added) *added = rc == 0;
    return 0;
}

/* ---- read access ---- */

static uint32_t smallest_unused(uint64_t *ids, size_t n)
{
    qsort(ids, n, sizeof(*ids), ff__cmp_u64);
    uint32_t want = 1;
    for (size_t i = 0; i < n && (uint32_t)(ids[i] >> 32) <= want; i++)
        if ((uint32_t)(ids[i] >> 32) == want) want++;
    return want;
}

uint32_t ff_engine_space_next_id(const ff_engine *e)
{
    uint64_t *ids = ff_xmalloc((e->nspaces + 1) * sizeof(*ids));
    size_t n = 0;
    for (size_t i = 0; i < e->nspaces; i++)
        if (e->spaces[i].live) ids[n++] = (uint64_t)e->spaces[i].def.id << 32;
    uint32_t id = smallest_unused(ids, n);
    free(ids);
    return id;
}

uint32_t ff_engine_doorway_next_id(const ff_engine *e)
{
    uint64_t *ids = ff_xmalloc((e->ndoorways + 1) * sizeof(*ids));
    size_t n = 0;
    for (size_t i = 0; i < e->ndoorways; i++)
        if (e->doorways[i].live) ids[n++] = (uint64_t)e->doorways[i].def.id << 32;
    uint32_t id = smallest_unused(ids, n);
    free(ids);
    return id;
}

int ff_engine_doorway_get(const ff_engine *e, uint32_t id, ff_doorway_def *out)
{
    const ff__doorway *w = doorway_find(e, id);
    if (!w) return FF_ENOTFOUND;
    *out = w->def;
    return 0;
}

uint32_t ff_engine_space_by_name(const ff_engine *e, const char *name)
{
    uint32_t ix = ff__namemap_get(&e->space_names, name, space_name_of, e);
    return ix == FF__NOIX ? 0 : e->spaces[ix].def.id;
}

uint32_t ff_engine_doorway_by_name(const ff_engine *e, const char *name)
{
    uint32_t ix = ff__namemap_get(&e->doorway_names, name, door_name_of, e);
    return ix == FF__NOIX ? 0 : e->doorways[ix].def.id;
}

void ff_engine_doorways(const ff_engine *e, ff_doorway_cb cb, void *ctx)
{
    uint64_t *ids = ff_xmalloc((e->ndoorways + 1) * sizeof(*ids));
    size_t n = 0;
    for (size_t i = 0; i < e->ndoorways; i++)
        if (e->doorways[i].live) ids[n++] = (uint64_t)e->doorways[i].def.id << 32 | i;
    qsort(ids, n, sizeof(*ids), ff__cmp_u64);
    for (size_t i = 0; i < n; i++)
        if (cb(ctx, &e->doorways[(uint32_t)ids[i]].def)) break;
    free(ids);
}

void ff_engine_dpus(const ff_engine *e, ff_dpu_cb cb, void *ctx)
{
    uint64_t *ids = ff_xmalloc((e->ndpus + 1) * sizeof(*ids));
    for (size_t i = 0; i < e->ndpus; i++) ids[i] = (uint64_t)e->dpus[i].id << 32 | i;
    qsort(ids, e->ndpus, sizeof(*ids), ff__cmp_u64);
    for (size_t i = 0; i < e->ndpus; i++) {
        const ff__dpu *d = &e->dpus[(uint32_t)ids[i]];
        if (cb(ctx, d->id, ff__dpu_versions(d), d->nv)) break;
    }
    free(ids);
}

int ff_engine_dpu_get(const ff_engine *e, uint32_t dpu_id, const ff_assignment **versions,
                      size_t *n)
{
    const ff__dpu *d = ff__dpu_find(e, dpu_id);
    if (!d) return FF_ENOTFOUND;
    *versions = ff__dpu_versions(d);
    *n = d->nv;
    return 0;
}

size_t ff_engine_space_count(const ff_engine *e)
{
    return e->live_spaces;
}

size_t ff_engine_dpu_count(const ff_engine *e)
{
    return e->ndpus;
}

void ff__topo_free(ff_engine *e)
{
    for (size_t i = 0; i < e->nspaces; i++) {
        ff__rows_free(&e->spaces[i].rows);
    }
    for (size_t i = 0; i < e->ndpus; i++) {
        free(e->dpus[i].blk);
        if (e->dpus[i].orphans) ff__rows_free(e->dpus[i].orphans);
        free(e->dpus[i].orphans);
    }
    free(e->spaces);
    free(e->doorways);
    free(e->dpus);
    free(e->scratch);
    ff__idmap_free(&e->space_ix);
    ff__idmap_free(&e->doorway_ix);
    ff__idmap_free(&e->dpu_ix);
    ff__namemap_free(&e->space_names);
    ff__namemap_free(&e->doorway_names);
}

/* ---- invariants ---- */

static void check_maps(const ff_engine *e)
{
    for (size_t i = 0; i < e->nspaces; i++) { /* T1 */
        const ff__space *s = &e->spaces[i];
        if (!s->live) continue;
        FF_ASSERT(ff__idmap_get(&e->space_ix, s->def.id) == i);
        FF_ASSERT(ff__namemap_get(&e->space_names, s->def.name, space_name_of, e) == i);
        FF_ASSERT(s->rows.clamp == s->def.clamp_at_zero);
    }
    FF_ASSERT(e->space_ix.n == e->live_spaces && e->space_names.n == e->live_spaces);
    for (size_t i = 0; i < e->ndoorways; i++) {
        const ff__doorway *w = &e->doorways[i];
        if (!w->live) continue;
        FF_ASSERT(ff__idmap_get(&e->doorway_ix, w->def.id) == i);
        FF_ASSERT(ff__namemap_get(&e->doorway_names, w->def.name, door_name_of, e) == i);
    }
    FF_ASSERT(e->doorway_ix.n == e->live_doorways && e->doorway_names.n == e->live_doorways);
    for (size_t i = 0; i < e->ndpus; i++) FF_ASSERT(ff__idmap_get(&e->dpu_ix, e->dpus[i].id) == i);
    FF_ASSERT(e->dpu_ix.n == e->ndpus);
}

static void check_versions(const ff_engine *e, uint32_t *srefs, uint32_t *drefs)
{
    for (size_t i = 0; i < e->ndpus; i++) { /* T2 */
        const ff__dpu *d = &e->dpus[i];
        const ff_assignment *v = ff__dpu_versions(d);
        FF_ASSERT(d->nv >= 1);
        for (uint32_t k = 0; k < d->nv; k++) {
            const uint32_t *sl = ff__dpu_slots(d, k);
            if (k == d->nv - 1) /* the copy in the ff__dpu */
                FF_ASSERT(d->last_from == v[k].effective_from && d->last_sl[0] == sl[0] &&
                          d->last_sl[1] == sl[1]);
            FF_ASSERT(k == 0 || v[k - 1].effective_from < v[k].effective_from);
            FF_ASSERT(!v[k].entry_space_id || v[k].entry_space_id != v[k].exit_space_id);
            FF_ASSERT(sl[0] == (v[k].entry_space_id
                                    ? ff__idmap_get(&e->space_ix, v[k].entry_space_id)
                                    : FF__NOIX));
            FF_ASSERT(sl[1] == (v[k].exit_space_id ? ff__idmap_get(&e->space_ix, v[k].exit_space_id)
                                                   : FF__NOIX));
            for (int j = 0; j < 2; j++)
                if (sl[j] != FF__NOIX) srefs[sl[j]]++;
            if (v[k].doorway_id) {
                uint32_t w = ff__idmap_get(&e->doorway_ix, v[k].doorway_id);
                FF_ASSERT(w != FF__NOIX);
                drefs[w]++;
            }
        }
    }
}

/* T4 for one space. */
static void check_attribution(const ff_engine *e, uint32_t slot)
{
    const ff__rows *r = &e->spaces[slot].rows;
    for (size_t i = 0, n = ff__rows_n(r); i < n; i++) {
        const ff__row *x = ff__rows_at(r, i);
        const ff__dpu *d = ff__dpu_find(e, x->dpu);
        FF_ASSERT(d);
        int vi = ff__dpu_version_at(d, x->ts);
        FF_ASSERT(vi >= 0);
        const uint32_t *sl = ff__dpu_slots(d, (uint32_t)vi);
        FF_ASSERT((sl[0] == slot && x->delta == x->dir) || (sl[1] == slot && x->delta == -x->dir));
    }
}

static void check_orphans(const ff_engine *e, const ff__dpu *d)
{
    for (size_t i = 0, n = d->orphans ? ff__rows_n(d->orphans) : 0; i < n; i++) {
        const ff__row *x = ff__rows_at(d->orphans, i);
        FF_ASSERT(x->dpu == d->id && x->delta == 0);
        int vi = ff__dpu_version_at(d, x->ts);
        const uint32_t *sl = vi >= 0 ? ff__dpu_slots(d, (uint32_t)vi) : NULL;
        FF_ASSERT(!sl || (sl[0] == FF__NOIX && sl[1] == FF__NOIX));
    }
}

void ff__topo_check(const ff_engine *e)
{
    check_maps(e);
    uint32_t *srefs = ff_xcalloc(e->nspaces + 1, sizeof(*srefs));
    uint32_t *drefs = ff_xcalloc(e->ndoorways + 1, sizeof(*drefs));
    check_versions(e, srefs, drefs);
    for (size_t i = 0; i < e->nspaces; i++) { /* T3 */
        if (!e->spaces[i].live) continue;
        FF_ASSERT(e->spaces[i].refs == srefs[i]);
        check_attribution(e, (uint32_t)i);
    }
    for (size_t i = 0; i < e->ndoorways; i++)
        if (e->doorways[i].live) FF_ASSERT(e->doorways[i].refs == drefs[i]);
    for (size_t i = 0; i < e->ndpus; i++) check_orphans(e, &e->dpus[i]);
    free(srefs);
    free(drefs);
}
