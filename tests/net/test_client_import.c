/*
 * test_client_import.c -- `footfall import`'s pipeline (net/client_import.c) against a
 * fake footfalld on loopback: a TCP acker with duplicate detection that can drop a
 * connection or answer "overloaded" on cue, and an HTTP POST /v1/events that names
 * the refused rows. Plus the pure pieces: the JSON resend, answers, the summary.
 */
#include "net/client_import.h"

#include "net/timefmt.h"
#include "net/wire.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REFUSED_DPU 999 /* the fake server refuses this DPU's events */

typedef struct fake {
    int tcp_fd, http_fd;
    ff_endpoint tcp, http;
    pthread_t tcp_t, http_t;
    volatile bool stop;
    pthread_mutex_t mu;
    /* every distinct event taken, for checking nothing was lost */
    ff_event *seen;
    size_t nseen, seen_cap;
    /* cues */
    int drop_after_frames; /* close a connection without acking after this many frames */
    int overload_frame;    /* answer "overloaded" to this frame number (1-based), once */
    int frames, connections, http_posts;
} fake;

static bool same(const ff_event *a, const ff_event *b)
{
    return a->dpu_id == b->dpu_id && a->ts == b->ts && a->direction == b->direction &&
           a->seq == b->seq;
}

/* Admits one event like the engine would: 0 accepted, 1 duplicate, 2 refused. */
static int admit(fake *f, const ff_event *e)
{
    if (e->dpu_id == REFUSED_DPU) return 2;
    for (size_t i = 0; i < f->nseen; i++)
        if (same(&f->seen[i], e)) return 1;
    f->seen = ff_xgrow(f->seen, &f->seen_cap, f->nseen + 1, sizeof *f->seen);
    f->seen[f->nseen++] = *e;
    return 0;
}

static int listen_any(ff_endpoint *ep)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    snprintf(ep->host, sizeof ep->host, "127.0.0.1");
    snprintf(ep->port, sizeof ep->port, "%u", ntohs(a.sin_port));
    return fd;
}

static int accept_or_stop(fake *f, int lfd)
{
    while (!f->stop) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, 50) == 1) return accept(lfd, NULL, NULL);
    }
    return -1;
}

static bool read_n(int fd, void *p, size_t n)
{
    return ff_read_all(fd, p, n) == 0;
}

static void *tcp_main(void *arg)
{
    fake *f = arg;
    static uint8_t frame[FF_FRAME_MAX];
    static ff_event ev[FF_FRAME_MAX_COUNT];
    int fd;
    while ((fd = accept_or_stop(f, f->tcp_fd)) >= 0) {
        pthread_mutex_lock(&f->mu);
        f->connections++;
        pthread_mutex_unlock(&f->mu);
        ff_frame_header h;
        while (read_n(fd, frame, FF_FRAME_HEADER)) {
            cr_assert_eq(ff_frame_parse_header(frame, FF_FRAME_HEADER, &h), 0);
            cr_assert_eq(h.flags, FF_FRAME_FLAG_ACK);
            if (!read_n(fd, frame + FF_FRAME_HEADER, ff_frame_size(&h) - FF_FRAME_HEADER)) break;
            ff_frame_records(frame + FF_FRAME_HEADER, h.count, ev);
            pthread_mutex_lock(&f->mu);
            int n = ++f->frames;
            bool drop = f->drop_after_frames && n > f->drop_after_frames;
            bool overload = n == f->overload_frame;
            ff_ack a = {.batch_id = h.batch_id};
            if (drop) {
                /* take the frame, lose the ack: the client must resend it */
                for (size_t i = 0; i < h.count; i++) admit(f, &ev[i]);
                f->drop_after_frames = 0;
            } else if (overload) {
                a.status = FF_ACK_OVERLOAD;
            } else {
                for (size_t i = 0; i < h.count; i++) {
                    int r = admit(f, &ev[i]);
                    a.accepted += r == 0, a.duplicates += r == 1, a.refused += r == 2;
                }
                a.status = a.refused ? FF_ACK_PARTIAL : FF_ACK_OK;
            }
            pthread_mutex_unlock(&f->mu);
            if (drop) break;
            uint8_t out[FF_ACK_SIZE];
            ff_ack_encode(out, &a);
            ff_write_all(fd, out, sizeof out);
        }
        close(fd);
    }
    return NULL;
}

