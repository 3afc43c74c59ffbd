/*
 * client_import.c -- `footfall import` (client_import.h).
 *
 * Pipeline. ff_csv_parse() calls row() for every data line; row() appends the event
 * and its line number to the slot being filled. A full slot is dispatched: it gets the
 * next batch_id, joins the tail of the in-flight queue and goes out as one sendmsg()
 * (16-byte header + the slot's events, which on a little-endian host are already the
 * wire records). When all `window` slots are in flight, row() first waits for the ack
 * of the oldest one, which frees it. At the end the last partial slot is dispatched
 * and every remaining ack awaited.
 *
 * Invariants:
 *   1. The in-flight queue holds slots in the order they were last sent on the
 *      current connection, so the next ack is always for the queue's head; an ack with
 *      another batch_id is a protocol error (reconnect).
 *   2. A slot leaves the queue only when its ack says OK or PARTIAL; its counts are then
 *      added to the result exactly once.
 *   3. After a reconnect every slot of the queue is sent again, in order, before any new
 *      one: what the old connection may have taken comes back as duplicates.
 *
 * Failure handling. A send or receive error, a timeout (SO_RCVTIMEO = timeout_ms) or a
 * bad ack closes the connection; the client reconnects with backoff (100 ms doubling to
 * 2 s) and resends the queue. opts.retries failures in a row without an ack in between
 * end the import with an error. An ack "overloaded" (status 3) means the frame was not
 * taken: it moves to the queue's tail and is sent again after a pause. An ack
 * "malformed" (status 2) cannot happen for frames this code builds and ends the import.
 */
#include "net/client_import.h"

#include "net/client_fmt.h"
#include "net/csv.h"
#include "net/timefmt.h"
#include "net/wire.h"

#include <jansson.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define ACK_BUF (FF_ACK_SIZE * 256)

void ff_import_opts_default(ff_import_opts *o)
{
    memset(o, 0, sizeof *o);
    ff_endpoint_parse("127.0.0.1:7071", &o->tcp);
    ff_endpoint_parse("127.0.0.1:8080", &o->http);
    o->batch = FF_FRAME_MAX_COUNT;
    o->window = 16;
    o->timeout_ms = 30000;
    o->retries = 8;
    o->resolve = true;
    o->source = "input";
}

typedef struct slot {
    ff_event *ev;
    uint64_t *line;
    size_t n;
    uint64_t batch_id;
    uint8_t hdr[FF_FRAME_HEADER];
} slot;

typedef struct importer {
    const ff_import_opts *o;
    ff_import_result *res;
    int fd;
    slot *slots;
    size_t nslots;
    size_t *queue, qhead, qlen; /* ring of slot indexes in flight (invariant 1) */
    size_t *spare, nspare;      /* free slots */
    slot *cur;                  /* being filled, not in flight */
    uint64_t next_id;
    int failures;
    uint8_t abuf[ACK_BUF];
    size_t alen, aoff;
    char *err;
    size_t errlen;
    /* progress */
    uint64_t est_rows, acked_rows;
    double t0, last_draw;
    bool drawn;
    ff_buf json, raw;
} importer;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&t, &t) < 0 && errno == EINTR) {
    }
}

/* ---- issues and reasons ---------------------------------------------------------------- */

static uint16_t intern(ff_import_result *res, const char *reason)
{
    for (size_t i = 0; i < res->nreasons; i++)
        if (strcmp(res->reasons[i], reason) == 0) return (uint16_t)i;
    if (res->nreasons == UINT16_MAX) return (uint16_t)(res->nreasons - 1);
    res->reasons =
        ff_xgrow(res->reasons, &res->reasons_cap, res->nreasons + 1, sizeof *res->reasons);
    res->reasons[res->nreasons] = ff_xstrdup(reason);
    return (uint16_t)res->nreasons++;
}

