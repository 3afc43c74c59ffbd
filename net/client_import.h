/*
 * client_import.h -- `footfall import`: a CSV file into the server over TCP with acks.
 *
 * The CSV is parsed in place (csv.h) straight into batch frames (wire.h), which go out
 * over one TCP connection with a window of frames in flight; acks come back in frame
 * order and are matched to the oldest frame in flight. A frame whose ack does not come
 * (timeout, closed connection) is sent again on a new connection, as is every frame
 * after it: the server's duplicate detection makes the repeat harmless. A frame acked
 * "overloaded" is sent again after a pause.
 *
 * An ack carries counts only. For a frame whose ack counts refused rows, the frame's
 * rows are sent once more as JSON to POST /v1/events (the accepted ones come back as
 * duplicates) to learn which rows were refused and why; those become line numbers in
 * the summary. The counts of the summary are always the TCP acks'.
 */
#ifndef FF_NET_CLIENT_IMPORT_H
#define FF_NET_CLIENT_IMPORT_H

#include "net/httpc.h"
#include "net/jsonw.h"

#include <stdbool.h>

typedef struct ff_import_opts {
    ff_endpoint tcp, http;
    const char *token;  /* bearer token for the HTTP resend; NULL: none */
    size_t batch;       /* rows per frame, 1..4096 (default 4096) */
    size_t window;      /* frames in flight, >= 1 (default 16) */
    int timeout_ms;     /* wait for an ack before reconnecting (default 30000) */
    int retries;        /* reconnect attempts in a row before giving up (default 8) */
    bool progress;      /* draw a progress bar on stderr */
    bool resolve;       /* learn the lines of refused rows over HTTP (default true) */
    const char *source; /* file name for messages */
} ff_import_opts;

void ff_import_opts_default(ff_import_opts *o);

enum ff_issue_kind {
    FF_ISSUE_MALFORMED,  /* the CSV row could not be read */
    FF_ISSUE_REFUSED,    /* the server refused the row */
    FF_ISSUE_UNRESOLVED, /* `count` rows of lines line..line_end refused, which unknown */
};

typedef struct ff_import_issue {
    uint64_t line, line_end;
    uint32_t count;
    uint16_t reason; /* index into ff_import_result.reasons */
    uint8_t kind;    /* enum ff_issue_kind */
} ff_import_issue;

typedef struct ff_import_result {
    uint64_t rows; /* data rows read: valid + malformed */
    uint64_t accepted, duplicates, late, refused, malformed;
    uint64_t frames, resent_frames, reconnects;
    double elapsed_s;
    ff_import_issue *issues; /* sorted by line once ff_import_run returns */
    size_t nissues, issues_cap;
    char **reasons; /* interned reason strings, owned */
    size_t nreasons, reasons_cap;
    bool dedup_off_suspected; /* a resend was accepted again: resolution stopped */
} ff_import_result;

/*
 * Imports the CSV in buf[0..len). Returns 0 when every row was read and acknowledged
 * (refusals and malformed rows are in res, not errors), or a negative error with a
 * sentence in err: FF_EFORMAT for a CSV without a usable header, -errno or FF_EFORMAT
 * when the server cannot be reached or breaks the protocol after opts->retries
 * attempts. res holds what was acknowledged either way; release it with
 * ff_import_result_release().
 */
int ff_import_run(const char *buf, size_t len, const ff_import_opts *o, ff_import_result *res,
                  char *err, size_t errlen);

void ff_import_result_release(ff_import_result *res);

/* Appends the summary (counts, speed, then up to max_issues lines with reasons; 0: all)
 * to out. */
void ff_import_summary(const ff_import_result *res, ff_buf *out, size_t max_issues);

/* ---- pure pieces, exposed for tests ---- */

/* Writes events as the JSON array POST /v1/events takes. */
void ff_import_events_json(ff_buf *out, const ff_event *ev, size_t n);
/*
 * Reads the answer of POST /v1/events (body) for a resend of n rows whose CSV lines are
 * lines[0..n) and records its refusals in res. *accepted receives the answer's
 * accepted count. Returns the number of refusals recorded, or FF_EFORMAT.
 */
int ff_import_apply_answer(ff_import_result *res, const char *body, size_t len,
                           const uint64_t *lines, size_t n, uint64_t *accepted);
/* Records one issue (reason is copied/interned). */
void ff_import_add_issue(ff_import_result *res, int kind, uint64_t line, uint64_t line_end,
                         uint32_t count, const char *reason);

#endif /* FF_NET_CLIENT_IMPORT_H */