/* POST /v1/events with a JSON array: names the refused indexes. */
static void *http_main(void *arg)
{
    fake *f = arg;
    int fd;
    while ((fd = accept_or_stop(f, f->http_fd)) >= 0) {
        ff_buf req;
        ff_buf_init(&req);
        char *body = NULL;
        size_t cl = 0;
        for (;;) {
            ff_buf_reserve(&req, 65536);
            ssize_t r = recv(fd, req.p + req.len, req.cap - req.len - 1, 0);
            if (r <= 0) break;
            req.len += (size_t)r;
            req.p[req.len] = '\0';
            char *h = strstr(req.p, "\r\n\r\n");
            if (!h) continue;
            char *c = strstr(req.p, "Content-Length: ");
            cl = c ? strtoul(c + 16, NULL, 10) : 0;
            if (req.len - (size_t)(h + 4 - req.p) >= cl) {
                body = h + 4;
                break;
            }
        }
        cr_assert_not_null(body);
        cr_assert(strncmp(req.p, "POST /v1/events ", 16) == 0);
        json_t *arr = json_loadb(body, cl, 0, NULL), *it;
        cr_assert(json_is_array(arr));
        ff_buf out;
        ff_buf_init(&out);
        size_t i, dup = 0;
        ff_buf_adds(&out, "{\"refused\":[");
        bool first = true;
        json_array_foreach(arr, i, it)
        {
            if (json_integer_value(json_object_get(it, "dpu_id")) == REFUSED_DPU) {
                ff_buf_addf(&out, "%s{\"index\":%zu,\"reason\":\"unknown_dpu\"}", first ? "" : ",",
                            i);
                first = false;
            } else {
                dup++;
            }
        }
        ff_buf_addf(&out, "],\"accepted\":0,\"duplicates\":%zu,\"late\":0}", dup);
        char head[256];
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                 out.len);
        ff_write_all(fd, head, strlen(head));
        ff_write_all(fd, out.p, out.len);
        pthread_mutex_lock(&f->mu);
        f->http_posts++;
        pthread_mutex_unlock(&f->mu);
        json_decref(arr);
        ff_buf_release(&out);
        ff_buf_release(&req);
        close(fd);
    }
    return NULL;
}

static void fake_start(fake *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->tcp_fd = listen_any(&f->tcp);
    f->http_fd = listen_any(&f->http);
    pthread_create(&f->tcp_t, NULL, tcp_main, f);
    pthread_create(&f->http_t, NULL, http_main, f);
}

static void fake_stop(fake *f)
{
    f->stop = true;
    pthread_join(f->tcp_t, NULL);
    pthread_join(f->http_t, NULL);
    close(f->tcp_fd);
    close(f->http_fd);
    free(f->seen);
    pthread_mutex_destroy(&f->mu);
}

/*
 * A CSV of n rows: every row a distinct event, except every 10th row repeats the row
 * before it, every 97th is from REFUSED_DPU and every 501st is malformed.
 */
typedef struct sample {
    ff_buf csv;
    size_t valid, dups, refused, malformed, distinct;
    uint64_t *refused_lines, *malformed_lines;
} sample;

