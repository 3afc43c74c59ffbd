/*
 * client_fmt.c -- printing the server's answers for people (client_fmt.h).
 *
 * Each printer reads the fields it knows with small accessors that turn a missing or
 * mistyped field into "-", and lays rows out through ff_table, which measures every
 * column before it writes (UTF-8 names are measured in code points, so "Café" lines up).
 */
#include "net/client_fmt.h"

#include <string.h>

/* ---- tables -------------------------------------------------------------------------- */

struct ff_table {
    size_t ncols, nrows, cap;
    char **cells; /* nrows * ncols, row 0 the header */
    bool *numeric;
};

ff_table *ff_table_new(size_t ncols, const char *const *header, const bool *numeric)
{
    ff_table *t = ff_xcalloc(1, sizeof *t);
    t->ncols = ncols;
    t->numeric = ff_xcalloc(ncols, sizeof *t->numeric);
    if (numeric) memcpy(t->numeric, numeric, ncols * sizeof *numeric);
    ff_table_add(t, header);
    return t;
}

void ff_table_add(ff_table *t, const char *const *cells)
{
    t->cells = ff_xgrow(t->cells, &t->cap, (t->nrows + 1) * t->ncols, sizeof *t->cells);
    for (size_t c = 0; c < t->ncols; c++)
        t->cells[t->nrows * t->ncols + c] = ff_xstrdup(cells[c] ? cells[c] : "-");
    t->nrows++;
}

/* Display width: code points, not bytes. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void pad(ff_buf *out, size_t n)
{
    for (; n; n--) ff_buf_add(out, " ", 1);
}

void ff_table_write(ff_table *t, ff_buf *out, int indent)
{
    size_t *w = ff_xcalloc(t->ncols, sizeof *w);
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t x = width(t->cells[r * t->ncols + c]);
            if (x > w[c]) w[c] = x;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        pad(out, (size_t)indent);
        size_t owed = 0; /* padding of a left-aligned cell, written only if more follows */
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t gap = w[c] - width(s);
            if (c) owed += 2;
            if (t->numeric[c]) {
                pad(out, owed + gap);
                ff_buf_adds(out, s);
                owed = 0;
            } else {
                pad(out, owed);
                ff_buf_adds(out, s);
                owed = gap;
            }
        }
        ff_buf_add(out, "\n", 1);
    }
    free(w);
}

void ff_table_free(ff_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->cells);
    free(t->numeric);
    free(t);
}

/* ---- field accessors ------------------------------------------------------------------ */

/* The field as text in buf (strings as is, integers in decimal, booleans yes/no,
 * null or missing as "-"). */
static const char *text(json_t *o, const char *key, char *buf, size_t len)
{
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, len, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(buf, len, "-");
    return buf;
}

static json_t *array(json_t *o, const char *key)
{
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_array(v) ? v : NULL;
}

/* ---- count and counts ----------------------------------------------------------------- */

void ff_cli_count_line(ff_buf *out, json_t *c)
{
    char b[5][32];
    const char *name = text(c, "name", b[0], sizeof b[0]);
    if (strcmp(name, "-") == 0) name = text(c, "space_id", b[0], sizeof b[0]);
    ff_buf_addf(out, "%s  occupancy %s  at %s  %s  revision %s\n", name,
                text(c, "occupancy", b[1], sizeof b[1]), text(c, "at", b[2], sizeof b[2]),
                text(c, "status", b[3], sizeof b[3]), text(c, "revision", b[4], sizeof b[4]));
}

static const char *const bucket_keys[] = {"start",         "end",   "occupancy_start",
                                          "occupancy_end", "min",   "max",
                                          "entrances",     "exits", "status"};
#define NBUCKET FF_ARRAY_LEN(bucket_keys)

void ff_cli_counts_table(ff_buf *out, json_t *counts)
{
    static const char *const header[NBUCKET] = {"start", "end", "occ_start", "occ_end", "min",
                                                "max",   "in",  "out",       "status"};
    static const bool numeric[NBUCKET] = {0, 0, 1, 1, 1, 1, 1, 1, 0};
    char b[4][32];
    const char *name = text(counts, "name", b[0], sizeof b[0]);
    ff_buf_addf(out, "%s  interval %s  revision %s\n", name,
                text(counts, "interval", b[1], sizeof b[1]),
                text(counts, "revision", b[2], sizeof b[2]));
    ff_table *t = ff_table_new(NBUCKET, header, numeric);
    json_t *buckets = array(counts, "buckets"), *bk;
    size_t i;
    char cell[NBUCKET][40];
    json_array_foreach(buckets, i, bk)
    {
        const char *row[NBUCKET];
        for (size_t k = 0; k < NBUCKET; k++) row[k] = text(bk, bucket_keys[k], cell[k], 40);
        ff_table_add(t, row);
    }
    ff_table_write(t, out, 0);
    ff_table_free(t);
}

void ff_cli_counts_csv(ff_buf *out, json_t *counts)
{
    for (size_t k = 0; k < NBUCKET; k++) ff_buf_addf(out, "%s%s", k ? "," : "", bucket_keys[k]);
    ff_buf_add(out, "\n", 1);
    json_t *buckets = array(counts, "buckets"), *bk;
    size_t i;
    char cell[40];
    json_array_foreach(buckets, i, bk)
    {
        for (size_t k = 0; k < NBUCKET; k++)
            ff_buf_addf(out, "%s%s", k ? "," : "", text(bk, bucket_keys[k], cell, sizeof cell));
        ff_buf_add(out, "\n", 1);
    }
}

