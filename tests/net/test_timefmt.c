/*
 * test_timefmt.c -- RFC 3339 timestamps and durations (net/timefmt.c).
 */
#include "net/timefmt.h"

#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

static int parse(const char *s, int64_t *us)
{
    return ff_time_parse(s, strlen(s), us);
}

static int64_t must_parse(const char *s)
{
    int64_t us = 0;
    int rc = parse(s, &us);
    cr_assert_eq(rc, 0, "parse \"%s\" failed: %d", s, rc);
    return us;
}

static const char *fmt(int64_t us)
{
    static char out[FF_TIME_STRLEN];
    size_t n = ff_time_format(us, out);
    cr_assert_eq(n, strlen(out));
    return out;
}

#define T_2018 1519461921893000LL /* 2018-02-24T08:45:21.893Z */

Test(timefmt, sample_format)
{
    cr_assert_eq(must_parse("2018-02-24T08:45:21.893Z"), T_2018);
    cr_assert_str_eq(fmt(T_2018), "2018-02-24T08:45:21.893Z");
    cr_assert_eq(must_parse("1970-01-01T00:00:00Z"), 0);
    cr_assert_str_eq(fmt(0), "1970-01-01T00:00:00.000Z");
    cr_assert_str_eq(fmt(1), "1970-01-01T00:00:00.000001Z");
    cr_assert_str_eq(fmt(-1), "1969-12-31T23:59:59.999999Z");
    cr_assert_str_eq(fmt(-1000), "1969-12-31T23:59:59.999Z");
    cr_assert_str_eq(fmt(T_2018 + 4), "2018-02-24T08:45:21.893004Z");
}

Test(timefmt, separators_and_lowercase)
{
    cr_assert_eq(must_parse("2018-02-24t08:45:21.893z"), T_2018);
    cr_assert_eq(must_parse("2018-02-24 08:45:21.893Z"), T_2018);
    cr_assert_eq(must_parse("2018-02-24T08:45:21.893+00:00"), T_2018);
    cr_assert_eq(must_parse("2018-02-24T08:45:21.893-00:00"), T_2018);
}

Test(timefmt, offsets)
{
    cr_assert_eq(must_parse("2018-02-24T09:45:21.893+01:00"), T_2018);
    cr_assert_eq(must_parse("2018-02-24T03:15:21.893-05:30"), T_2018);
    cr_assert_eq(must_parse("2018-02-25T08:44:21.893+23:59"), T_2018);
    cr_assert_eq(must_parse("2018-02-23T08:46:21.893-23:59"), T_2018);
    /* an offset can cross midnight, month and year boundaries */
    cr_assert_eq(must_parse("2000-01-01T00:30:00+01:00"), must_parse("1999-12-31T23:30:00Z"));
}

Test(timefmt, fraction_digits_zero_to_six)
{
    static const struct {
        const char *s;
        int64_t frac;
    } cases[] = {
        {"2018-02-24T08:45:21Z", 0},
        {"2018-02-24T08:45:21.8Z", 800000},
        {"2018-02-24T08:45:21.89Z", 890000},
        {"2018-02-24T08:45:21.893Z", 893000},
        {"2018-02-24T08:45:21.8931Z", 893100},
        {"2018-02-24T08:45:21.89312Z", 893120},
        {"2018-02-24T08:45:21.893123Z", 893123},
        {"2018-02-24T08:45:21.000000Z", 0},
    };
    int64_t base = T_2018 - 893000;
    for (size_t i = 0; i < FF_ARRAY_LEN(cases); i++)
        cr_assert_eq(must_parse(cases[i].s), base + cases[i].frac, "%s", cases[i].s);
}

Test(timefmt, seven_or_more_fraction_digits_are_refused_not_truncated)
{
    static const char *bad[] = {
        "2018-02-24T08:45:21.8931239Z",
        "2018-02-24T08:45:21.0000000Z",
        "2018-02-24T08:45:21.893123999Z",
        "2018-02-24T08:45:21.8931234567890123+01:00",
    };
    for (size_t i = 0; i < FF_ARRAY_LEN(bad); i++) {
        int64_t us = 12345;
        cr_assert_eq(parse(bad[i], &us), FF_EFORMAT, "accepted \"%s\"", bad[i]);
        cr_assert_eq(us, 12345);
        cr_assert_str_eq(ff_time_error(bad[i], strlen(bad[i])), "at most 6 fraction digits");
    }
}

Test(timefmt, error_says_what_is_wrong)
{
    static const struct {
        const char *s, *why;
    } cases[] = {
        {"2018-02-24", "expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM"},
        {"2018/02/24T08:45:21Z", "expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM"},
        {"2018-02-30T08:45:21Z", "date or time out of range"},
        {"2018-02-24T08:45:60Z", "date or time out of range"},
        {"2018-02-24T08:45:21.Z", "no digits after '.'"},
        {"2018-02-24T08:45:21.1234567Z", "at most 6 fraction digits"},
        {"2018-02-24T08:45:21.123", "expected Z or an offset +HH:MM or -HH:MM after the time"},
        {"2018-02-24T08:45:21+0100", "expected Z or an offset +HH:MM or -HH:MM after the time"},
        {"2018-02-24T08:45:21ZZ", "unexpected characters after the time zone"},
    };
    for (size_t i = 0; i < FF_ARRAY_LEN(cases); i++) {
        const char *why = ff_time_error(cases[i].s, strlen(cases[i].s));
        cr_assert(why != NULL, "%s", cases[i].s);
        cr_assert_str_eq(why, cases[i].why, "%s", cases[i].s);
    }
    cr_assert_null(ff_time_error("2018-02-24T08:45:21.893123Z", 27));
}

