/*
 * api_events.c -- POST /v1/events: a JSON object or array, or CSV (Content-Type
 * text/csv), admitted in chunks of one log record each, at most EVENTS_PER_TURN a loop
 * turn (a large body goes on in later turns: ff__api_more); the answer counts accepted,
 * duplicates and late events and lists every refused item by index (and CSV line) in
 * item order, and is sent once the accepted events are durable.
 */
#include "net/api_int.h"
#include "net/csv.h"
#include "net/timefmt.h"

#include <string.h>
#include <strings.h>

#define EVENTS_CHUNK    4096
#define EVENTS_PER_TURN (4 * EVENTS_CHUNK) /* 10-25 ms of the loop; the rest on later turns */
/* A body up to this size takes its first step at once (most are answered in the turn
 * that read them); a larger one has all its steps in later turns, so that the requests
 * one turn reads take one step in all, not one each. */
#define EVENTS_AT_ONCE_BYTES (256u << 10)

/* ---- Events ------------------------------------------------------------------------ */

/* Events of one request with where each came from, admitted in chunks. */
typedef struct refusal {
    uint32_t index; /* item index in the request */
    uint64_t line;  /* CSV line, 0 for JSON */
    char reason[160];
} refusal;

typedef struct ev_batch {
    ff_event *ev;
    uint32_t *index;
    uint64_t *line;
    size_t n, cap;
    refusal *refused;
    size_t nrefused, refcap;
    ff_ingest_result total;
} ev_batch;

static void batch_refuse(ev_batch *b, uint32_t index, uint64_t line, const char *reason)
{
    b->refused = ff_xgrow(b->refused, &b->refcap, b->nrefused + 1, sizeof(*b->refused));
    refusal *f = &b->refused[b->nrefused++];
    f->index = index;
    f->line = line;
    snprintf(f->reason, sizeof(f->reason), "%s", reason);
}

static int refusal_cmp(const void *a, const void *b)
{
    const refusal *x = a, *y = b;
    return (x->index > y->index) - (x->index < y->index);
}

static void write_refused(ff_buf *out, ev_batch *b)
{
    if (b->nrefused) qsort(b->refused, b->nrefused, sizeof(*b->refused), refusal_cmp);
    for (size_t i = 0; i < b->nrefused; i++) {
        refusal *f = &b->refused[i];
        if (i) ff_buf_adds(out, ",");
        ff_buf_adds(out, "{\"index\":");
        ff_buf_addu(out, f->index);
        if (f->line) {
            ff_buf_adds(out, ",\"line\":");
            ff_buf_addu(out, f->line);
        }
        ff_buf_adds(out, ",\"reason\":");
        ff_json_str(out, f->reason);
        ff_buf_adds(out, "}");
    }
}

static void batch_push(ev_batch *b, const ff_event *ev, uint32_t index, uint64_t line)
{
    if (b->n == b->cap) {
        size_t cap = b->cap;
        b->ev = ff_xgrow(b->ev, &cap, b->n + 1, sizeof(*b->ev));
        b->index = ff_xrealloc(b->index, cap * sizeof(*b->index));
        b->line = ff_xrealloc(b->line, cap * sizeof(*b->line));
        b->cap = cap;
    }
    b->ev[b->n] = *ev;
    b->index[b->n] = index;
    b->line[b->n] = line;
    b->n++;
}

static void batch_release(ev_batch *b)
{
    free(b->ev);
    free(b->index);
    free(b->line);
    free(b->refused);
}

/* Admits the collected events from *taken on, at most `most`, in chunks of one log
 * record each, and advances *taken. On failure *taken says how many events (a prefix)
 * were admitted before it: those stay taken. */
static int batch_ingest(ff_server *s, ev_batch *b, size_t *taken, size_t most)
{
    uint8_t outcome[EVENTS_CHUNK];
    size_t end = b->n - *taken < most ? b->n : *taken + most;
    for (size_t off = *taken; off < end; off += EVENTS_CHUNK) {
        size_t n = end - off < EVENTS_CHUNK ? end - off : EVENTS_CHUNK;
        ff_ingest_result r;
        int rc = ff_engine_ingest(s->eng, b->ev + off, n, outcome, &r);
        if (rc < 0) return rc;
        *taken = off + n;
        s->m.http_events += n;
        b->total.accepted += r.accepted;
        b->total.duplicates += r.duplicates;
        b->total.late += r.late;
        b->total.refused += r.refused;
        for (size_t i = 0; i < n && r.refused; i++) {
            const char *why = ff_outcome_reason(outcome[i]);
            if (why) batch_refuse(b, b->index[off + i], b->line[off + i], why);
        }
    }
    return 0;
}

/* Reads one JSON event into ev; returns NULL, or why it is refused (in static storage
 * or in scratch[0..n)). */
static const char *json_event(json_t *o, ff_event *ev, char *scratch, size_t n)
{
    memset(ev, 0, sizeof(*ev));
    if (!json_is_object(o)) return "invalid: an event must be a JSON object";
    json_t *id = json_object_get(o, "dpu_id"), *ts = json_object_get(o, "timestamp");
    json_t *dir = json_object_get(o, "direction"), *seq = json_object_get(o, "seq");
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > UINT32_MAX)
        return "invalid: 'dpu_id' must be an integer from 0 to 4294967295";
    if (!json_is_string(ts)) return "invalid: 'timestamp' must be an RFC 3339 time";
    if (ff_time_parse(json_string_value(ts), json_string_length(ts), &ev->ts) < 0) {
        snprintf(scratch, n, "invalid: 'timestamp' must be an RFC 3339 time (%s)",
                 ff_time_error(json_string_value(ts), json_string_length(ts)));
        return scratch;
    }
    if (!json_is_integer(dir) || (json_integer_value(dir) != 1 && json_integer_value(dir) != -1))
        return "invalid: 'direction' must be 1 or -1";
    if (seq && !json_is_null(seq) &&
        (!json_is_integer(seq) || json_integer_value(seq) < 0 || json_integer_value(seq) > 65535))
        return "invalid: 'seq' must be an integer from 0 to 65535";
    ev->dpu_id = (uint32_t)json_integer_value(id);
    ev->direction = (int8_t)json_integer_value(dir);
    ev->seq = seq && json_is_integer(seq) ? (uint16_t)json_integer_value(seq) : 0;
    return NULL;
}