/* ---- topology -------------------------------------------------------------------------- */

/* "1 Space A" for an id found in list (by "id"), the bare id otherwise, "-" for none. */
static const char *named(json_t *list, json_t *idv, char *buf, size_t len)
{
    if (!json_is_integer(idv)) return "-";
    json_int_t id = json_integer_value(idv);
    json_t *it;
    size_t i;
    json_array_foreach(list, i, it)
    {
        json_t *v = json_object_get(it, "id"), *n = json_object_get(it, "name");
        if (json_is_integer(v) && json_integer_value(v) == id && json_is_string(n)) {
            snprintf(buf, len, "%lld %s", (long long)id, json_string_value(n));
            return buf;
        }
    }
    snprintf(buf, len, "%lld", (long long)id);
    return buf;
}

static void spaces_table(ff_buf *out, json_t *spaces)
{
    static const char *const h[] = {"id",        "name",   "capacity", "clamp_at_zero",
                                    "occupancy", "status", "revision"};
    static const char *const keys[] = {"id",        "name",   "capacity", "clamp_at_zero",
                                       "occupancy", "status", "revision"};
    static const bool num[] = {1, 0, 1, 0, 1, 0, 1};
    ff_buf_addf(out, "Spaces (%zu)\n", json_array_size(spaces));
    ff_table *t = ff_table_new(7, h, num);
    json_t *it;
    size_t i;
    char cell[7][128];
    json_array_foreach(spaces, i, it)
    {
        const char *row[7];
        for (size_t k = 0; k < 7; k++) row[k] = text(it, keys[k], cell[k], sizeof cell[k]);
        ff_table_add(t, row);
    }
    ff_table_write(t, out, 2);
    ff_table_free(t);
}

static void doorways_table(ff_buf *out, json_t *doorways)
{
    static const char *const h[] = {"id", "name"};
    static const bool num[] = {1, 0};
    ff_buf_addf(out, "Doorways (%zu)\n", json_array_size(doorways));
    ff_table *t = ff_table_new(2, h, num);
    json_t *it;
    size_t i;
    char cell[2][128];
    json_array_foreach(doorways, i, it)
    {
        const char *row[2] = {text(it, "id", cell[0], 128), text(it, "name", cell[1], 128)};
        ff_table_add(t, row);
    }
    ff_table_write(t, out, 2);
    ff_table_free(t);
}

static void dpus_table(ff_buf *out, json_t *dpus, json_t *spaces, json_t *doorways)
{
    static const char *const h[] = {"dpu", "doorway", "entry (+1 into)", "exit (+1 out of)",
                                    "effective_from"};
    static const bool num[] = {1, 0, 0, 0, 0};
    ff_buf_addf(out, "DPUs (%zu)\n", json_array_size(dpus));
    ff_table *t = ff_table_new(5, h, num);
    json_t *it, *a;
    size_t i, j;
    char cell[5][160];
    json_array_foreach(dpus, i, it)
    {
        json_t *as = array(it, "assignments");
        const char *row[5] = {text(it, "id", cell[0], 160), "-", "-", "-", "-"};
        if (json_array_size(as) == 0) ff_table_add(t, row);
        json_array_foreach(as, j, a)
        {
            row[1] = named(doorways, json_object_get(a, "doorway_id"), cell[1], 160);
            row[2] = named(spaces, json_object_get(a, "entry_space_id"), cell[2], 160);
            row[3] = named(spaces, json_object_get(a, "exit_space_id"), cell[3], 160);
            json_t *from = json_object_get(a, "effective_from");
            row[4] = json_is_string(from) ? json_string_value(from) : "beginning of time";
            ff_table_add(t, row);
            row[0] = ""; /* later versions of the same DPU */
        }
    }
    ff_table_write(t, out, 2);
    ff_table_free(t);
}

void ff_cli_topology(ff_buf *out, json_t *spaces, json_t *doorways, json_t *dpus)
{
    json_t *s = array(spaces, "spaces"), *d = array(doorways, "doorways");
    json_t *u = array(dpus, "dpus");
    json_t *empty = json_array();
    spaces_table(out, s ? s : empty);
    ff_buf_add(out, "\n", 1);
    doorways_table(out, d ? d : empty);
    ff_buf_add(out, "\n", 1);
    dpus_table(out, u ? u : empty, s ? s : empty, d ? d : empty);
    json_decref(empty);
}

/* ---- problems -------------------------------------------------------------------------- */

void ff_cli_problem(ff_buf *out, const ff_http_response *r)
{
    json_t *p = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    json_t *title = json_object_get(p, "title"), *detail = json_object_get(p, "detail");
    if (json_is_string(title) || json_is_string(detail)) {
        char st[16];
        snprintf(st, sizeof st, "HTTP %d", r->status);
        ff_buf_adds(out, json_is_string(title) ? json_string_value(title) : st);
        if (json_is_string(detail)) ff_buf_addf(out, ": %s", json_string_value(detail));
    } else {
        ff_buf_addf(out, "HTTP %d", r->status);
        size_t n = 0;
        while (n < r->body_len && n < 200 && r->body[n] != '\n' && r->body[n] != '\r') n++;
        if (n) {
            ff_buf_adds(out, ": ");
            ff_buf_add(out, r->body, n);
        }
    }
    json_decref(p);
}
