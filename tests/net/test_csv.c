/*
 * test_csv.c -- the event CSV parser (net/csv.c): the sample file, layouts, line
 * endings, every kind of bad row with its line number, header errors, speed.
 */
#include "net/csv.h"

#include "net/timefmt.h"

#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

typedef struct row {
    uint64_t line;
    ff_event ev;
    const char *reason; /* interned (a reason is valid only during the callback), or NULL */
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
    size_t stop_after; /* 0: never */
} rows;

/* A lasting copy of reason: the few distinct reasons of a test, each stored once. */
static const char *intern(const char *reason)
{
    static char pool[32][128];
    static size_t n;
    for (size_t i = 0; i < n; i++)
        if (strcmp(pool[i], reason) == 0) return pool[i];
    cr_assert_lt(n, FF_ARRAY_LEN(pool));
    snprintf(pool[n], sizeof pool[n], "%s", reason);
    return pool[n++];
}

static int collect(void *ctx, uint64_t line, const ff_event *ev, const char *reason)
{
    rows *r = ctx;
    r->v = ff_xgrow(r->v, &r->cap, r->n + 1, sizeof *r->v);
    row *x = &r->v[r->n++];
    x->line = line;
    x->reason = reason ? intern(reason) : NULL;
    if (ev) x->ev = *ev;
    cr_assert((ev == NULL) != (reason == NULL), "exactly one of ev and reason");
    if (r->stop_after && r->n == r->stop_after) return 42;
    return 0;
}

static char errbuf[256];

static int parse(const char *s, rows *r)
{
    memset(r, 0, sizeof *r);
    return ff_csv_parse(s, strlen(s), collect, r, errbuf, sizeof errbuf);
}

static int64_t ts(const char *s)
{
    int64_t us;
    cr_assert_eq(ff_time_parse(s, strlen(s), &us), 0, "%s", s);
    return us;
}

static void assert_event(const row *x, uint64_t line, uint32_t dpu, int dir, uint16_t seq,
                         const char *t)
{
    cr_assert_null(x->reason, "line %llu: unexpected reason %s", (unsigned long long)x->line,
                   x->reason);
    cr_assert_eq(x->line, line);
    cr_assert_eq(x->ev.dpu_id, dpu, "line %llu", (unsigned long long)line);
    cr_assert_eq(x->ev.direction, dir, "line %llu", (unsigned long long)line);
    cr_assert_eq(x->ev.seq, seq, "line %llu", (unsigned long long)line);
    cr_assert_eq(x->ev.reserved, 0);
    cr_assert_eq(x->ev.ts, ts(t), "line %llu", (unsigned long long)line);
}

static void assert_bad(const row *x, uint64_t line, const char *reason)
{
    cr_assert_eq(x->line, line, "want line %llu, got %llu", (unsigned long long)line,
                 (unsigned long long)x->line);
    cr_assert_not_null(x->reason, "line %llu parsed but should be \"%s\"", (unsigned long long)line,
                       reason);
    cr_assert_str_eq(x->reason, reason, "line %llu", (unsigned long long)line);
}