static bool collect_json(const ff_api_req *q, ff_api_reply *r, ev_batch *b)
{
    json_t *doc = ff__api_parse_body(q, r), *it;
    if (doc == NULL) return false;
    if (!json_is_array(doc) && !json_is_object(doc)) {
        json_decref(doc);
        BAD_REQUEST(r, "events must be a JSON object or an array of objects");
        return false;
    }
    size_t i;
    ff_event ev;
    char scratch[160];
    if (json_is_object(doc)) {
        const char *why = json_event(doc, &ev, scratch, sizeof scratch);
        if (why)
            batch_refuse(b, 0, 0, why);
        else
            batch_push(b, &ev, 0, 0);
    } else {
        json_array_foreach(doc, i, it)
        {
            const char *why = json_event(it, &ev, scratch, sizeof scratch);
            if (why)
                batch_refuse(b, (uint32_t)i, 0, why);
            else
                batch_push(b, &ev, (uint32_t)i, 0);
        }
    }
    json_decref(doc);
    return true;
}

typedef struct csv_ctx {
    ev_batch *b;
    uint32_t row;
} csv_ctx;

static int csv_row(void *ctx, uint64_t line, const ff_event *ev, const char *reason)
{
    csv_ctx *c = ctx;
    char why[160];
    if (ev) {
        batch_push(c->b, ev, c->row++, line);
    } else {
        snprintf(why, sizeof(why), "malformed: %s", reason);
        batch_refuse(c->b, c->row++, line, why);
    }
    return 0;
}

/* A request's events being taken a turn at a time (ff__api_more): JSON is converted
 * whole first (its document is parsed already), CSV is parsed a step at a time from the
 * body, which stays put while the request is not done. */
typedef struct events_more {
    ff_api_more more;
    ev_batch b;     /* the events of this step (JSON: all of them) */
    size_t taken;   /* of b's events */
    size_t earlier; /* events taken in earlier steps (CSV) */
    bool csv;       /* rows left to read in rd */
    ff_csv_reader rd;
    csv_ctx c;
} events_more;

/* Takes up to EVENTS_PER_TURN more events of m; true once the reply is written. */
static bool events_step(ff_server *s, ff_api_more *more, ff_api_reply *r)
{
    events_more *m = (events_more *)more;
    ev_batch *b = &m->b;
    if (m->csv && m->taken == b->n) { /* read the next rows */
        char err[256];
        m->earlier += b->n;
        b->n = m->taken = 0;
        int rc = ff_csv_next(&m->rd, EVENTS_PER_TURN, csv_row, &m->c, err, sizeof(err));
        if (rc < 0) { /* the header: nothing was taken */
            BAD_REQUEST(r, "CSV: %s", err);
            return true;
        }
        m->csv = rc == 0;
    }
    int rc = batch_ingest(s, b, &m->taken, EVENTS_PER_TURN);
    if (rc < 0) {
        /* Events before the failing chunk were taken; say so, and answer only once they
         * are durable, so a client that retries the whole body loses nothing. */
        size_t taken = m->earlier + m->taken;
        ff__api_problem(r, 503, "overloaded", "Service Unavailable",
                        "the log cannot take events: %s; the first %zu events were taken "
                        "(accepted %u, duplicates %u): retrying the request is safe",
                        ff_strerror(rc), taken, b->total.accepted, b->total.duplicates);
        r->wait_durable = taken > 0;
        return true;
    }
    if (m->taken < b->n || m->csv) return false;
    ff_buf_addf(&r->body, "{\"accepted\":%u,\"duplicates\":%u,\"late\":%u,\"refused\":[",
                b->total.accepted, b->total.duplicates, b->total.late);
    write_refused(&r->body, b);
    ff_buf_adds(&r->body, "]}");
    r->wait_durable = true;
    return true;
}

static void events_free(ff_api_more *more)
{
    events_more *m = (events_more *)more;
    batch_release(&m->b);
    free(m);
}

/* The events of one request are taken in order, EVENTS_PER_TURN per loop turn: a large
 * body (16 MiB of CSV is 370,000 events, most of a second) would otherwise hold every
 * other answer and ack. Other requests' events may be taken between two turns'. */
void ff__api_post_events(ff_server *s, const ff_api_req *q, ff_api_reply *r)
{
    events_more *m = ff_xcalloc(1, sizeof(*m));
    m->more = (ff_api_more){.step = events_step, .free = events_free};
    const char *ct = q->header(q->ctx, "Content-Type");
    m->c.b = &m->b;
    if (ct && strncasecmp(ct, "text/csv", 8) == 0) {
        m->csv = true;
        ff_csv_begin(&m->rd, q->body, q->body_len);
    } else if (!collect_json(q, r, &m->b)) {
        batch_release(&m->b);
        free(m);
        return;
    }
    r->more = &m->more;
    if (q->body_len <= EVENTS_AT_ONCE_BYTES) ff__api_more(s, r); /* else all in later turns */
}