static void make_sample(sample *s, size_t n)
{
    memset(s, 0, sizeof *s);
    ff_buf_init(&s->csv);
    s->refused_lines = ff_xcalloc(n, sizeof(uint64_t));
    s->malformed_lines = ff_xcalloc(n, sizeof(uint64_t));
    ff_buf_adds(&s->csv, "dpu_id,timestamp,direction,seq\r\n");
    char t[FF_TIME_STRLEN], prev[128] = "";
    for (size_t i = 1; i <= n; i++) {
        uint64_t line = i + 1;
        char rowbuf[128];
        if (i % 501 == 0) {
            snprintf(rowbuf, sizeof rowbuf, "7,not-a-time,1,0");
            s->malformed_lines[s->malformed++] = line;
        } else if (i % 10 == 0 && (i - 1) % 501 != 0) {
            snprintf(rowbuf, sizeof rowbuf, "%s", prev);
            if (strncmp(prev, "999,", 4) == 0)
                s->refused_lines[s->refused++] = line;
            else
                s->dups++;
        } else {
            ff_time_format(1519461921893000LL + (int64_t)i * 1000, t);
            unsigned dpu = i % 97 == 0 ? REFUSED_DPU : (unsigned)(i % 13) + 1;
            snprintf(rowbuf, sizeof rowbuf, "%u,%s,%d,%zu", dpu, t, i % 3 ? 1 : -1, i % 65536);
            if (dpu == REFUSED_DPU)
                s->refused_lines[s->refused++] = line;
            else
                s->distinct++;
        }
        if (i % 501) s->valid++;
        snprintf(prev, sizeof prev, "%s", rowbuf);
        ff_buf_addf(&s->csv, "%s%s", rowbuf, i == n ? "" : "\n");
    }
}

static void free_sample(sample *s)
{
    ff_buf_release(&s->csv);
    free(s->refused_lines);
    free(s->malformed_lines);
}

static void check_result(const sample *s, const ff_import_result *r, const fake *f)
{
    cr_assert_eq(r->rows, s->valid + s->malformed);
    cr_assert_eq(r->malformed, s->malformed);
    cr_assert_eq(r->refused, s->refused);
    cr_assert_eq(r->accepted + r->duplicates, s->distinct + s->dups);
    cr_assert_eq(f->nseen, s->distinct, "the server holds every distinct event");
    /* refused and malformed lines, exactly */
    size_t nr = 0, nm = 0;
    for (size_t i = 0; i < r->nissues; i++) {
        const ff_import_issue *x = &r->issues[i];
        if (i) cr_assert_leq(r->issues[i - 1].line, x->line, "issues sorted by line");
        if (x->kind == FF_ISSUE_REFUSED) {
            cr_assert_lt(nr, s->refused);
            cr_assert_eq(x->line, s->refused_lines[nr], "refused #%zu", nr);
            cr_assert_str_eq(r->reasons[x->reason], "unknown_dpu");
            nr++;
        } else if (x->kind == FF_ISSUE_MALFORMED) {
            cr_assert_lt(nm, s->malformed);
            cr_assert_eq(x->line, s->malformed_lines[nm]);
            cr_assert_str_eq(
                r->reasons[x->reason],
                "bad timestamp: expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM");
            nm++;
        } else {
            cr_assert_fail("unexpected unresolved issue: %s", r->reasons[x->reason]);
        }
    }
    cr_assert_eq(nr, s->refused);
    cr_assert_eq(nm, s->malformed);
}

static ff_import_opts opts_for(const fake *f, size_t batch, size_t window)
{
    ff_import_opts o;
    ff_import_opts_default(&o);
    o.tcp = f->tcp;
    o.http = f->http;
    o.batch = batch;
    o.window = window;
    o.timeout_ms = 5000;
    o.retries = 4;
    return o;
}

Test(client_import, imports_counts_and_names_refused_and_malformed_lines)
{
    fake f;
    fake_start(&f);
    sample s;
    make_sample(&s, 5000);
    ff_import_opts o = opts_for(&f, 128, 4);
    ff_import_result r;
    char err[256];
    int rc = ff_import_run(s.csv.p, s.csv.len, &o, &r, err, sizeof err);
    fake_stop(&f);
    cr_assert_eq(rc, 0, "%s", err);
    check_result(&s, &r, &f);
    cr_assert_eq(r.duplicates, s.dups);
    cr_assert_eq(r.frames, (s.valid + 127) / 128);
    cr_assert_eq(r.reconnects, 0);
    cr_assert_gt(f.http_posts, 0);
    ff_import_result_release(&r);
    free_sample(&s);
}

