/*
 * metrics.c -- GET /metrics in the Prometheus text exposition format (version 0.0.4).
 *
 * Conventions: base units (seconds, bytes), `_total` for counters, no per-DPU labels.
 * The per-space occupancy gauge is off by default (50,000 spaces are 50,000 series):
 * footfalld --metrics-per-space turns it on.
 *
 * Changes an operator should see without scraping (archived history adopted) are also
 * told as one informational line on stderr, next to the gauges they move.
 */
#include "net/server_int.h"
#include "net/timefmt.h"

#include <string.h>
#include <time.h>

static void metric(ff_buf *b, const char *name, const char *type, const char *help)
{
    ff_buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u(ff_buf *b, const char *name, const char *labels, uint64_t v)
{
    ff_buf_adds(b, name);
    if (labels) ff_buf_addf(b, "{%s}", labels);
    ff_buf_adds(b, " ");
    ff_buf_addu(b, v);
    ff_buf_adds(b, "\n");
}

/* A metric with one unlabelled sample. */
static void one(ff_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    metric(b, name, type, help);
    sample_u(b, name, NULL, v);
}

static void write_received(ff_server *s, ff_buf *b)
{
    const char *n = "footfall_events_received_total";
    metric(b, n, "counter", "Events received, by transport, before admission.");
    sample_u(b, n, "transport=\"udp\"", s->m.udp_events);
    sample_u(b, n, "transport=\"tcp\"", s->m.tcp_events);
    sample_u(b, n, "transport=\"http\"", s->m.http_events);
    n = "footfall_frames_malformed_total";
    metric(b, n, "counter", "Frames refused as malformed, by transport.");
    sample_u(b, n, "transport=\"udp\"", s->m.udp_malformed);
    sample_u(b, n, "transport=\"tcp\"", s->m.tcp_malformed);
    one(b, "footfall_udp_datagrams_total", "counter", "UDP datagrams received.",
        s->m.udp_datagrams);
    one(b, "footfall_tcp_frames_total", "counter", "TCP frames received.", s->m.tcp_frames);
    one(b, "footfall_tcp_connections_total", "counter", "TCP connections accepted.",
        s->m.tcp_connections);
    one(b, "footfall_udp_acks_dropped_total", "counter",
        "UDP acks the socket would not take (the sender retransmits).", s->m.udp_acks_dropped);
    one(b, "footfall_http_requests_total", "counter", "HTTP requests received.",
        s->m.http_requests);
    one(b, "footfall_http_errors_total", "counter",
        "HTTP requests answered with a 4xx or 5xx status.", s->m.http_errors);
}

static void write_outcomes(ff_buf *b, const ff_engine_stats *st)
{
    const char *n = "footfall_events_accepted_total";
    metric(b, n, "counter", "Events accepted (late ones included).");
    sample_u(b, n, NULL, st->outcomes[FF_OUT_ACCEPTED] + st->outcomes[FF_OUT_LATE]);
    one(b, "footfall_events_late_total", "counter",
        "Late events accepted, each amending settled history.", st->outcomes[FF_OUT_LATE]);
    one(b, "footfall_events_duplicate_total", "counter",
        "Duplicate events acknowledged without effect.", st->outcomes[FF_OUT_DUPLICATE]);
    n = "footfall_events_refused_total";
    metric(b, n, "counter", "Events refused, by reason.");
    for (int o = 0; o < FF_OUT__COUNT; o++) {
        const char *why = ff_outcome_reason(o);
        if (why == NULL) continue;
        char label[64];
        snprintf(label, sizeof(label), "reason=\"%s\"", why);
        sample_u(b, n, label, st->outcomes[o]);
    }
}

static int space_gauge(void *ctx, const ff_space_info *s)
{
    ff_buf *b = ctx;
    ff_buf_adds(b, "footfall_space_occupancy{space=\"");
    /* The exposition format escapes exactly three things in a label value. */
    for (const char *c = s->def.name; *c; c++) {
        if (*c == '\\')
            ff_buf_adds(b, "\\\\");
        else if (*c == '"')
            ff_buf_adds(b, "\\\"");
        else if (*c == '\n')
            ff_buf_adds(b, "\\n");
        else
            ff_buf_add(b, c, 1);
    }
    ff_buf_addf(b, "\"} %lld\n", (long long)s->occupancy);
    return 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A Prometheus histogram (cumulative buckets, _sum, _count) and a gauge of its largest. */
static void hist(ff_buf *b, const char *name, const char *help, const char *max_help,
                 const ff_hist *h)
{
    metric(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i <= FF_HIST_BUCKETS; i++) {
        cum += h->n[i];
        if (i < FF_HIST_BUCKETS)
            ff_buf_addf(b, "%s_bucket{le=\"%g\"} ", name, ff__hist_bounds[i]);
        else
            ff_buf_addf(b, "%s_bucket{le=\"+Inf\"} ", name);
        ff_buf_addu(b, cum);
        ff_buf_adds(b, "\n");
    }
    ff_buf_addf(b, "%s_sum %.6f\n%s_count ", name, (double)h->sum_ns / 1e9, name);
    ff_buf_addu(b, cum);
    ff_buf_adds(b, "\n");
    char max[96];
    snprintf(max, sizeof max, "%.*s_max_seconds", (int)(strlen(name) - 8), name);
    metric(b, max, "gauge", max_help);
    ff_buf_addf(b, "%s %.6f\n", max, (double)h->max_ns / 1e9);
}

void ff__metrics_write(ff_server *s, const ff_engine_stats *st, ff_buf *b)
{
    write_received(s, b);
    write_outcomes(b, st);
    one(b, "footfall_pending_rows", "gauge", "Rows not yet settled (ts after the horizon).",
        st->pending_rows);
    one(b, "footfall_settled_rows", "gauge", "Settled rows held.", st->settled_rows);
    metric(b, "footfall_horizon_lag_seconds", "gauge",
           "Wall-clock time minus the horizon H (0 before any event).");
    double lag = st->horizon == FF_TS_MIN ? 0 : now_s() - (double)st->horizon / 1e6;
    ff_buf_addf(b, "footfall_horizon_lag_seconds %.6f\n", lag);
    one(b, "footfall_log_bytes", "gauge", "Bytes the log files take on disk.", st->log_bytes);
    one(b, "footfall_log_files", "gauge", "Log files.", st->log_files);
    one(b, "footfall_seal_jobs_discarded_total", "counter",
        "Seal jobs redone because late events changed their rows meanwhile.",
        st->seal_jobs_discarded);
    one(b, "footfall_log_files_released_total", "counter",
        "Log files removed because everything in them is sealed.", st->log_files_released);
    one(b, "footfall_log_syncs_total", "counter", "Group-commit syncs of the log.", s->m.syncs);
    one(b, "footfall_log_sync_errors_total", "counter", "Failed syncs of the log.",
        s->m.sync_errors);
    one(b, "footfall_segments_sealed_total", "counter", "Segments sealed.", st->segments_sealed);
    one(b, "footfall_seal_errors_total", "counter",
        "Failed seals, merges and checkpoint commits (each is retried on the next tick; "
        "stderr says why, at most one line every 10 s).",
        s->m.seal_errors);
    one(b, "footfall_segments", "gauge", "Live segment files.", st->segments);
    one(b, "footfall_segment_read_errors_total", "counter",
        "Answers withheld (500) because a sealed segment failed a check; each damaged file "
        "is also logged once.",
        s->m.segment_read_errors);
    one(b, "footfall_segments_merged_total", "counter",
        "Pairs of adjacent segments merged into one.", st->segments_merged);
    one(b, "footfall_segments_archived", "gauge",
        "Live segments moved out by footfall archive (read from --archive-dir, or 410).",
        st->segments_archived);
    metric(b, "footfall_archived_until_seconds", "gauge",
           "End of archived history, Unix seconds (0 when nothing is archived).");
    ff_buf_addf(b, "footfall_archived_until_seconds %.6f\n",
                st->archived_upto == FF_TS_MIN ? 0 : (double)st->archived_upto / 1e6);
    hist(b, "footfall_loop_busy_seconds",
         "Busy time of each turn of the loop thread (what an answer can wait for).",
         "The busiest loop turn since the start.", &s->m.loop_busy);
    hist(b, "footfall_log_sync_seconds",
         "Each group-commit sync of the log, from its begin to its end (what an acknowledged "
         "answer waits for under --fsync always).",
         "The longest sync since the start.", &s->m.sync_wait);
    hist(b, "footfall_ack_wait_seconds",
         "Each UDP or TCP ack, from the read of its frame to its release to the socket (what "
         "a sender waits for, less the network and the socket).",
         "The longest-held ack since the start.", &s->m.ack_wait);
    one(b, "footfall_spaces", "gauge", "Spaces defined.", ff_engine_space_count(s->eng));
    one(b, "footfall_dpus", "gauge", "DPUs registered.", ff_engine_dpu_count(s->eng));
    metric(b, "footfall_uptime_seconds", "gauge", "Seconds since the server started.");
    ff_buf_addf(b, "footfall_uptime_seconds %.3f\n", now_s() - (double)s->started_us / 1e6);
    if (s->opts.metrics_per_space) {
        metric(b, "footfall_space_occupancy", "gauge", "Current occupancy per space.");
        ff_engine_spaces(s->eng, space_gauge, b);
    }
}

void ff__metrics_archived(void *ctx, const ff_archive_news *news)
{
    const ff_server *s = ctx;
    if (s->opts.quiet) return;
    char t[FF_TIME_STRLEN], which[200];
    ff_time_format(news->archived_upto, t);
    if (news->segments == 1)
        snprintf(which, sizeof which, "archived segment %s", news->first);
    else
        snprintf(which, sizeof which, "%u archived segments, %s to %s,", news->segments,
                 news->first, news->last);
    fprintf(stderr, "footfalld: %s adopted; archived until %s, %s\n", which, t,
            news->readable ? "read from --archive-dir"
                           : "answered 410 before that (no --archive-dir)");
}