void ff_import_add_issue(ff_import_result *res, int kind, uint64_t line, uint64_t line_end,
                         uint32_t count, const char *reason)
{
    res->issues = ff_xgrow(res->issues, &res->issues_cap, res->nissues + 1, sizeof *res->issues);
    res->issues[res->nissues++] = (ff_import_issue){.line = line,
                                                    .line_end = line_end,
                                                    .count = count,
                                                    .reason = intern(res, reason),
                                                    .kind = (uint8_t)kind};
}

static int issue_cmp(const void *a, const void *b)
{
    const ff_import_issue *x = a, *y = b;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return (x->kind > y->kind) - (x->kind < y->kind);
}

void ff_import_result_release(ff_import_result *res)
{
    free(res->issues);
    for (size_t i = 0; i < res->nreasons; i++) free(res->reasons[i]);
    free(res->reasons);
    memset(res, 0, sizeof *res);
}

/* ---- JSON resend (pure parts) ---------------------------------------------------------- */

void ff_import_events_json(ff_buf *out, const ff_event *ev, size_t n)
{
    char t[FF_TIME_STRLEN];
    ff_buf_reserve(out, n * 96 + 2);
    ff_buf_add(out, "[", 1);
    for (size_t i = 0; i < n; i++) {
        size_t tl = ff_time_format(ev[i].ts, t);
        ff_buf_adds(out, i ? ",{\"dpu_id\":" : "{\"dpu_id\":");
        ff_buf_addu(out, ev[i].dpu_id);
        ff_buf_adds(out, ",\"timestamp\":\"");
        ff_buf_add(out, t, tl);
        ff_buf_adds(out, "\",\"direction\":");
        ff_buf_addi(out, ev[i].direction);
        ff_buf_adds(out, ",\"seq\":");
        ff_buf_addu(out, ev[i].seq);
        ff_buf_add(out, "}", 1);
    }
    ff_buf_add(out, "]", 1);
}

int ff_import_apply_answer(ff_import_result *res, const char *body, size_t len,
                           const uint64_t *lines, size_t n, uint64_t *accepted)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    json_t *acc = json_object_get(doc, "accepted"), *ref = json_object_get(doc, "refused");
    if (!json_is_integer(acc) || !json_is_array(ref)) {
        json_decref(doc);
        return FF_EFORMAT;
    }
    *accepted = (uint64_t)json_integer_value(acc);
    int count = 0;
    size_t i;
    json_t *it;
    json_array_foreach(ref, i, it)
    {
        json_t *ix = json_object_get(it, "index"), *why = json_object_get(it, "reason");
        if (!json_is_integer(ix) || json_integer_value(ix) < 0 ||
            (uint64_t)json_integer_value(ix) >= n)
            continue;
        ff_import_add_issue(res, FF_ISSUE_REFUSED, lines[json_integer_value(ix)], 0, 1,
                            json_is_string(why) ? json_string_value(why) : "refused");
        count++;
    }
    json_decref(doc);
    return count;
}

/* ---- progress ---------------------------------------------------------------------------- */

static void progress(importer *im, bool final)
{
    if (!im->o->progress) return;
    double t = now_s();
    if (!final && t - im->last_draw < 0.1) return;
    im->last_draw = t;
    if (final) {
        if (im->drawn) fputs("\r\033[K", stderr);
        return;
    }
    uint64_t total = im->est_rows > im->acked_rows ? im->est_rows : im->acked_rows;
    double f = total ? (double)im->acked_rows / (double)total : 1.0;
    char bar[31];
    int fill = (int)(f * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    double el = t - im->t0;
    fprintf(stderr, "\r%3d%% [%s] %llu/%llu rows  %.0f rows/s\033[K", (int)(f * 100), bar,
            (unsigned long long)im->acked_rows, (unsigned long long)total,
            el > 0 ? (double)im->acked_rows / el : 0.0);
    im->drawn = true;
}

/* ---- connection ----------------------------------------------------------------------- */

/* Sends slot s on the current connection: one sendmsg of header + records. */
static int send_slot(importer *im, slot *s)
{
    struct iovec iov[2] = {{s->hdr, FF_FRAME_HEADER}, {s->ev, s->n * FF_FRAME_RECORD}};
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    static uint8_t frame[FF_FRAME_MAX];
    ff_frame_encode(frame, s->batch_id, true, s->ev, s->n);
    iov[1].iov_base = frame + FF_FRAME_HEADER;
#endif
    while (iov[0].iov_len + iov[1].iov_len) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
        ssize_t w = sendmsg(im->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }
        for (int i = 0; i < 2; i++) {
            size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            w -= (ssize_t)k;
        }
    }
    return 0;
}

