/*
 * csv.c -- the event CSV of SPEC §6 (csv.h), parsed in place from a byte array.
 *
 * Design. The input is cut into lines with memchr('\n') (vectorised by libc); a '\r'
 * before the '\n' is dropped. A line never continues past its '\n', even inside quotes:
 * a quote left open at the end of a line makes that one row "unterminated quote" and the
 * next line starts afresh, so a stray quote costs one row, never the rest of the file,
 * and line numbers always match what an editor shows.
 *
 * The header (the first line that is not blank, after an optional UTF-8 BOM) maps each
 * column to a role: timestamp, direction, dpu_id, seq or ignored. A data line is then
 * walked field by field up to the last column with a role; later fields are not looked
 * at. Fields are used in place (no copy, no allocation): a quoted field is the bytes
 * between its quotes, an unquoted one is trimmed of spaces and tabs. Values:
 *
 *   timestamp  RFC 3339 per timefmt.h                else "bad timestamp: <why>"
 *   direction  "1", "+1" or "-1"                               else "bad direction"
 *   dpu_id     decimal 0..4294967295                           else "bad dpu_id"
 *   seq        decimal 0..65535, or empty for 0                else "bad seq"
 *
 * A line with fewer fields than the header's last role column is "missing field". Junk
 * after a closing quote ("1"x) makes the field bad for its role. The first problem from
 * the left is the one reported.
 */
#include "net/csv.h"

#include "net/timefmt.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>

enum role { R_NONE, R_TS, R_DIR, R_DPU, R_SEQ, R_COUNT };

static const char *const role_name[R_COUNT] = {NULL, "timestamp", "direction", "dpu_id", "seq"};
static const char *const role_reason[R_COUNT] = {NULL, "bad timestamp", "bad direction",
                                                 "bad dpu_id", "bad seq"};

/* The header's verdict: roles by column, up to the last column that has one. */
#define CSV_MAX_COLS   256
#define CSV_REASON_MAX 96 /* "bad timestamp: " and the longest ff_time_error() phrase */

typedef struct layout {
    unsigned char role[CSV_MAX_COLS];
    size_t ncols; /* columns to read on each data line: last role column + 1 */
} layout;

/* One field of a line: [p, p+n), bad when its quoting is broken. */
typedef struct field {
    const char *p;
    size_t n;
    bool unterminated; /* an opening quote without its closing quote on this line */
    bool junk;         /* bytes between a closing quote and the next comma */
    bool quoted;
} field;

static inline bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Reads the field starting at *pp on a line ending at e, and advances *pp past the
 * comma that ends it (or to e). Returns false when the line has no more fields.
 */
static inline bool next_field(const char **pp, const char *e, bool *more, field *f)
{
    const char *p = *pp;
    if (!*more) return false;
    f->unterminated = f->junk = f->quoted = false;
    while (p < e && blank(*p)) p++;
    if (p < e && *p == '"') {
        const char *q = ++p;
        f->quoted = true;
        for (;;) {
            const char *c = memchr(q, '"', (size_t)(e - q));
            if (!c) {
                f->unterminated = true;
                f->p = p;
                f->n = (size_t)(e - p);
                *pp = e;
                *more = false;
                return true;
            }
            if (c + 1 < e && c[1] == '"') {
                q = c + 2;
                continue;
            }
            f->p = p;
            f->n = (size_t)(c - p);
            p = c + 1;
            break;
        }
        while (p < e && blank(*p)) p++;
        if (p < e && *p != ',') {
            f->junk = true;
            const char *c = memchr(p, ',', (size_t)(e - p));
            p = c ? c : e;
        }
    } else {
        const char *s = p;
        while (p < e && *p != ',') p++;
        const char *t = p;
        while (t > s && blank(t[-1])) t--;
        f->p = s;
        f->n = (size_t)(t - s);
    }
    if (p < e) {
        *pp = p + 1; /* past the comma: one more field follows, maybe empty */
    } else {
        *pp = e;
        *more = false;
    }
    return true;
}

/* Parses an unsigned decimal of 1..10 digits no greater than max. */
static inline bool parse_uint(const char *p, size_t n, uint32_t max, uint32_t *out)
{
    if (n == 0 || n > 10) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned char)p[i] - '0';
        if (d > 9) return false;
        v = v * 10 + d;
    }
    if (v > max) return false;
    *out = (uint32_t)v;
    return true;
}

static inline bool parse_direction(const char *p, size_t n, int8_t *dir)
{
    if (n == 1 && p[0] == '1') {
        *dir = 1;
    } else if (n == 2 && p[1] == '1' && (p[0] == '+' || p[0] == '-')) {
        *dir = p[0] == '-' ? -1 : 1;
    } else {
        return false;
    }
    return true;
}

/* Parses field f for role r into ev; returns false when its value is bad. */
static inline bool parse_value(int r, const field *f, ff_event *ev)
{
    uint32_t v;
    switch (r) {
    case R_TS:
        return ff_time_parse(f->p, f->n, &ev->ts) == 0;
    case R_DIR:
        return parse_direction(f->p, f->n, &ev->direction);
    case R_DPU:
        if (!parse_uint(f->p, f->n, UINT32_MAX, &v)) return false;
        ev->dpu_id = v;
        return true;
    case R_SEQ:
        if (f->n == 0) {
            ev->seq = 0;
            return true;
        }
        if (!parse_uint(f->p, f->n, UINT16_MAX, &v)) return false;
        ev->seq = (uint16_t)v;
        return true;
    default:
        return true;
    }
}

