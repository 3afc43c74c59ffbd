/*
 * http.c -- libmicrohttpd driven from the libuv loop.
 *
 * MHD runs without a thread of its own, in epoll mode: its epoll descriptor is watched
 * by a uv_poll handle, and a uv_timer wakes it for its own timeouts; each wake-up calls
 * MHD_run() once, which does bounded work for the ready connections.
 *
 * A request is collected into a buffer (413 past 16 MiB, announced or not), handed to
 * api.c as pure data, and the answer is queued. An answer that must wait for
 * durability (events, topology changes) is built at once, and its connection is
 * suspended with the log position it needs; the server's commit step calls
 * ff__http_release() after its sync, which resumes those connections in order, and
 * MHD calls the handler again, which queues the waiting answer.
 *
 * A large JSON body (PARSE_AWAY bytes or more) is parsed on the thread pool, not on the
 * loop: jansson takes about 5 us per DPU of a topology document, a second for 200,000
 * DPUs, and ingest and every answer would wait for it. The connection is suspended
 * while the parse runs (the job owns the body meanwhile) and resumed when it is done;
 * the handler then gets the parsed document in ff_api_req.doc, and the document is
 * freed on the thread pool once the handler is done with it (freeing is the other
 * tenth of the cost). Only the bodies of authorized requests to the two routes that
 * take large documents are parsed so (ff__api_reads_big_json): anyone else's large
 * body waits for no parse slot and holds none.
 * One parse runs at a time, the others wait their turn in arrival order: the pool's
 * four threads are also the log's sync and the seals', which acks wait for.
 * Only the parse moves: what the document does to the engine is still done on the
 * loop, in one piece, so a document is checked and applied against one state.
 *
 * A handler whose work is too large for one turn (a large body of events) leaves
 * reply.more set: the request stays suspended, and the idle handle step_idle gives it
 * one step (ff__api_more) per loop turn, round robin with the others, until its reply
 * is complete; the reply then waits for durability like any other.
 */
#include "net/server_int.h"

#include <jansson.h>
#include <malloc.h>
#include <microhttpd.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define FF_HTTP_MAX_BODY (16u << 20)
#define PARSE_AWAY       (64u << 10)

typedef struct parse_job parse_job;

typedef struct http_req {
    ff_buf body;
    bool too_big;
    bool suspended;
    parse_job *job; /* its body's parse in flight, or NULL */
    bool parsed;    /* the body was parsed away: doc, or doc_error */
    json_t *doc;    /* the parsed body; one reference, ours */
    char doc_error[256];
    bool abandon;       /* shutting down before its answer became durable: close, never answer */
    bool stepping;      /* its handler goes on, a step a turn (reply.more) */
    ff_api_reply reply; /* while stepping */
    struct http_req *next_step;
    struct MHD_Connection *conn;
    struct MHD_Response *resp; /* an answer waiting for durability */
    unsigned status;
    uint64_t lsn;
    struct http_req *next;
} http_req;

struct ff_http {
    ff_server *s;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    int port;
    http_req *wait_head, *wait_tail; /* suspended, in log order */
    http_req *step_head, *step_tail; /* suspended while their handlers go on, round robin */
    uv_idle_t step_idle;             /* runs one step a turn while there are some */
    http_req *parsing[64];           /* suspended for their bodies' parse, in arrival order */
    unsigned nparsing;               /* the first one's parse runs if parse_running */
    bool parse_running;
    bool stopping;    /* ff__http_stop: nothing new is taken, nothing suspended again */
    int open_handles; /* closing: h is freed when the last one has closed */
};

/* A parse on the thread pool, or the freeing of a parsed document. q is NULL once the
 * request is gone (shutdown): then the job only cleans up after itself. */
struct parse_job {
    uv_work_t req;
    ff_http *h;
    http_req *q;
    bool started; /* queued on the thread pool */
    ff_buf body;
    json_t *doc;
    char error[256];
};

static void http_schedule(ff_http *h);

static void http_run(ff_http *h)
{
    MHD_run(h->d);
    http_schedule(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    http_run(p->data);
}

static void on_timer(uv_timer_t *t)
{
    http_run(t->data);
}

static void http_schedule(ff_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
        uv_timer_start(&h->timer, on_timer, ms, 0);
    } else {
        uv_timer_stop(&h->timer);
    }
}

static const char *get_arg(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_GET_ARGUMENT_KIND, name);
}

static const char *get_header(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_HEADER_KIND, name);
}