Test(timefmt, leap_days)
{
    int64_t us;
    cr_assert_eq(must_parse("2020-02-29T00:00:00Z") + FF_DAY, must_parse("2020-03-01T00:00:00Z"));
    cr_assert_eq(must_parse("2000-02-29T12:00:00Z") + FF_DAY, must_parse("2000-03-01T12:00:00Z"));
    cr_assert_eq(must_parse("2400-02-29T00:00:00Z") + FF_DAY, must_parse("2400-03-01T00:00:00Z"));
    cr_assert_eq(parse("2019-02-29T00:00:00Z", &us), FF_EFORMAT);
    cr_assert_eq(parse("1900-02-29T00:00:00Z", &us), FF_EFORMAT);
    cr_assert_eq(parse("2100-02-29T00:00:00Z", &us), FF_EFORMAT);
    cr_assert_eq(parse("2020-02-30T00:00:00Z", &us), FF_EFORMAT);
    cr_assert_str_eq(fmt(must_parse("2020-02-29T23:59:59.999999Z")), "2020-02-29T23:59:59.999999Z");
}

Test(timefmt, extreme_years)
{
    cr_assert_eq(must_parse("0001-01-01T00:00:00Z"), -62135596800LL * FF_SECOND);
    cr_assert_eq(must_parse("9999-12-31T23:59:59.999999Z"), 253402300799999999LL);
    cr_assert_str_eq(fmt(-62135596800LL * FF_SECOND), "0001-01-01T00:00:00.000Z");
    cr_assert_str_eq(fmt(253402300799999999LL), "9999-12-31T23:59:59.999999Z");
    /* formatting is total over int64 and fits the buffer */
    char out[FF_TIME_STRLEN];
    size_t n = ff_time_format(FF_TS_MIN, out);
    cr_assert_lt(n, FF_TIME_STRLEN);
    cr_assert_eq(out[0], '-');
    n = ff_time_format(FF_TS_MAX, out);
    cr_assert_lt(n, FF_TIME_STRLEN);
    cr_assert_eq(out[0], '+');
}

Test(timefmt, invalid_inputs)
{
    static const char *bad[] = {
        "",
        "2018",
        "2018-02-24",
        "2018-02-24T08:45:21",             /* no zone */
        "2018-02-24T08:45Z",               /* no seconds */
        "2018-02-24T08:45:21.Z",           /* dot without digits */
        "2018-02-24T08:45:21.1234567890Z", /* 10 fraction digits */
        "2018-02-24T08:45:21.893ZZ",
        "2018-02-24T08:45:21.893Z ",
        " 2018-02-24T08:45:21.893Z",
        "2018-02-24X08:45:21Z",
        "2018/02/24T08:45:21Z",
        "2018-2-24T08:45:21Z",
        "2018-02-24T8:45:21Z",
        "18-02-24T08:45:21Z",
        "0000-01-01T00:00:00Z",
        "2018-00-24T08:45:21Z",
        "2018-13-24T08:45:21Z",
        "2018-02-00T08:45:21Z",
        "2018-04-31T08:45:21Z",
        "2018-01-32T08:45:21Z",
        "2018-02-24T24:00:00Z",
        "2018-02-24T08:60:21Z",
        "2018-02-24T08:45:60Z", /* no leap seconds */
        "2018-02-24T08:45:21+01",
        "2018-02-24T08:45:21+0100",
        "2018-02-24T08:45:21+24:00",
        "2018-02-24T08:45:21+01:60",
        "2018-02-24T08:45:21+01:00Z",
        "2018-02-24T08:45:21 +01:00",
        "2018-02-24T08:45:21UTC",
        "+2018-02-24T08:45:21Z",
        "2018-02-24T08:45:21.89a3Z",
        "２018-02-24T08:45:21Z",
    };
    for (size_t i = 0; i < FF_ARRAY_LEN(bad); i++) {
        int64_t us = 12345;
        cr_assert_eq(parse(bad[i], &us), FF_EFORMAT, "accepted \"%s\"", bad[i]);
        cr_assert_eq(us, 12345, "wrote *us for \"%s\"", bad[i]);
    }
}

