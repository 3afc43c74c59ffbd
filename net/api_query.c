/*
 * api_query.c -- the occupancy answers: count (at T or latest), counts buckets, paged
 * occupancy rows, a DPU's events. Written by hand into the reply buffer: these are the
 * hot read paths.
 */
#include "net/api_int.h"
#include "net/timefmt.h"

#include <string.h>

#define ROWS_DEFAULT_LIMIT 1000
#define ROWS_MAX_LIMIT     10000

/* ---- Occupancy routes -------------------------------------------------------------- */

/* A damaged file is a matter for the operator, not only for the client that met it:
 * logged (even with --quiet) the first time a read of it fails. */
static void log_corrupt(void *ctx, const char *message)
{
    fprintf(stderr,
            "footfalld: %s (answers that read it fail with 500; `footfall segments verify` "
            "checks every file)\n",
            message);
}

/* An engine error of a query; a corrupt segment is named (file and offset), an
 * archived range by where archived history ends. */
static void query_problem(ff_server *s, ff_api_reply *r, int rc, const char *what)
{
    char buf[600], t[FF_TIME_STRLEN];
    const char *detail = rc == FF_ECORRUPT ? ff_engine_corrupt_detail(s->eng) : "";
    if (rc == FF_ECORRUPT) {
        s->m.segment_read_errors++;
        ff_engine_corrupt_news(s->eng, log_corrupt, NULL);
    }
    if (detail[0]) snprintf(buf, sizeof(buf), "%s: %s", what, detail);
    if (rc == FF_EARCHIVED) {
        ff_time_format(ff_engine_archived_upto(s->eng), t);
        ff__api_problem(r, 410, "archived", "Gone",
                        "%s: history up to %s is archived; start footfalld with --archive-dir "
                        "to read it (count needs at >= %s, ranges start > %s)",
                        what, t, t, t);
        return;
    }
    ff__api_engine_problem(r, rc, detail[0] ? buf : what);
}

void ff__api_get_count(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id)
{
    int64_t at = 0;
    bool has_at;
    if (!ff__api_time_arg(q, r, "at", false, &at, &has_at)) return;
    ff_count c;
    ff_space_info info;
    if (ff_engine_space_get(s->eng, id, &info) < 0) {
        NOT_FOUND(r, "no space with id %u", id);
        return;
    }
    int rc = ff_engine_count(s->eng, id, has_at, at, &c);
    if (rc < 0) {
        query_problem(s, r, rc, "count");
        return;
    }
    ff_buf_reserve(&r->body, 256);
    ff_buf_adds(&r->body, "{\"space_id\":");
    ff_buf_addu(&r->body, id);
    ff_buf_adds(&r->body, ",\"name\":");
    ff_json_str(&r->body, info.def.name);
    ff_buf_adds(&r->body, ",\"at\":");
    ff_json_time(&r->body, c.at);
    ff_buf_adds(&r->body, ",\"occupancy\":");
    ff_buf_addi(&r->body, c.occupancy);
    ff_buf_adds(&r->body, c.settled ? ",\"status\":\"settled\",\"revision\":"
                                    : ",\"status\":\"pending\",\"revision\":");
    ff_buf_addu(&r->body, c.revision);
    ff_buf_adds(&r->body, "}");
}

static void write_bucket(ff_buf *b, const ff_bucket *k)
{
    ff_buf_adds(b, "{\"start\":");
    ff_json_time(b, k->start);
    ff_buf_adds(b, ",\"end\":");
    ff_json_time(b, k->end);
    ff_buf_addf(b,
                ",\"occupancy_start\":%lld,\"occupancy_end\":%lld,\"min\":%lld,\"max\":%lld,"
                "\"entrances\":%llu,\"exits\":%llu,\"status\":\"%s\"}",
                (long long)k->occupancy_start, (long long)k->occupancy_end, (long long)k->min,
                (long long)k->max, (unsigned long long)k->entrances, (unsigned long long)k->exits,
                ff__api_status_word(k->settled));
}

void ff__api_get_counts(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id)
{
    int64_t start, end, interval = 15 * FF_MINUTE;
    if (!ff__api_time_arg(q, r, "start", true, &start, NULL) ||
        !ff__api_time_arg(q, r, "end", true, &end, NULL))
        return;
    const char *iv = q->arg(q->ctx, "interval");
    if (iv && ff_duration_parse(iv, strlen(iv), &interval) < 0) {
        BAD_REQUEST(r, "query parameter 'interval': '%s' is not a duration like 90s, 15m, 1h, 7d",
                    iv);
        return;
    }
    if (interval <= 0 || end <= start) {
        BAD_REQUEST(r, "need start < end and a positive interval");
        return;
    }
    if ((end - start - 1) / interval + 1 > FF_MAX_BUCKETS) {
        BAD_REQUEST(r, "that is more than %d buckets: use a longer interval or a shorter range",
                    FF_MAX_BUCKETS);
        return;
    }
    ff_space_info info;
    if (ff_engine_space_get(s->eng, id, &info) < 0) {
        NOT_FOUND(r, "no space with id %u", id);
        return;
    }
    ff_bucket *k = ff_xmalloc(sizeof(*k) * FF_MAX_BUCKETS);
    size_t n;
    uint64_t rev;
    int rc = ff_engine_counts(s->eng, id, start, end, interval, k, &n, &rev);
    if (rc < 0) {
        query_problem(s, r, rc, "counts");
        free(k);
        return;
    }
    char ivs[FF_TIME_STRLEN];
    ff_duration_format(interval, ivs);
    ff_buf_reserve(&r->body, n * 230 + 200);
    ff_buf_adds(&r->body, "{\"space_id\":");
    ff_buf_addu(&r->body, id);
    ff_buf_adds(&r->body, ",\"name\":");
    ff_json_str(&r->body, info.def.name);
    ff_buf_addf(&r->body, ",\"interval\":\"%s\",\"revision\":%llu,\"buckets\":[", ivs,
                (unsigned long long)rev);
    for (size_t i = 0; i < n; i++) {
        if (i) ff_buf_adds(&r->body, ",");
        write_bucket(&r->body, &k[i]);
    }
    ff_buf_adds(&r->body, "]}");
    free(k);
}