/* Parses one data line [p, e); returns NULL and fills ev, or the reason it is bad (in
 * static storage or in scratch). A bad timestamp says what is wrong with it, so that a
 * file of 7-digit fractions is not just "bad timestamp" a million times. */
static inline const char *parse_row(const layout *L, const char *p, const char *e, ff_event *ev,
                                    char scratch[CSV_REASON_MAX])
{
    bool more = true;
    field f;
    ev->reserved = 0;
    ev->seq = 0;
    for (size_t col = 0; col < L->ncols; col++) {
        if (!next_field(&p, e, &more, &f)) return "missing field";
        if (f.unterminated) return "unterminated quote";
        int r = L->role[col];
        if (r == R_NONE) continue;
        if (f.junk || !parse_value(r, &f, ev)) {
            if (r != R_TS) return role_reason[r];
            const char *why = f.junk ? "junk after the closing quote" : ff_time_error(f.p, f.n);
            snprintf(scratch, CSV_REASON_MAX, "%s: %s", role_reason[r], why);
            return scratch;
        }
    }
    return NULL;
}

static bool line_is_blank(const char *p, const char *e)
{
    while (p < e && (blank(*p) || *p == '\r')) p++;
    return p == e;
}

static void say(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Reads the header line [p, e) (line number line) into L. */
static int parse_header(const char *p, const char *e, uint64_t line, layout *L, char *err,
                        size_t errlen)
{
    size_t col_of[R_COUNT] = {0};
    bool more = true;
    field f;
    memset(L, 0, sizeof *L);
    for (size_t col = 0; next_field(&p, e, &more, &f); col++) {
        if (f.unterminated || f.junk) {
            say(err, errlen, "the CSV header (line %llu) has a broken quote in column %zu",
                (unsigned long long)line, col + 1);
            return FF_EFORMAT;
        }
        for (int r = R_TS; r < R_COUNT; r++) {
            size_t len = strlen(role_name[r]);
            if (f.n != len || memcmp(f.p, role_name[r], len) != 0) continue;
            if (col_of[r]) {
                say(err, errlen, "the CSV header (line %llu) names \"%s\" twice",
                    (unsigned long long)line, role_name[r]);
                return FF_EFORMAT;
            }
            if (col >= CSV_MAX_COLS) {
                say(err, errlen,
                    "the CSV header (line %llu) puts \"%s\" in column %zu; at most %d columns are "
                    "read",
                    (unsigned long long)line, role_name[r], col + 1, CSV_MAX_COLS);
                return FF_EFORMAT;
            }
            col_of[r] = col + 1;
            L->role[col] = (unsigned char)r;
            if (col + 1 > L->ncols) L->ncols = col + 1;
        }
    }
    for (int r = R_TS; r <= R_DPU; r++) {
        if (col_of[r]) continue;
        say(err, errlen,
            "the CSV header (line %llu) has no \"%s\" column; it needs timestamp, direction "
            "and dpu_id (seq is optional)",
            (unsigned long long)line, role_name[r]);
        return FF_EFORMAT;
    }
    return 0;
}

void ff_csv_begin(ff_csv_reader *r, const char *buf, size_t len)
{
    _Static_assert(sizeof(r->role) == CSV_MAX_COLS, "the reader holds a layout");
    memset(r, 0, sizeof(*r));
    r->p = buf, r->end = buf + len;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) r->p += 3;
}

int ff_csv_next(ff_csv_reader *r, size_t rows, ff_csv_row_cb cb, void *ctx, char *err,
                size_t errlen)
{
    const char *p = r->p, *end = r->end;
    layout lay, *L = &lay; /* the reader's copy of the header's verdict */
    memcpy(lay.role, r->role, sizeof lay.role);
    lay.ncols = r->ncols;
    if (err && errlen) err[0] = '\0';
    while (p < end && rows > 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end, *next = nl ? nl + 1 : end;
        r->line++;
        if (e > p && e[-1] == '\r') e--;
        if (FF_UNLIKELY(!r->have_header)) {
            if (!line_is_blank(p, e)) {
                int rc = parse_header(p, e, r->line, L, err, errlen);
                if (rc) return rc;
                memcpy(r->role, lay.role, sizeof r->role);
                r->ncols = lay.ncols;
                r->have_header = true;
            }
        } else if (!line_is_blank(p, e)) {
            ff_event ev;
            char scratch[CSV_REASON_MAX];
            const char *why = parse_row(L, p, e, &ev, scratch);
            int rc = why ? cb(ctx, r->line, NULL, why) : cb(ctx, r->line, &ev, NULL);
            rows--;
            if (rc) {
                r->p = next;
                return rc;
            }
        }
        p = next;
    }
    r->p = p;
    if (p < end) return 0;
    if (!r->have_header) {
        say(err, errlen, "the CSV has no header line (it needs timestamp, direction and dpu_id)");
        return FF_EFORMAT;
    }
    return 1;
}

int ff_csv_parse(const char *buf, size_t len, ff_csv_row_cb cb, void *ctx, char *err, size_t errlen)
{
    ff_csv_reader r;
    ff_csv_begin(&r, buf, len);
    int rc = ff_csv_next(&r, SIZE_MAX, cb, ctx, err, errlen);
    return rc == 1 ? 0 : rc;
}