static struct MHD_Response *make_response(ff_api_reply *r)
{
    size_t len;
    char *body = ff_buf_steal(&r->body, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    if (r->header_name) MHD_add_response_header(resp, r->header_name, r->header_value);
    return resp;
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result too_big(ff_server *s, struct MHD_Connection *c)
{
    ff_api_reply r = {.status = 413, .content_type = "application/problem+json"};
    ff_buf_init(&r.body);
    ff_buf_addf(&r.body,
                "{\"type\":\"urn:footfall:problem:too-large\",\"title\":\"Payload Too Large\","
                "\"status\":413,\"detail\":\"request body is over %u bytes\"}",
                FF_HTTP_MAX_BODY);
    s->m.http_errors++;
    return queue(c, 413, make_response(&r));
}

/* ---- Large bodies parsed away from the loop --------------------------------------- */

static void parse_work(uv_work_t *w)
{
    parse_job *j = w->data;
    json_error_t e;
    j->doc = json_loadb(j->body.p, j->body.len, JSON_REJECT_DUPLICATES, &e);
    if (j->doc == NULL)
        snprintf(j->error, sizeof j->error, "invalid JSON at line %d column %d: %s", e.line,
                 e.column, e.text);
}

static void parse_done(uv_work_t *w, int status);

/* Starts the parse of the first waiting body, unless one runs. */
static void parse_next(ff_http *h)
{
    if (h->parse_running || h->nparsing == 0 || h->stopping) return;
    parse_job *j = h->parsing[0]->job;
    j->started = true;
    h->parse_running = true;
    uv_queue_work(h->s->loop, &j->req, parse_work, parse_done);
}

static void take_out(ff_http *h, http_req *q)
{
    unsigned i = 0;
    while (i < h->nparsing && h->parsing[i] != q) i++;
    FF_ASSERT(i < h->nparsing);
    memmove(h->parsing + i, h->parsing + i + 1, (h->nparsing - i - 1) * sizeof(*h->parsing));
    h->nparsing--;
}

/* Takes q out of the waiting list (it is going away); a job not yet started goes with
 * it, a running one finishes and cleans up after itself. */
static void unlist_parsing(ff_http *h, http_req *q)
{
    take_out(h, q);
    parse_job *j = q->job;
    q->job = NULL;
    if (j->started) {
        j->q = NULL; /* it runs on, and cleans up after itself without h */
        h->parse_running = false;
    } else {
        ff_buf_release(&j->body);
        free(j);
    }
}

/* Loop thread: the request gets its body back, and its document, and is resumed. */
static void parse_done(uv_work_t *w, int status)
{
    parse_job *j = w->data;
    http_req *q = j->q;
    if (q == NULL) { /* the request is gone (and so may be the server) */
        if (j->doc) json_decref(j->doc);
        ff_buf_release(&j->body);
        free(j);
        return;
    }
    ff_http *h = j->h;
    h->parse_running = false;
    take_out(h, q);
    q->job = NULL;
    q->body = j->body;
    q->parsed = true;
    q->doc = j->doc;
    if (status < 0 && !q->doc)
        snprintf(q->doc_error, sizeof q->doc_error, "parse cancelled");
    else
        memcpy(q->doc_error, j->error, sizeof q->doc_error);
    free(j);
    parse_next(h);
    MHD_resume_connection(q->conn);
    http_run(h);
}

/* Starts the parse of q's body on the thread pool, if it is a large JSON body and there
 * is room to track it. Returns true if the request is now suspended waiting for it. */
static bool parse_away(ff_http *h, http_req *q, struct MHD_Connection *c, const char *url,
                       const char *method)
{
    if (q->parsed || q->body.len < PARSE_AWAY ||
        h->nparsing == sizeof h->parsing / sizeof *h->parsing)
        return false;
    ff_api_req req = {
        .method = method, .path = url, .arg = get_arg, .header = get_header, .ctx = c};
    if (!ff__api_reads_big_json(h->s, &req)) return false;
    parse_job *j = ff_xcalloc(1, sizeof(*j));
    j->h = h;
    j->q = q;
    j->body = q->body;
    j->req.data = j;
    ff_buf_init(&q->body);
    q->job = j;
    q->conn = c;
    h->parsing[h->nparsing++] = q;
    MHD_suspend_connection(c);
    parse_next(h);
    return true;
}

static void free_work(uv_work_t *w)
{
    parse_job *j = w->data;
    json_decref(j->doc);
#ifdef __GLIBC__
    /* A large document leaves tens of MB of small freed blocks (about 1 KB of jansson
     * objects per DPU); give them back rather than keep them resident. */
    if (j->body.len > (1u << 20)) malloc_trim(0);
#endif
}

static void free_done(uv_work_t *w, int status)
{
    (void)status;
    free(w->data);
}

/* Hands q's document (the handler's references are dropped) to the thread pool to free. */
static void free_away(ff_http *h, http_req *q)
{
    parse_job *j = ff_xcalloc(1, sizeof(*j));
    j->doc = q->doc;
    j->body.len = q->body.len; /* only its size: how much the document took */
    j->req.data = j;
    q->doc = NULL;
    uv_queue_work(h->s->loop, &j->req, free_work, free_done);
}

/* The reply r to q is complete: queued now, or held until its log position is durable
 * (suspended: the connection already is). */
static enum MHD_Result reply_done(ff_http *h, http_req *q, struct MHD_Connection *c,
                                  ff_api_reply *r, bool suspended)
{
    ff_server *s = h->s;
    if (r->status >= 400) s->m.http_errors++;
    struct MHD_Response *resp = make_response(r);
    uint64_t need = ff_engine_written(s->eng);
    if (!r->wait_durable || need <= ff__server_release_point(s)) {
        if (!suspended) return queue(c, r->status, resp);
        q->resp = resp; /* queued when MHD calls the handler again */
        q->status = r->status;
        MHD_resume_connection(c);
        return MHD_YES;
    }
    q->resp = resp;
    q->status = r->status;
    q->lsn = need;
    q->conn = c;
    q->suspended = true;
    if (h->wait_tail)
        h->wait_tail->next = q;
    else
        h->wait_head = q;
    h->wait_tail = q;
    if (!suspended) MHD_suspend_connection(c);
    return MHD_YES;
}

static void on_step(uv_idle_t *idle);

/* Puts q at the back of the requests that go on a step a turn. */
static void list_step(ff_http *h, http_req *q)
{
    q->stepping = true;
    if (h->step_tail)
        h->step_tail->next_step = q;
    else
        h->step_head = q;
    h->step_tail = q;
    uv_idle_start(&h->step_idle, on_step);
}

static void unlist_step(ff_http *h, http_req *q)
{
    http_req **pp = &h->step_head, *prev = NULL;
    while (*pp && *pp != q) prev = *pp, pp = &(*pp)->next_step;
    if (*pp == NULL) return;
    *pp = q->next_step;
    if (h->step_tail == q) h->step_tail = prev;
    q->next_step = NULL;
    q->stepping = false;
    if (h->step_head == NULL) uv_idle_stop(&h->step_idle);
}

/* One step of the first request that is not done; it goes to the back if still not. */
static void on_step(uv_idle_t *idle)
{
    ff_http *h = idle->data;
    http_req *q = h->step_head;
    if (q == NULL) {
        uv_idle_stop(idle);
        return;
    }
    unlist_step(h, q);
    if (!ff__api_more(h->s, &q->reply)) {
        list_step(h, q);
        return;
    }
    ff_api_reply r = q->reply;
    q->reply = (ff_api_reply){0};
    reply_done(h, q, q->conn, &r, true);
    http_run(h);
}

static enum MHD_Result dispatch(ff_http *h, http_req *q, struct MHD_Connection *c, const char *url,
                                const char *method)
{
    ff_server *s = h->s;
    ff_api_req req = {
        .method = method,
        .path = url,
        .arg = get_arg,
        .header = get_header,
        .ctx = c,
        .body = q->body.p ? q->body.p : "",
        .body_len = q->body.len,
        .parsed = q->parsed,
        .doc = q->doc,
        .doc_error = q->doc_error,
    };
    ff_api_reply r = {.status = 200, .content_type = "application/json"};
    ff_buf_init(&r.body);
    ff__api_handle(s, &req, &r);
    if (q->doc) free_away(h, q);
    if (r.more) { /* goes on in later turns (on_step) */
        q->reply = r;
        q->conn = c;
        MHD_suspend_connection(c);
        list_step(h, q);
        return MHD_YES;
    }
    return reply_done(h, q, c, &r, false);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    ff_http *h = cls;
    http_req *q = *con_cls;
    if (h->stopping && !(q && q->resp)) return MHD_NO; /* closed unanswered: retried */
    if (q == NULL) {
        q = ff_xcalloc(1, sizeof(*q));
        ff_buf_init(&q->body);
        *con_cls = q;
        h->s->m.http_requests++;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > FF_HTTP_MAX_BODY) {
            q->too_big = true;
            return too_big(h->s, c);
        }
        return MHD_YES;
    }
    if (q->abandon) return MHD_NO; /* closes the connection without an answer */
    if (q->resp) {                 /* resumed: the answer is durable now */
        struct MHD_Response *resp = q->resp;
        q->resp = NULL;
        return queue(c, q->status, resp);
    }
    if (*upload_size) {
        /* Past the limit the rest of the body is read and dropped, then answered 413:
         * this MHD cannot queue an answer in the middle of an upload. */
        if (!q->too_big && q->body.len + *upload_size > FF_HTTP_MAX_BODY) {
            q->too_big = true;
            ff_buf_release(&q->body);
        }
        if (!q->too_big) ff_buf_add(&q->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (q->too_big) return too_big(h->s, c);
    if (q->job) return MHD_YES; /* still parsing */
    if (parse_away(h, q, c, url, method)) return MHD_YES;
    return dispatch(h, q, c, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ff_http *h = cls;
    http_req *q = *con_cls;
    if (q == NULL) return;
    if (q->suspended) { /* unlink a request that never got resumed (shutdown) */
        http_req **pp = &h->wait_head, *prev = NULL;
        while (*pp && *pp != q) prev = *pp, pp = &(*pp)->next;
        if (*pp) {
            *pp = q->next;
            if (h->wait_tail == q) h->wait_tail = prev;
        }
    }
    if (q->job) {
        unlist_parsing(h, q);
        parse_next(h);
    }
    if (q->stepping) unlist_step(h, q);
    if (q->reply.more) ff__api_more_free(&q->reply);
    ff_buf_release(&q->reply.body);
    if (q->doc) json_decref(q->doc);
    if (q->resp) MHD_destroy_response(q->resp);
    ff_buf_release(&q->body);
    free(q);
    *con_cls = NULL;
}

void ff__http_release(ff_http *h, uint64_t lsn)
{
    bool any = false;
    while (h->wait_head && h->wait_head->lsn <= lsn) {
        http_req *q = h->wait_head;
        h->wait_head = q->next;
        if (h->wait_head == NULL) h->wait_tail = NULL;
        q->next = NULL;
        q->suspended = false;
        MHD_resume_connection(q->conn);
        any = true;
    }
    if (any) http_run(h);
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    ff_http *h = cls;
    if (h->s->opts.quiet) return;
    fputs("footfalld: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* Binds and listens ourselves, so a failure is the real errno (MHD only says "failed"). */
static int listen_socket(const struct sockaddr_storage *addr, int *out)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, 1024) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *out = fd;
    return 0;
}

int ff__http_start(ff_server *s, const struct sockaddr_storage *addr, ff_http **out)
{
    int fd = -1, rc = listen_socket(addr, &fd);
    if (rc < 0) return rc;
    ff_http *h = ff_xcalloc(1, sizeof(*h));
    h->s = s;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    if (addr->ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
                            log_mhd, h, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)4000,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)8192, MHD_OPTION_END);
    if (h->d == NULL) {
        close(fd);
        free(h);
        return -EIO;
    }
    const union MHD_DaemonInfo *ep = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : 0;
    uv_poll_init(s->loop, &h->poll, ep->epoll_fd);
    h->poll.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    uv_timer_init(s->loop, &h->timer);
    h->timer.data = h;
    uv_idle_init(s->loop, &h->step_idle);
    h->step_idle.data = h;
    http_schedule(h);
    *out = h;
    return 0;
}

int ff__http_port(const ff_http *h)
{
    return h->port;
}

/* libuv runs close callbacks in no order to rely on: h goes with the last one. */
static void free_on_close(uv_handle_t *hd)
{
    ff_http *h = hd->data;
    if (--h->open_handles == 0) free(h);
}

void ff__http_stop(ff_http *h)
{
    /* From here on a request is answered only if its answer is ready (on_request), so
     * no connection is suspended again once the ones below are resumed: MHD may not
     * stop with a suspended connection. */
    h->stopping = true;
    uv_poll_stop(&h->poll);
    uv_idle_stop(&h->step_idle);
    /* Answer what is durable; what is not is closed without an answer (the client
     * retries, and duplicates make that safe) -- never an answer before its sync. */
    ff__http_release(h, ff__server_release_point(h->s));
    for (http_req *q = h->wait_head; q; q = q->next) {
        MHD_destroy_response(q->resp);
        q->resp = NULL;
        q->abandon = true;
    }
    ff__http_release(h, UINT64_MAX);
    while (h->step_head) { /* what was taken is durable (the final sync); closed unanswered */
        http_req *q = h->step_head;
        unlist_step(h, q);
        ff__api_more_free(&q->reply);
        q->abandon = true;
        MHD_resume_connection(q->conn);
    }
    while (h->nparsing) { /* closed unanswered, like the above */
        http_req *q = h->parsing[0];
        unlist_parsing(h, q);
        q->abandon = true;
        MHD_resume_connection(q->conn);
    }
    MHD_run(h->d);
    MHD_stop_daemon(h->d);
    h->open_handles = 3;
    uv_close((uv_handle_t *)&h->poll, free_on_close);
    uv_close((uv_handle_t *)&h->step_idle, free_on_close);
    uv_close((uv_handle_t *)&h->timer, free_on_close);
}
