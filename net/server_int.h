/*
 * server_int.h -- what server.c, http.c and api.c share inside net/. Not a public
 * contract: the layer's public headers are server.h, wire.h, csv.h, timefmt.h, jsonw.h.
 */
#ifndef FF_NET_SERVER_INT_H
#define FF_NET_SERVER_INT_H

#include "net/jsonw.h"
#include "net/server.h"

#include <uv.h>

typedef struct ff_http ff_http;
typedef struct tcp_conn tcp_conn;

/* A latency histogram for /metrics: counts over FF_HIST_BUCKETS upper bounds (in
 * seconds: ff__hist_bounds) plus +Inf, their sum and the largest. */
#define FF_HIST_BUCKETS 7
extern const double ff__hist_bounds[FF_HIST_BUCKETS];
typedef struct ff_hist {
    uint64_t n[FF_HIST_BUCKETS + 1];
    uint64_t sum_ns, max_ns;
} ff_hist;
void ff__hist_add(ff_hist *h, uint64_t ns);

/* Counters for /metrics, by transport. */
typedef struct ff_net_metrics {
    uint64_t udp_datagrams, udp_events, udp_malformed, udp_overloaded, udp_acks_dropped;
    uint64_t tcp_connections, tcp_frames, tcp_events, tcp_malformed, tcp_overloaded;
    uint64_t http_requests, http_events, http_errors;
    uint64_t syncs, sync_errors;
    uint64_t segment_read_errors; /* answers withheld: a sealed segment failed a check */
    uint64_t seal_errors;         /* failed seal, merge or commit jobs (each retried) */
    ff_hist loop_busy;            /* busy time of each loop turn (server.c, on_watch) */
    ff_hist sync_wait;            /* each group-commit sync, from its begin to its end */
    ff_hist ack_wait;             /* each UDP or TCP ack, from its frame's read to its release */
} ff_net_metrics;

/* A pending UDP ack: sent once the log position lsn is released. */
typedef struct udp_ack {
    uint64_t lsn;
    uint64_t read_at; /* uv_hrtime() when its frame was read */
    struct sockaddr_storage addr;
    uint8_t bytes[24];
} udp_ack;

typedef struct ff_server {
    uv_loop_t *loop;
    ff_engine *eng;
    ff_server_opts opts;
    ff_net_metrics m;
    int64_t started_us;

    int udp_fd; /* our own socket: uv_poll tells when it is readable, -1 if none */
    uv_poll_t udp_poll;
    bool udp_on;
    struct udp_rx *udp_rx; /* recvmmsg vectors and buffer (server.c) */
    udp_ack *uacks;        /* ring of pending acks */
    size_t uack_head, uack_len, uack_cap;

    uv_tcp_t tcp;
    bool tcp_on;
    tcp_conn *conns; /* every open connection */

    ff_http *http;

    uv_prepare_t commit;
    uv_prepare_t watch;            /* measures each loop turn (on_watch) */
    uint64_t watch_at, watch_idle; /* the last turn's start: hrtime, idle time */
    uint64_t slow_told;            /* hrtime of the last slow-turn or slow-sync line */
    uint64_t seal_err_told;        /* hrtime of the last seal-failure line */
    uint64_t seal_err_untold;      /* failures since that line, not told */
    char seal_err_last[256];       /* what that line said */
    uint64_t read_at;              /* uv_hrtime() of the latest UDP or TCP read */
    uv_work_t sync_req;            /* the one sync job in flight (group commit) */
    ff_log_sync_job sync_job;      /* what it syncs: owned by the job while sync_busy */
    int sync_rc;                   /* its msync's result, written by the worker */
    bool sync_busy;
    uint64_t sync_began;   /* uv_hrtime() at its begin */
    ff_seal_job *seal_job; /* the one seal, merge or commit job in flight; NULL none */
    /* the seal thread (server.c) runs it; these are shared with it under sealer_mu */
    uv_thread_t sealer;
    bool sealer_on;           /* started (joined at stop) */
    uv_mutex_t sealer_mu;     /* guards the four below */
    uv_cond_t sealer_cv;      /* a job to run, or quit */
    ff_seal_job *sealer_todo; /* handed to the thread; NULL once it ran */
    int seal_rc;              /* the run's result */
    bool sealer_done;         /* a run ended: on_sealer_done ends the job */
    bool sealer_quit;
    uv_async_t sealer_async; /* wakes the loop when a run ends */
    uv_timer_t tick;
    uv_idle_t seal_idle; /* runs while a seal capture is in progress (on_tick) */
    uv_timer_t fsync_timer;
    uv_signal_t sigterm, sigint;
    bool stopping;
    int final_rc; /* the shutdown sync: 0, or why not everything is durable */

    char udp_name[64], tcp_name[64], http_name[64];
} ff_server;