Test(client_import, one_row_frames_and_window_of_one)
{
    fake f;
    fake_start(&f);
    sample s;
    make_sample(&s, 300);
    ff_import_opts o = opts_for(&f, 1, 1);
    ff_import_result r;
    char err[256];
    cr_assert_eq(ff_import_run(s.csv.p, s.csv.len, &o, &r, err, sizeof err), 0, "%s", err);
    fake_stop(&f);
    check_result(&s, &r, &f);
    cr_assert_eq(r.frames, s.valid);
    ff_import_result_release(&r);
    free_sample(&s);
}

Test(client_import, lost_acks_are_resent_on_a_new_connection)
{
    fake f;
    fake_start(&f);
    f.drop_after_frames = 5;
    sample s;
    make_sample(&s, 4000);
    ff_import_opts o = opts_for(&f, 100, 8);
    ff_import_result r;
    char err[256];
    cr_assert_eq(ff_import_run(s.csv.p, s.csv.len, &o, &r, err, sizeof err), 0, "%s", err);
    fake_stop(&f);
    check_result(&s, &r, &f);
    cr_assert_geq(r.reconnects, 1);
    cr_assert_geq(r.resent_frames, 1);
    cr_assert_eq(f.connections, 2);
    ff_import_result_release(&r);
    free_sample(&s);
}

Test(client_import, overloaded_frames_are_sent_again)
{
    fake f;
    fake_start(&f);
    f.overload_frame = 3;
    sample s;
    make_sample(&s, 2000);
    ff_import_opts o = opts_for(&f, 64, 4);
    ff_import_result r;
    char err[256];
    cr_assert_eq(ff_import_run(s.csv.p, s.csv.len, &o, &r, err, sizeof err), 0, "%s", err);
    fake_stop(&f);
    check_result(&s, &r, &f);
    cr_assert_eq(r.duplicates, s.dups);
    cr_assert_eq(r.resent_frames, 1);
    ff_import_result_release(&r);
    free_sample(&s);
}

Test(client_import, no_resolve_reports_ranges)
{
    fake f;
    fake_start(&f);
    sample s;
    make_sample(&s, 1000);
    ff_import_opts o = opts_for(&f, 250, 2);
    o.resolve = false;
    ff_import_result r;
    char err[256];
    cr_assert_eq(ff_import_run(s.csv.p, s.csv.len, &o, &r, err, sizeof err), 0, "%s", err);
    fake_stop(&f);
    cr_assert_eq(f.http_posts, 0);
    uint64_t unresolved = 0;
    for (size_t i = 0; i < r.nissues; i++)
        if (r.issues[i].kind == FF_ISSUE_UNRESOLVED) {
            unresolved += r.issues[i].count;
            cr_assert_lt(r.issues[i].line, r.issues[i].line_end);
        }
    cr_assert_eq(unresolved, s.refused);
    ff_import_result_release(&r);
    free_sample(&s);
}

Test(client_import, bad_header_fails_before_connecting)
{
    ff_import_opts o;
    ff_import_opts_default(&o);
    ff_endpoint_parse("127.0.0.1:1", &o.tcp);
    o.source = "x.csv";
    ff_import_result r;
    char err[256];
    const char *csv = "time,direction,dpu_id\n2018-02-24T08:45:21Z,1,1\n";
    cr_assert_eq(ff_import_run(csv, strlen(csv), &o, &r, err, sizeof err), FF_EFORMAT);
    cr_assert_not_null(strstr(err, "x.csv"), "%s", err);
    cr_assert_not_null(strstr(err, "\"timestamp\""), "%s", err);
    cr_assert_eq(r.frames, 0);
    ff_import_result_release(&r);
}