static slot *queue_at(importer *im, size_t i)
{
    return &im->slots[im->queue[(im->qhead + i) % im->nslots]];
}

static void drop_connection(importer *im)
{
    if (im->fd >= 0) close(im->fd);
    im->fd = -1;
    im->alen = im->aoff = 0;
}

/*
 * Replaces a broken connection (why says how it broke) and sends the whole queue
 * again (invariant 3). 0, or the error that ends the import.
 */
static int reconnect(importer *im, int why)
{
    char msg[256];
    drop_connection(im);
    for (;;) {
        if (++im->failures > im->o->retries) {
            snprintf(im->err, im->errlen, "TCP %s:%s: %s (gave up after %d attempts)",
                     im->o->tcp.host, im->o->tcp.port,
                     why == -EAGAIN ? "no ack within the timeout" : ff_strerror(why),
                     im->o->retries);
            return why < 0 ? why : -EIO;
        }
        int delay = 100 << (im->failures - 1 < 5 ? im->failures - 1 : 5);
        sleep_ms(delay > 2000 ? 2000 : delay);
        im->res->reconnects++;
        int fd = ff_tcp_connect(&im->o->tcp, im->o->timeout_ms, im->o->timeout_ms, msg, sizeof msg);
        if (fd < 0) {
            why = fd;
            continue;
        }
        im->fd = fd;
        int rc = 0;
        for (size_t i = 0; i < im->qlen && rc == 0; i++) {
            rc = send_slot(im, queue_at(im, i));
            im->res->resent_frames += rc == 0;
        }
        if (rc == 0) return 0;
        why = rc;
        drop_connection(im);
    }
}

/* Puts slot s at the queue's tail with a new batch_id and sends it. */
static int enqueue(importer *im, slot *s)
{
    s->batch_id = im->next_id++;
    ff_frame_encode_header(s->hdr, s->batch_id, true, s->n);
    im->queue[(im->qhead + im->qlen++) % im->nslots] = (size_t)(s - im->slots);
    int rc = im->fd >= 0 ? send_slot(im, s) : -ENOTCONN;
    return rc == 0 ? 0 : reconnect(im, rc);
}

static int dispatch(importer *im, slot *s)
{
    im->res->frames++;
    return enqueue(im, s);
}