/* The log position up to which answers may be released under the fsync policy. */
uint64_t ff__server_release_point(const ff_server *s);

/* HTTP (http.c): MHD driven from the loop. */
int ff__http_start(ff_server *s, const struct sockaddr_storage *addr, ff_http **out);
/* Releases suspended answers whose position is <= lsn. */
void ff__http_release(ff_http *h, uint64_t lsn);
/* Stops accepting, then frees. */
void ff__http_stop(ff_http *h);
/* The bound port (for the ready line). */
int ff__http_port(const ff_http *h);

/* One HTTP request as the API sees it: pure data, no MHD. */
typedef struct ff_api_req {
    const char *method;
    const char *path;                                   /* without the query string */
    const char *(*arg)(void *ctx, const char *name);    /* query argument or NULL */
    const char *(*header)(void *ctx, const char *name); /* request header or NULL */
    void *ctx;
    const char *body;
    size_t body_len;
    /* A large JSON body is parsed off the loop before the handler runs (http.c): then
     * parsed is true and doc is the document (the request's reference: borrow it) or
     * NULL, with doc_error saying why. */
    bool parsed;
    struct json_t *doc;
    const char *doc_error;
} ff_api_req;

/* What is left of a request whose work is too large for one loop turn: a handler's own
 * struct begins with one (POST /v1/events in api_events.c, the statistics of /metrics
 * and /healthz in api.c). */
typedef struct ff_api_reply ff_api_reply;
typedef struct ff_api_more ff_api_more;
struct ff_api_more {
    /* One turn's share of the work; true once the reply is written. */
    bool (*step)(ff_server *s, ff_api_more *m, ff_api_reply *r);
    void (*free)(ff_api_more *m);
};

struct ff_api_reply {
    unsigned status;
    const char *content_type;
    ff_buf body;
    bool wait_durable; /* the answer waits for the log position at reply time */
    const char *header_name, *header_value; /* one extra header (Allow, WWW-Authenticate) */
    ff_api_more *more;                      /* not done yet: see ff__api_more() */
};

/* Handles one request (api.c). reply->body is initialised by the caller. */
void ff__api_handle(ff_server *s, const ff_api_req *req, ff_api_reply *reply);
/* Whether req is an authorized request to a route that reads a body of any size as
 * JSON (PUT /v1/topology, POST /v1/events): the body of no other is parsed ahead. */
bool ff__api_reads_big_json(ff_server *s, const ff_api_req *req);
/* A handler that leaves reply->more set is not done: the caller calls ff__api_more()
 * once per loop turn, other work going on between the calls, until it returns true and
 * the reply is complete (more is then freed and NULL), or ff__api_more_free() to give
 * up (shutdown). The request's body must stay as it was until then. Today: POST
 * /v1/events takes EVENTS_PER_TURN events a turn; /metrics and /healthz count the rows
 * of STATS_SPACES_PER_TURN spaces a turn. */
bool ff__api_more(ff_server *s, ff_api_reply *reply);
void ff__api_more_free(ff_api_reply *reply);
/* Applies a topology document (JSON text); on error writes a sentence into err. */
int ff__api_apply_topology(ff_engine *e, const char *json, size_t len, char *err, size_t errlen,
                           int *http_status);
/* Writes the Prometheus text (metrics.c). */
void ff__metrics_write(ff_server *s, const ff_engine_stats *st, ff_buf *b);
/* The engine's opts.on_archived (ctx: the server): one informational line (metrics.c). */
void ff__metrics_archived(void *ctx, const ff_archive_news *news);

#endif /* FF_NET_SERVER_INT_H */