Test(client_import, no_server_is_an_error)
{
    ff_endpoint ep;
    int fd = listen_any(&ep);
    close(fd);
    ff_import_opts o;
    ff_import_opts_default(&o);
    o.tcp = ep;
    ff_import_result r;
    char err[256];
    const char *csv = "timestamp,direction,dpu_id\n2018-02-24T08:45:21Z,1,1\n";
    cr_assert_lt(ff_import_run(csv, strlen(csv), &o, &r, err, sizeof err), 0);
    cr_assert_not_null(strstr(err, ep.port), "%s", err);
    ff_import_result_release(&r);
}

Test(client_import, events_json)
{
    ff_event ev[2] = {{.dpu_id = 423, .direction = 1, .ts = 1519461921893000LL},
                      {.dpu_id = 7, .direction = -1, .seq = 65535, .ts = 1}};
    ff_buf b;
    ff_buf_init(&b);
    ff_import_events_json(&b, ev, 2);
    cr_assert_str_eq(b.p, "[{\"dpu_id\":423,\"timestamp\":\"2018-02-24T08:45:21.893Z\","
                          "\"direction\":1,\"seq\":0},{\"dpu_id\":7,\"timestamp\":"
                          "\"1970-01-01T00:00:00.000001Z\",\"direction\":-1,\"seq\":65535}]");
    ff_buf_release(&b);
}

Test(client_import, answer_maps_indexes_to_lines)
{
    ff_import_result r = {0};
    uint64_t lines[3] = {10, 12, 15}, acc = 99;
    const char *ans = "{\"accepted\":1,\"duplicates\":0,\"late\":0,\"refused\":[{\"index\":2,"
                      "\"reason\":\"too_old\"},{\"index\":0,\"line\":3,\"reason\":\"future\"},"
                      "{\"index\":7,\"reason\":\"out of range is ignored\"}]}";
    cr_assert_eq(ff_import_apply_answer(&r, ans, strlen(ans), lines, 3, &acc), 2);
    cr_assert_eq(acc, 1);
    cr_assert_eq(r.nissues, 2);
    cr_assert_eq(r.issues[0].line, 15);
    cr_assert_str_eq(r.reasons[r.issues[0].reason], "too_old");
    cr_assert_eq(r.issues[1].line, 10);
    cr_assert_str_eq(r.reasons[r.issues[1].reason], "future");
    cr_assert_eq(ff_import_apply_answer(&r, "{}", 2, lines, 3, &acc), FF_EFORMAT);
    cr_assert_eq(ff_import_apply_answer(&r, "nope", 4, lines, 3, &acc), FF_EFORMAT);
    ff_import_result_release(&r);
}

Test(client_import, summary_lists_lines)
{
    ff_import_result r = {0};
    r.rows = 10, r.accepted = 5, r.duplicates = 2, r.refused = 2, r.malformed = 1;
    r.elapsed_s = 0.5;
    ff_import_add_issue(&r, FF_ISSUE_REFUSED, 4, 0, 1, "unknown_dpu");
    ff_import_add_issue(&r, FF_ISSUE_REFUSED, 9, 0, 1, "unknown_dpu");
    ff_import_add_issue(&r, FF_ISSUE_MALFORMED, 3, 0, 1, "bad direction");
    cr_assert_eq(r.nreasons, 2, "reasons are interned");
    ff_buf b;
    ff_buf_init(&b);
    ff_import_summary(&r, &b, 0);
    cr_assert_not_null(strstr(b.p, "rows read    10\n"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "accepted     5 (late 0)\n"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "(20 rows/s)"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "refused rows:\n  line 4: unknown_dpu\n  line 9: unknown_dpu\n"),
                       "%s", b.p);
    cr_assert_not_null(strstr(b.p, "malformed rows:\n  line 3: bad direction\n"), "%s", b.p);
    ff_buf_reset(&b);
    ff_import_summary(&r, &b, 1);
    cr_assert_not_null(strstr(b.p, "  ... and 1 more\n"), "%s", b.p);
    ff_buf_release(&b);
    ff_import_result_release(&r);
}