typedef struct rows_ctx {
    ff_buf *b;
    size_t n, limit;
    ff_row_key last;
    bool more;
} rows_ctx;

static int row_out(void *ctx, const ff_occ_row *w)
{
    rows_ctx *c = ctx;
    if (c->n == c->limit) {
        c->more = true;
        return 1;
    }
    if (c->n++) ff_buf_adds(c->b, ",");
    ff_buf_adds(c->b, "{\"timestamp\":");
    ff_json_time(c->b, w->ts);
    ff_buf_addf(c->b,
                ",\"dpu_id\":%u,\"seq\":%u,\"direction\":%d,\"delta\":%d,\"occupancy\":%lld,"
                "\"status\":\"%s\"}",
                w->dpu_id, w->seq, w->direction, w->delta, (long long)w->occupancy,
                ff__api_status_word(w->settled));
    c->last = (ff_row_key){w->ts, w->dpu_id, w->seq, w->direction};
    return 0;
}

/* Cursors are opaque to clients: 'r' then the row key in hex. */
static void cursor_format(char out[48], const ff_row_key *k)
{
    snprintf(out, 48, "r%016llx%08x%04x%02x", (unsigned long long)k->ts, k->dpu_id, k->seq,
             (unsigned)(uint8_t)k->direction);
}

static bool cursor_parse(const char *s, ff_row_key *k)
{
    unsigned long long ts;
    unsigned dpu, seq, dir;
    if (strlen(s) != 31 || s[0] != 'r') return false;
    if (sscanf(s + 1, "%16llx%8x%4x%2x", &ts, &dpu, &seq, &dir) != 4) return false;
    *k = (ff_row_key){(int64_t)ts, dpu, (uint16_t)seq, (int8_t)(uint8_t)dir};
    return true;
}

void ff__api_get_rows(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id)
{
    int64_t start = FF_TS_MIN, end = FF_TS_MAX;
    if (!ff__api_time_arg(q, r, "start", false, &start, NULL) ||
        !ff__api_time_arg(q, r, "end", false, &end, NULL))
        return;
    rows_ctx c = {.b = &r->body, .limit = ROWS_DEFAULT_LIMIT};
    const char *lim = q->arg(q->ctx, "limit"), *cur = q->arg(q->ctx, "cursor");
    if (lim) {
        char *e;
        long v = strtol(lim, &e, 10);
        if (*e || v < 1 || v > ROWS_MAX_LIMIT) {
            BAD_REQUEST(r, "'limit' must be an integer from 1 to %d", ROWS_MAX_LIMIT);
            return;
        }
        c.limit = (size_t)v;
    }
    ff_row_key after;
    if (cur && cur[0] && !cursor_parse(cur, &after)) {
        BAD_REQUEST(r, "'cursor' is not a cursor this server gave out");
        return;
    }
    ff_buf_adds(&r->body, "{\"space_id\":");
    ff_buf_addu(&r->body, id);
    ff_buf_adds(&r->body, ",\"rows\":[");
    int rc = ff_engine_rows(s->eng, id, start, end, cur && cur[0] ? &after : NULL, row_out, &c);
    if (rc < 0) {
        query_problem(s, r, rc, "space");
        return;
    }
    ff_buf_adds(&r->body, "],\"next\":");
    if (c.more) {
        char cs[48];
        cursor_format(cs, &c.last);
        ff_json_str(&r->body, cs);
    } else {
        ff_buf_adds(&r->body, "null");
    }
    ff_buf_adds(&r->body, "}");
}

typedef struct events_ctx {
    ff_buf *b;
    size_t n, limit;
    bool more;
} events_ctx;

static int event_out(void *ctx, const ff_event *ev)
{
    events_ctx *c = ctx;
    if (c->n == c->limit) {
        c->more = true;
        return 1;
    }
    if (c->n++) ff_buf_adds(c->b, ",");
    ff_buf_adds(c->b, "{\"timestamp\":");
    ff_json_time(c->b, ev->ts);
    ff_buf_addf(c->b, ",\"direction\":%d,\"seq\":%u}", ev->direction, ev->seq);
    return 0;
}

void ff__api_get_dpu_events(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id)
{
    int64_t start = FF_TS_MIN, end = FF_TS_MAX;
    if (!ff__api_time_arg(q, r, "start", false, &start, NULL) ||
        !ff__api_time_arg(q, r, "end", false, &end, NULL))
        return;
    events_ctx c = {.b = &r->body, .limit = 100000};
    ff_buf_adds(&r->body, "{\"dpu_id\":");
    ff_buf_addu(&r->body, id);
    ff_buf_adds(&r->body, ",\"events\":[");
    int rc = ff_engine_dpu_events(s->eng, id, start, end, event_out, &c);
    if (rc == FF_ENOTFOUND) {
        NOT_FOUND(r, "no DPU with id %u", id);
        return;
    }
    if (rc < 0) { /* archived range, corrupt segment */
        query_problem(s, r, rc, "events");
        return;
    }
    ff_buf_addf(&r->body, "],\"truncated\":%s}", c.more ? "true" : "false");
}