Test(timefmt, length_is_respected)
{
    /* the parser reads only len bytes: a valid prefix is not enough, a longer buffer is cut */
    const char *s = "2018-02-24T08:45:21.893Zgarbage";
    int64_t us;
    cr_assert_eq(ff_time_parse(s, 24, &us), 0);
    cr_assert_eq(us, T_2018);
    for (size_t len = 0; len < 24; len++)
        if (len != 19 && len != 21 && len != 22 && len != 23)
            cr_assert_eq(ff_time_parse(s, len, &us), FF_EFORMAT, "len %zu", len);
    cr_assert_eq(ff_time_parse(s, 23, &us), FF_EFORMAT); /* "…21.893" without zone */
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

Test(timefmt, random_round_trip_and_timegm_agreement)
{
    const int64_t lo = -62135596800LL * FF_SECOND, hi = 253402300799999999LL;
    for (int i = 0; i < 200000; i++) {
        int64_t us = lo + (int64_t)(next() % (uint64_t)(hi - lo + 1));
        if (i & 1) us -= us % 1000; /* exercise the 3-digit form too */
        char out[FF_TIME_STRLEN];
        size_t n = ff_time_format(us, out);
        int64_t back;
        cr_assert_eq(ff_time_parse(out, n, &back), 0, "%s", out);
        cr_assert_eq(back, us, "%s", out);
        if (i % 16 == 0) {
            time_t t = (time_t)((us - ((us % FF_SECOND + FF_SECOND) % FF_SECOND)) / FF_SECOND);
            struct tm tm;
            gmtime_r(&t, &tm);
            char want[64];
            strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
            if (tm.tm_year + 1900 >= 1000)
                cr_assert_eq(strncmp(out, want, 19), 0, "%s vs %s", out, want);
        }
    }
}

Test(timefmt, every_day_of_four_centuries)
{
    int64_t day = must_parse("1900-01-01T00:00:00Z") / FF_DAY;
    for (int y = 1900; y < 2300; y++)
        for (int m = 1; m <= 12; m++)
            for (int d = 1; d <= 31; d++) {
                char s[64];
                snprintf(s, sizeof s, "%04d-%02d-%02dT12:00:00Z", y, m, d);
                int64_t us;
                int rc = parse(s, &us);
                int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
                int dim = m == 2 ? 28 + leap : (m == 4 || m == 6 || m == 9 || m == 11) ? 30 : 31;
                if (d > dim) {
                    cr_assert_eq(rc, FF_EFORMAT, "%s", s);
                    continue;
                }
                cr_assert_eq(rc, 0, "%s", s);
                cr_assert_eq(us, day * FF_DAY + 12 * FF_HOUR, "%s", s);
                day++;
            }
}

static int64_t dur(const char *s)
{
    int64_t us = -1;
    int rc = ff_duration_parse(s, strlen(s), &us);
    cr_assert_eq(rc, 0, "duration \"%s\": %d", s, rc);
    return us;
}

Test(timefmt, durations_parse)
{
    cr_assert_eq(dur("90s"), 90 * FF_SECOND);
    cr_assert_eq(dur("15m"), 15 * FF_MINUTE);
    cr_assert_eq(dur("1h"), FF_HOUR);
    cr_assert_eq(dur("7d"), 7 * FF_DAY);
    cr_assert_eq(dur("180d"), 180 * FF_DAY);
    cr_assert_eq(dur("1500ms"), 1500000);
    cr_assert_eq(dur("250us"), 250);
    cr_assert_eq(dur("0"), 0);
    cr_assert_eq(dur("106751991d"), 106751991 * FF_DAY);
    cr_assert_eq(dur("9223372036854775807us"), INT64_MAX);
    static const char *bad[] = {"",
                                "s",
                                "15",
                                "-5m",
                                "1.5h",
                                "15 m",
                                " 15m",
                                "15M",
                                "1w",
                                "1hh",
                                "1mss",
                                "1e3s",
                                "m15",
                                "99999999999999999999d",
                                "106751992d" /* > INT64_MAX µs */,
                                "9223372036854775808us"};
    for (size_t i = 0; i < FF_ARRAY_LEN(bad); i++) {
        int64_t us;
        cr_assert_eq(ff_duration_parse(bad[i], strlen(bad[i]), &us), FF_EFORMAT, "accepted \"%s\"",
                     bad[i]);
    }
}

Test(timefmt, durations_format_shortest)
{
    static const struct {
        int64_t us;
        const char *s;
    } cases[] = {
        {0, "0"},           {90 * FF_SECOND, "90s"}, {15 * FF_MINUTE, "15m"}, {FF_HOUR, "1h"},
        {7 * FF_DAY, "7d"}, {25 * FF_HOUR, "25h"},   {1500000, "1500ms"},     {1, "1us"},
        {1001, "1001us"},   {-5 * FF_MINUTE, "-5m"},
    };
    for (size_t i = 0; i < FF_ARRAY_LEN(cases); i++) {
        char out[FF_TIME_STRLEN];
        size_t n = ff_duration_format(cases[i].us, out);
        cr_assert_str_eq(out, cases[i].s);
        cr_assert_eq(n, strlen(cases[i].s));
        if (cases[i].us >= 0) cr_assert_eq(dur(out), cases[i].us);
    }
    char out[FF_TIME_STRLEN];
    ff_duration_format(INT64_MIN, out);
    cr_assert_str_eq(out, "-9223372036854775808us");
}