/* Reads the next ack from the connection. 0 or a negative error. */
static int read_ack(importer *im, ff_ack *a)
{
    while (im->alen - im->aoff < FF_ACK_SIZE) {
        if (im->aoff) {
            memmove(im->abuf, im->abuf + im->aoff, im->alen - im->aoff);
            im->alen -= im->aoff;
            im->aoff = 0;
        }
        ssize_t r = recv(im->fd, im->abuf + im->alen, sizeof im->abuf - im->alen, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        if (r == 0) return -ECONNRESET;
        im->alen += (size_t)r;
    }
    int rc = ff_ack_decode(im->abuf + im->aoff, a);
    im->aoff += FF_ACK_SIZE;
    return rc;
}

/* ---- refusals -------------------------------------------------------------------------- */

static void unresolved(importer *im, slot *s, uint32_t count, const char *why)
{
    ff_import_add_issue(im->res, FF_ISSUE_UNRESOLVED, s->line[0], s->line[s->n - 1], count, why);
}

/* Learns over HTTP which rows of s its ack counted as refused. */
static void resolve(importer *im, slot *s, const ff_ack *a)
{
    char msg[512];
    if (!im->o->resolve || im->res->dedup_off_suspected) {
        unresolved(im, s, a->refused, "reasons not asked for");
        return;
    }
    ff_buf_reset(&im->json);
    ff_buf_reset(&im->raw);
    ff_import_events_json(&im->json, s->ev, s->n);
    ff_http_request q = {.method = "POST",
                         .path = "/v1/events",
                         .token = im->o->token,
                         .content_type = "application/json",
                         .body = im->json.p,
                         .body_len = im->json.len,
                         .timeout_ms = im->o->timeout_ms};
    ff_http_response r;
    if (ff_http_do(&im->o->http, &q, &im->raw, &r, msg, sizeof msg) < 0) {
        unresolved(im, s, a->refused, msg);
        return;
    }
    if (r.status != 200) {
        ff_buf p;
        ff_buf_init(&p);
        ff_buf_adds(&p, "asking POST /v1/events which rows: ");
        ff_cli_problem(&p, &r);
        unresolved(im, s, a->refused, p.p);
        ff_buf_release(&p);
        return;
    }
    uint64_t acc = 0;
    int n = ff_import_apply_answer(im->res, r.body, r.body_len, s->line, s->n, &acc);
    if (n < 0) {
        unresolved(im, s, a->refused, "malformed answer from POST /v1/events");
        return;
    }
    if ((uint32_t)n < a->refused)
        unresolved(im, s, a->refused - (uint32_t)n, "refused over TCP, taken when sent again");
    if (acc > 0 && a->accepted > 0) {
        im->res->dedup_off_suspected = true;
        fprintf(stderr,
                "\nfootfall: warning: the server took %llu rows of lines %llu-%llu a second "
                "time; it seems to run with --dedup=off, so refused rows are no longer resent "
                "to learn their lines (use --no-resolve with such a server)\n",
                (unsigned long long)acc, (unsigned long long)s->line[0],
                (unsigned long long)s->line[s->n - 1]);
    }
}

/* ---- acks ------------------------------------------------------------------------------- */

/* Waits for the ack of the queue's head and handles it. 0 or the error that ends it. */
static int await_ack(importer *im)
{
    for (;;) {
        ff_ack a;
        int rc = im->fd >= 0 ? read_ack(im, &a) : -ENOTCONN;
        if (rc == 0 && a.batch_id != queue_at(im, 0)->batch_id) rc = FF_EFORMAT;
        if (rc < 0) {
            if ((rc = reconnect(im, rc)) < 0) return rc;
            continue;
        }
        slot *s = queue_at(im, 0);
        im->qhead = (im->qhead + 1) % im->nslots;
        im->qlen--;
        if (a.status == FF_ACK_OVERLOAD) {
            /* nothing taken: the same rows again, from the tail, after a pause */
            if (++im->failures > im->o->retries * 8) {
                snprintf(im->err, im->errlen, "TCP %s:%s: the server stays overloaded",
                         im->o->tcp.host, im->o->tcp.port);
                return FF_EOVERLOAD;
            }
            sleep_ms(im->failures < 5 ? 50 << im->failures : 1000);
            im->res->resent_frames++;
            if ((rc = enqueue(im, s)) < 0) return rc;
            continue;
        }
        if (a.status == FF_ACK_MALFORMED || a.status > FF_ACK_OVERLOAD ||
            (uint64_t)a.accepted + a.duplicates + a.refused != s->n) {
            snprintf(im->err, im->errlen,
                     "TCP %s:%s: the server %s the frame of lines %llu-%llu (ack status %u)",
                     im->o->tcp.host, im->o->tcp.port,
                     a.status == FF_ACK_MALFORMED ? "rejected as malformed" : "miscounted",
                     (unsigned long long)s->line[0], (unsigned long long)s->line[s->n - 1],
                     a.status);
            return FF_EFORMAT;
        }
        ff_import_result *res = im->res;
        im->failures = 0;
        res->accepted += a.accepted;
        res->duplicates += a.duplicates;
        res->late += a.late;
        res->refused += a.refused;
        im->acked_rows += s->n;
        if (a.refused) resolve(im, s, &a);
        s->n = 0;
        im->spare[im->nspare++] = (size_t)(s - im->slots);
        progress(im, false);
        return 0;
    }
}

/* ---- the CSV side ------------------------------------------------------------------------ */

static int row(void *ctx, uint64_t line, const ff_event *ev, const char *reason)
{
    importer *im = ctx;
    im->res->rows++;
    if (FF_UNLIKELY(!ev)) {
        im->res->malformed++;
        ff_import_add_issue(im->res, FF_ISSUE_MALFORMED, line, 0, 1, reason);
        return 0;
    }
    if (FF_UNLIKELY(!im->cur)) {
        if (im->nspare == 0) {
            int rc = await_ack(im);
            if (rc < 0) return rc;
        }
        im->cur = &im->slots[im->spare[--im->nspare]];
    }
    slot *s = im->cur;
    s->ev[s->n] = *ev;
    s->line[s->n] = line;
    if (++s->n == im->o->batch) {
        im->cur = NULL;
        return dispatch(im, s);
    }
    return 0;
}

static int stop_at_first_row(void *ctx, uint64_t line, const ff_event *ev, const char *reason)
{
    return 1;
}

static uint64_t count_lines(const char *buf, size_t len)
{
    uint64_t n = 0;
    for (const char *p = buf, *e = buf + len; (p = memchr(p, '\n', (size_t)(e - p))); p++) n++;
    return n;
}

static void importer_init(importer *im, const ff_import_opts *o, ff_import_result *res)
{
    memset(im, 0, sizeof *im);
    im->o = o;
    im->res = res;
    im->fd = -1;
    im->nslots = o->window;
    im->slots = ff_xcalloc(im->nslots, sizeof *im->slots);
    im->queue = ff_xcalloc(im->nslots, sizeof *im->queue);
    im->spare = ff_xcalloc(im->nslots, sizeof *im->spare);
    for (size_t i = 0; i < im->nslots; i++) {
        im->slots[i].ev = ff_xmalloc(o->batch * sizeof(ff_event));
        im->slots[i].line = ff_xmalloc(o->batch * sizeof(uint64_t));
        im->spare[im->nspare++] = im->nslots - 1 - i;
    }
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    im->next_id = ((uint64_t)t.tv_sec << 32) ^ (uint64_t)t.tv_nsec ^ ((uint64_t)getpid() << 16);
    ff_buf_init(&im->json);
    ff_buf_init(&im->raw);
}

static void importer_release(importer *im)
{
    drop_connection(im);
    for (size_t i = 0; i < im->nslots; i++) {
        free(im->slots[i].ev);
        free(im->slots[i].line);
    }
    free(im->slots);
    free(im->queue);
    free(im->spare);
    ff_buf_release(&im->json);
    ff_buf_release(&im->raw);
}

int ff_import_run(const char *buf, size_t len, const ff_import_opts *o, ff_import_result *res,
                  char *err, size_t errlen)
{
    char cerr[256];
    memset(res, 0, sizeof *res);
    if (err && errlen) err[0] = '\0';
    FF_ASSERT(o->batch >= 1 && o->batch <= FF_FRAME_MAX_COUNT && o->window >= 1);
    /* the header first, so a wrong file is reported before any connection */
    int rc = ff_csv_parse(buf, len, stop_at_first_row, NULL, cerr, sizeof cerr);
    if (rc == FF_EFORMAT) {
        snprintf(err, errlen, "%s: %s", o->source, cerr);
        return rc;
    }
    importer im;
    importer_init(&im, o, res);
    im.err = err;
    im.errlen = errlen;
    im.t0 = now_s();
    if (o->progress) im.est_rows = count_lines(buf, len) + (len && buf[len - 1] != '\n') - 1;
    im.fd = ff_tcp_connect(&o->tcp, o->timeout_ms, o->timeout_ms, err, errlen);
    if (im.fd < 0) {
        rc = im.fd;
        goto out;
    }
    rc = ff_csv_parse(buf, len, row, &im, cerr, sizeof cerr);
    if (rc == 0 && im.cur && im.cur->n) {
        slot *s = im.cur;
        im.cur = NULL;
        rc = dispatch(&im, s);
    }
    while (rc == 0 && im.qlen) rc = await_ack(&im);
out:
    progress(&im, true);
    res->elapsed_s = now_s() - im.t0;
    if (res->nissues) qsort(res->issues, res->nissues, sizeof *res->issues, issue_cmp);
    importer_release(&im);
    return rc < 0 ? rc : 0;
}

/* ---- summary ------------------------------------------------------------------------------ */

static void issue_lines(const ff_import_result *res, ff_buf *out, int kind, const char *title,
                        size_t max, size_t *shown)
{
    size_t n = 0;
    for (size_t i = 0; i < res->nissues; i++) n += res->issues[i].kind == kind;
    if (!n) return;
    ff_buf_addf(out, "%s:\n", title);
    size_t k = 0;
    for (size_t i = 0; i < res->nissues; i++) {
        const ff_import_issue *x = &res->issues[i];
        if (x->kind != kind) continue;
        if (max && *shown >= max) {
            ff_buf_addf(out, "  ... and %zu more\n", n - k);
            return;
        }
        if (kind == FF_ISSUE_UNRESOLVED)
            ff_buf_addf(out, "  lines %llu-%llu: %u rows refused, which unknown: %s\n",
                        (unsigned long long)x->line, (unsigned long long)x->line_end, x->count,
                        res->reasons[x->reason]);
        else
            ff_buf_addf(out, "  line %llu: %s\n", (unsigned long long)x->line,
                        res->reasons[x->reason]);
        (*shown)++;
        k++;
    }
}

void ff_import_summary(const ff_import_result *res, ff_buf *out, size_t max_issues)
{
    double rate = res->elapsed_s > 0 ? (double)res->rows / res->elapsed_s : 0;
    ff_buf_addf(out, "rows read    %llu\n", (unsigned long long)res->rows);
    ff_buf_addf(out, "accepted     %llu (late %llu)\n", (unsigned long long)res->accepted,
                (unsigned long long)res->late);
    ff_buf_addf(out, "duplicates   %llu\n", (unsigned long long)res->duplicates);
    ff_buf_addf(out, "refused      %llu\n", (unsigned long long)res->refused);
    ff_buf_addf(out, "malformed    %llu\n", (unsigned long long)res->malformed);
    ff_buf_addf(out, "elapsed      %.3f s (%.0f rows/s)\n", res->elapsed_s, rate);
    if (res->reconnects || res->resent_frames)
        ff_buf_addf(out,
                    "resent       %llu frames after %llu reconnects (rows the server had "
                    "already taken count as duplicates)\n",
                    (unsigned long long)res->resent_frames, (unsigned long long)res->reconnects);
    size_t shown = 0;
    issue_lines(res, out, FF_ISSUE_REFUSED, "refused rows", max_issues, &shown);
    issue_lines(res, out, FF_ISSUE_UNRESOLVED, "refused rows without line numbers", max_issues,
                &shown);
    issue_lines(res, out, FF_ISSUE_MALFORMED, "malformed rows", max_issues, &shown);
}