static char *slurp(const char *name, size_t *len)
{
    const char *dir = getenv("FF_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/data", name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s (set FF_TEST_DATA)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = ff_xmalloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

Test(csv, sample_file)
{
    size_t len;
    char *buf = slurp("dpu_data.csv", &len);
    rows r = {0};
    cr_assert_eq(ff_csv_parse(buf, len, collect, &r, errbuf, sizeof errbuf), 0, "%s", errbuf);
    /* SPEC §0 says 562 events; the file holds 563 data rows (564 lines, 33 repeats) */
    cr_assert_eq(r.n, 563);
    size_t plus = 0, minus = 0, d283 = 0, d423 = 0;
    for (size_t i = 0; i < r.n; i++) {
        cr_assert_null(r.v[i].reason, "line %llu: %s", (unsigned long long)r.v[i].line,
                       r.v[i].reason);
        cr_assert_eq(r.v[i].line, i + 2);
        plus += r.v[i].ev.direction == 1;
        minus += r.v[i].ev.direction == -1;
        d283 += r.v[i].ev.dpu_id == 283;
        d423 += r.v[i].ev.dpu_id == 423;
    }
    cr_assert_eq(plus + minus, 563);
    cr_assert_eq(d283 + d423, 563);
    assert_event(&r.v[0], 2, 423, 1, 0, "2018-02-24T08:45:21.893Z");
    assert_event(&r.v[1], 3, 423, -1, 0, "2018-02-24T14:01:52.470Z");
    /* the file ends without a newline; its last row still counts */
    cr_assert_neq(buf[len - 1], '\n');
    cr_assert_eq(r.v[562].line, 564);
    assert_event(&r.v[562], 564, 283, 1, 0, "2018-03-02T16:39:37.240Z");
    free(r.v);
    free(buf);
}

Test(csv, any_column_order_and_quoting)
{
    rows r;
    cr_assert_eq(parse("dpu_id,\"direction\",timestamp\n"
                       "7,-1,2018-02-24T08:45:21.893Z\n"
                       "\"8\",\"1\",\"2018-02-24T08:45:22Z\"\n"
                       "9,+1,2018-02-24T09:45:22+01:00\n",
                       &r),
                 0, "%s", errbuf);
    cr_assert_eq(r.n, 3);
    assert_event(&r.v[0], 2, 7, -1, 0, "2018-02-24T08:45:21.893Z");
    assert_event(&r.v[1], 3, 8, 1, 0, "2018-02-24T08:45:22Z");
    assert_event(&r.v[2], 4, 9, 1, 0, "2018-02-24T08:45:22Z");
    free(r.v);
}

Test(csv, seq_and_ignored_columns)
{
    rows r;
    cr_assert_eq(parse("site,timestamp,note,seq,direction,dpu_id,extra\n"
                       "x,2018-02-24T08:45:21Z,\"a, \"\"quoted\"\" note\",65535,1,4294967295,e\n"
                       "\"y\",2018-02-24T08:45:22Z,,,-1,0\n"
                       ",2018-02-24T08:45:23Z,n,12,1,5,more,and,more\n",
                       &r),
                 0, "%s", errbuf);
    cr_assert_eq(r.n, 3);
    assert_event(&r.v[0], 2, UINT32_MAX, 1, 65535, "2018-02-24T08:45:21Z");
    assert_event(&r.v[1], 3, 0, -1, 0, "2018-02-24T08:45:22Z");
    assert_event(&r.v[2], 4, 5, 1, 12, "2018-02-24T08:45:23Z");
    free(r.v);
}

Test(csv, crlf_and_missing_trailing_newline)
{
    rows r;
    cr_assert_eq(parse("timestamp,direction,dpu_id\r\n"
                       "2018-02-24T08:45:21Z,1,1\r\n"
                       "\"2018-02-24T08:45:22Z\",\"-1\",\"2\"\r\n"
                       "2018-02-24T08:45:23Z,1,3",
                       &r),
                 0, "%s", errbuf);
    cr_assert_eq(r.n, 3);
    assert_event(&r.v[0], 2, 1, 1, 0, "2018-02-24T08:45:21Z");
    assert_event(&r.v[1], 3, 2, -1, 0, "2018-02-24T08:45:22Z");
    assert_event(&r.v[2], 4, 3, 1, 0, "2018-02-24T08:45:23Z");
    free(r.v);
    cr_assert_eq(parse("timestamp,direction,dpu_id\r\n2018-02-24T08:45:23Z,1,3\r", &r), 0);
    cr_assert_eq(r.n, 1);
    assert_event(&r.v[0], 2, 3, 1, 0, "2018-02-24T08:45:23Z");
    free(r.v);
}

Test(csv, empty_lines_are_skipped_but_counted)
{
    rows r;
    cr_assert_eq(parse("\n\r\n  \n"
                       "timestamp,direction,dpu_id\n"
                       "\n"
                       "2018-02-24T08:45:21Z,1,1\n"
                       "\r\n"
                       " \t \n"
                       "2018-02-24T08:45:22Z,-1,2\n"
                       "\n\n",
                       &r),
                 0, "%s", errbuf);
    cr_assert_eq(r.n, 2);
    assert_event(&r.v[0], 6, 1, 1, 0, "2018-02-24T08:45:21Z");
    assert_event(&r.v[1], 9, 2, -1, 0, "2018-02-24T08:45:22Z");
    free(r.v);
}

Test(csv, header_only_and_bom)
{
    rows r;
    cr_assert_eq(parse("timestamp,direction,dpu_id\n", &r), 0);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(parse("\xEF\xBB\xBFtimestamp,direction,dpu_id\n2018-02-24T08:45:21Z,1,1", &r), 0,
                 "%s", errbuf);
    cr_assert_eq(r.n, 1);
    assert_event(&r.v[0], 2, 1, 1, 0, "2018-02-24T08:45:21Z");
    free(r.v);
}

Test(csv, spaces_around_unquoted_fields)
{
    rows r;
    cr_assert_eq(parse("timestamp, direction , dpu_id\n"
                       " 2018-02-24T08:45:21Z , -1 ,\t42\n"
                       "2018-02-24T08:45:22Z, \"1\" ,43\n",
                       &r),
                 0, "%s", errbuf);
    cr_assert_eq(r.n, 2);
    assert_event(&r.v[0], 2, 42, -1, 0, "2018-02-24T08:45:21Z");
    assert_event(&r.v[1], 3, 43, 1, 0, "2018-02-24T08:45:22Z");
    free(r.v);
}

Test(csv, bad_rows_are_reported_with_line_numbers_and_parsing_goes_on)
{
    rows r;
    cr_assert_eq(parse("timestamp,direction,dpu_id,seq\n"         /* 1 */
                       "2018-02-24T08:45:21Z,1,1,\n"              /* 2 ok */
                       "2018-02-30T08:45:21Z,1,1\n"               /* 3 */
                       "yesterday,1,1\n"                          /* 4 */
                       ",1,1\n"                                   /* 5 */
                       "2018-02-24T08:45:21Z,0,1\n"               /* 6 */
                       "2018-02-24T08:45:21Z,2,1\n"               /* 7 */
                       "2018-02-24T08:45:21Z,,1\n"                /* 8 */
                       "2018-02-24T08:45:21Z,1.0,1\n"             /* 9 */
                       "2018-02-24T08:45:21Z,1,-1\n"              /* 10 */
                       "2018-02-24T08:45:21Z,1,4294967296\n"      /* 11 */
                       "2018-02-24T08:45:21Z,1,12a\n"             /* 12 */
                       "2018-02-24T08:45:21Z,1,\n"                /* 13 */
                       "2018-02-24T08:45:21Z,1,1,65536\n"         /* 14 */
                       "2018-02-24T08:45:21Z,1,1,x\n"             /* 15 */
                       "2018-02-24T08:45:21Z,1\n"                 /* 16 */
                       "2018-02-24T08:45:21Z\n"                   /* 17 */
                       "\"2018-02-24T08:45:21Z,1,1\n"             /* 18 */
                       "2018-02-24T08:45:21Z,\"1,1\n"             /* 19 */
                       "2018-02-24T08:45:21Z,\"1\"x,1\n"          /* 20 */
                       "2018-02-24T08:45:21Z,\"\"\"1\",1\n"       /* 21 */
                       "2018-02-24T08:45:22Z,-1,2,7\r\n"          /* 22 ok */
                       "x,y\n"                                    /* 23 */
                       "2018-02-24T08:45:23Z,\"-1\",\"3\",\"8\"", /* 24 ok */
                       &r),
                 0, "%s", errbuf);
    cr_assert_eq(r.n, 23);
    assert_event(&r.v[0], 2, 1, 1, 0, "2018-02-24T08:45:21Z");
    static const char *want[] = {
        "bad timestamp: date or time out of range",
        "bad timestamp: expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM",
        "bad timestamp: expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM",
        "bad direction",
        "bad direction",
        "bad direction",
        "bad direction",
        "bad dpu_id",
        "bad dpu_id",
        "bad dpu_id",
        "bad dpu_id",
        "bad seq",
        "bad seq",
        "missing field",
        "missing field",
        "unterminated quote",
        "unterminated quote",
        "bad direction",
        "bad direction",
    };
    for (size_t i = 0; i < FF_ARRAY_LEN(want); i++) assert_bad(&r.v[1 + i], 3 + i, want[i]);
    assert_event(&r.v[20], 22, 2, -1, 7, "2018-02-24T08:45:22Z");
    assert_bad(&r.v[21], 23,
               "bad timestamp: expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM");
    assert_event(&r.v[22], 24, 3, -1, 8, "2018-02-24T08:45:23Z");
    free(r.v);
}

Test(csv, missing_seq_field_with_seq_column_is_missing)
{
    rows r;
    cr_assert_eq(parse("seq,timestamp,direction,dpu_id\n3,2018-02-24T08:45:21Z,1\n", &r), 0);
    cr_assert_eq(r.n, 1);
    assert_bad(&r.v[0], 2, "missing field");
    free(r.v);
}

Test(csv, header_missing_a_column)
{
    static const struct {
        const char *csv, *word;
    } cases[] = {
        {"timestamp,direction\n2018-02-24T08:45:21Z,1\n", "\"dpu_id\""},
        {"dpu_id,direction\n1,1\n", "\"timestamp\""},
        {"timestamp,dpu_id,seq\n", "\"direction\""},
        {"Timestamp,Direction,DPU_ID\n", "\"timestamp\""}, /* case-sensitive */
        {"2018-02-24T08:45:21Z,1,1\n", "\"timestamp\""},   /* no header at all */
        {"timestamp,direction,dpu_id,timestamp\n", "twice"},
        {"\"timestamp,direction,dpu_id\n", "quote"},
        {"", "no header"},
        {"\n\r\n\n", "no header"},
    };
    for (size_t i = 0; i < FF_ARRAY_LEN(cases); i++) {
        rows r;
        errbuf[0] = '\0';
        cr_assert_eq(parse(cases[i].csv, &r), FF_EFORMAT, "case %zu", i);
        cr_assert_eq(r.n, 0, "case %zu: no rows before a bad header", i);
        cr_assert_not_null(strstr(errbuf, cases[i].word), "case %zu: \"%s\" lacks %s", i, errbuf,
                           cases[i].word);
        cr_assert_eq(errbuf[0], 't', "case %zu: a sentence: %s", i, errbuf);
        free(r.v);
    }
    /* err may be NULL */
    cr_assert_eq(ff_csv_parse("a,b\n", 4, collect, &(rows){0}, NULL, 0), FF_EFORMAT);
}

Test(csv, header_line_number_in_sentence)
{
    rows r;
    cr_assert_eq(parse("\n\nts,direction,dpu_id\n", &r), FF_EFORMAT);
    cr_assert_not_null(strstr(errbuf, "line 3"), "%s", errbuf);
}

Test(csv, callback_stops_parsing)
{
    rows r = {.stop_after = 2};
    const char *s = "timestamp,direction,dpu_id\n"
                    "2018-02-24T08:45:21Z,1,1\nbad,1,1\n2018-02-24T08:45:21Z,1,3\n";
    cr_assert_eq(ff_csv_parse(s, strlen(s), collect, &r, NULL, 0), 42);
    cr_assert_eq(r.n, 2);
    free(r.v);
}

Test(csv, length_is_respected)
{
    rows r = {0};
    const char *s = "timestamp,direction,dpu_id\n2018-02-24T08:45:21Z,1,12345";
    /* cutting the buffer mid-row makes a shorter dpu_id, never a read past len */
    cr_assert_eq(ff_csv_parse(s, strlen(s) - 2, collect, &r, NULL, 0), 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.v[0].ev.dpu_id, 123);
    free(r.v);
}

static int count_only(void *ctx, uint64_t line, const ff_event *ev, const char *reason)
{
    uint64_t *c = ctx;
    c[ev ? 0 : 1]++;
    if (ev) c[2] += (uint64_t)ev->ts + ev->dpu_id;
    return 0;
}

Test(csv, speed, .timeout = 120)
{
    const size_t n = 2000000;
    size_t cap = 64 + n * 48, len = 0;
    char *buf = ff_xmalloc(cap);
    len += (size_t)sprintf(buf, "\"timestamp\",\"direction\",\"dpu_id\"\n");
    int64_t t0 = ts("2018-02-24T08:45:21.893Z");
    for (size_t i = 0; i < n; i++) {
        char t[FF_TIME_STRLEN];
        ff_time_format(t0 + (int64_t)i * 1237, t);
        if (i & 1)
            len += (size_t)sprintf(buf + len, "\"%s\",\"-1\",\"%zu\"\n", t, i % 100000);
        else
            len += (size_t)sprintf(buf + len, "%s,1,%zu\n", t, i % 100000);
    }
    uint64_t c[3] = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(ff_csv_parse(buf, len, count_only, c, NULL, 0), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    cr_assert_eq(c[0], n);
    cr_assert_eq(c[1], 0);
    cr_log_info("csv parse: %zu rows, %.1f MB in %.3f s = %.2f M rows/s, %.0f MB/s", n,
                (double)len / 1e6, s, (double)n / s / 1e6, (double)len / s / 1e6);
    free(buf);
}

Test(csv, seven_fraction_digits_are_a_bad_timestamp_that_says_so)
{
    rows r;
    cr_assert_eq(parse("timestamp,direction,dpu_id\n"
                       "2018-02-24T08:45:21.893123Z,1,1\n"
                       "2018-02-24T08:45:21.8931234Z,1,1\n"
                       "\"2018-02-24T08:45:21.893123999Z\",-1,1\n"
                       "\"2018-02-24T08:45:21Z\"x,-1,1\n",
                       &r),
                 0, "%s", errbuf);
    cr_assert_eq(r.n, 4);
    assert_event(&r.v[0], 2, 1, 1, 0, "2018-02-24T08:45:21.893123Z");
    assert_bad(&r.v[1], 3, "bad timestamp: at most 6 fraction digits");
    assert_bad(&r.v[2], 4, "bad timestamp: at most 6 fraction digits");
    assert_bad(&r.v[3], 5, "bad timestamp: junk after the closing quote");
    free(r.v);
}

/* A parse a few rows at a time (ff_csv_next, as POST /v1/events steps a large body)
 * reads exactly what one ff_csv_parse reads: rows, line numbers, reasons, the end. */
Test(csv, a_parse_in_steps_reads_what_one_parse_reads)
{
    const char *s = "\xEF\xBB\xBF"
                    "\r\n\n"
                    "seq,dpu_id,\"timestamp\",direction\r\n"
                    "1,283,2018-02-24T08:45:21.893Z,1\r\n"
                    "\n"
                    "2,283,2018-02-24T08:45:22Z,-1\n"
                    "3,283,yesterday,1\n"
                    "4,\"423\",2018-02-24T08:45:23.5+01:00,1\n"
                    "5,423,2018-02-24T08:45:24Z,2\n"
                    "6,423,2018-02-24T08:45:25Z,-1";
    rows whole = {0};
    cr_assert_eq(ff_csv_parse(s, strlen(s), collect, &whole, errbuf, sizeof errbuf), 0, "%s",
                 errbuf);
    cr_assert_eq(whole.n, 6);
    for (size_t step = 1; step <= 7; step++) {
        rows r = {0};
        ff_csv_reader rd;
        ff_csv_begin(&rd, s, strlen(s));
        int rc, calls = 0;
        while ((rc = ff_csv_next(&rd, step, collect, &r, errbuf, sizeof errbuf)) == 0) {
            cr_assert_leq(r.n, (size_t)++calls * step, "step %zu: more than %zu rows a call", step,
                          step);
            cr_assert_lt(calls, 10);
        }
        cr_assert_eq(rc, 1, "step %zu: %d %s", step, rc, errbuf);
        cr_assert_eq(r.n, whole.n, "step %zu", step);
        for (size_t i = 0; i < r.n; i++) {
            cr_assert_eq(r.v[i].line, whole.v[i].line, "step %zu row %zu", step, i);
            cr_assert_eq(r.v[i].reason, whole.v[i].reason, "step %zu row %zu", step, i);
            cr_assert(memcmp(&r.v[i].ev, &whole.v[i].ev, sizeof(ff_event)) == 0 || r.v[i].reason,
                      "step %zu row %zu", step, i);
        }
        free(r.v);
    }
    free(whole.v);

    ff_csv_reader rd; /* a header error is told by the first call, before any row */
    rows r = {0};
    ff_csv_begin(&rd, "\n\nts,direction,dpu_id\n1,1,1\n", 26);
    cr_assert_eq(ff_csv_next(&rd, 1, collect, &r, errbuf, sizeof errbuf), FF_EFORMAT);
    cr_assert_eq(r.n, 0);
    cr_assert_not_null(strstr(errbuf, "line 3"), "%s", errbuf);
    ff_csv_begin(&rd, "", 0);
    cr_assert_eq(ff_csv_next(&rd, 1, collect, &r, errbuf, sizeof errbuf), FF_EFORMAT);
}
