/*
 * timefmt.c -- RFC 3339 timestamps and durations (timefmt.h).
 *
 * Parsing is one pass over fixed positions: "YYYY-MM-DD" at 0, a separator at 10
 * ('T', 't' or ' '), "HH:MM:SS" at 11, then an optional '.' and 1..6 fraction digits,
 * then 'Z'/'z' or "+HH:MM"/"-HH:MM", then the end of the input. Every field is range
 * checked (month 1-12, day within its month with Gregorian leap years, hour < 24,
 * minute < 60, second < 60 -- a leap second ":60" is refused, offsets within ±23:59).
 * The date becomes a day number with Howard Hinnant's days_from_civil(), which needs no
 * tables and no libc time functions, so a parse costs a few dozen instructions.
 *
 * Formatting is the inverse (civil_from_days()) and is total over int64: years outside
 * 0000..9999 (only reachable from absurd values such as FF_TS_MIN) are written with a
 * sign and as many digits as they need, which still fits FF_TIME_STRLEN.
 */
#include "net/timefmt.h"

#include <string.h>

static inline int digit(char c)
{
    return (unsigned char)c - '0' < 10 ? c - '0' : -1;
}

/* Parses exactly n digits at s into *v; returns 0 or -1. */
static inline int digits(const char *s, int n, int *v)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        int d = digit(s[i]);
        if (d < 0) return -1;
        x = x * 10 + d;
    }
    *v = x;
    return 0;
}

static inline int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                   /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/*
 * The parser behind ff_time_parse() and ff_time_error(): on failure it returns
 * FF_EFORMAT with *why set to what is wrong, a phrase in static storage. Setting *why
 * costs nothing on the success path, so the CSV import pays nothing for the messages.
 */
static int parse_time(const char *s, size_t len, int64_t *us, const char **why)
{
    static const char layout[] = "expected YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or +HH:MM";
    int y, mo, d, h, mi, sec;
    *why = layout;
    if (len < 20) return FF_EFORMAT;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d))
        return FF_EFORMAT;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return FF_EFORMAT;
    if (digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return FF_EFORMAT;
    *why = "date or time out of range";
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 59)
        return FF_EFORMAT;

    /* SPEC: 0-6 fraction digits. More would be truncated, and a timestamp that means
     * something other than what it says is worse than a refused one. */
    size_t i = 19;
    int64_t frac = 0;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && digit(s[i]) >= 0) {
            if (i - start < 6) frac = frac * 10 + digit(s[i]);
            i++;
        }
        size_t nd = i - start;
        *why = nd ? "at most 6 fraction digits" : "no digits after '.'";
        if (nd == 0 || nd > 6) return FF_EFORMAT;
        for (size_t k = nd; k < 6; k++) frac *= 10;
    }
    *why = "expected Z or an offset +HH:MM or -HH:MM after the time";
    if (i >= len) return FF_EFORMAT;

    int64_t off = 0;
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (len - i < 6 || digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return FF_EFORMAT;
        off = (int64_t)(oh * 60 + om) * FF_MINUTE;
        if (s[i] == '-') off = -off;
        i += 6;
    } else {
        return FF_EFORMAT;
    }
    *why = "unexpected characters after the time zone";
    if (i != len) return FF_EFORMAT;

    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec;
    *us = secs * FF_SECOND + frac - off;
    return 0;
}

int ff_time_parse(const char *s, size_t len, int64_t *us)
{
    const char *why;
    return parse_time(s, len, us, &why);
}

const char *ff_time_error(const char *s, size_t len)
{
    int64_t us;
    const char *why;
    return parse_time(s, len, &us, &why) == 0 ? NULL : why;
}

/* Writes v (>= 0) as exactly n digits, zero padded, at out. */
static inline void put_digits(char *out, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

static size_t put_year(char *out, int64_t y)
{
    if (y >= 0 && y <= 9999) {
        put_digits(out, y, 4);
        return 4;
    }
    size_t n = 0;
    out[n++] = y < 0 ? '-' : '+';
    uint64_t a = y < 0 ? (uint64_t)0 - (uint64_t)y : (uint64_t)y;
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + a % 10);
        a /= 10;
    } while (a);
    while (k < 4) tmp[k++] = '0';
    while (k) out[n++] = tmp[--k];
    return n;
}

size_t ff_time_format(int64_t us, char out[FF_TIME_STRLEN])
{
    int64_t days = us / FF_DAY, rem = us % FF_DAY;
    if (rem < 0) {
        days--;
        rem += FF_DAY;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int64_t secs = rem / FF_SECOND, frac = rem % FF_SECOND;

    size_t n = put_year(out, y);
    char *p = out + n;
    p[0] = '-';
    put_digits(p + 1, m, 2);
    p[3] = '-';
    put_digits(p + 4, d, 2);
    p[6] = 'T';
    put_digits(p + 7, secs / 3600, 2);
    p[9] = ':';
    put_digits(p + 10, secs / 60 % 60, 2);
    p[12] = ':';
    put_digits(p + 13, secs % 60, 2);
    p[15] = '.';
    n += 16;
    if (frac % 1000 == 0) {
        put_digits(out + n, frac / 1000, 3);
        n += 3;
    } else {
        put_digits(out + n, frac, 6);
        n += 6;
    }
    out[n++] = 'Z';
    out[n] = '\0';
    return n;
}

static const struct {
    const char *name;
    int64_t us;
} units[] = {
    {"d", FF_DAY}, {"h", FF_HOUR}, {"m", FF_MINUTE}, {"s", FF_SECOND}, {"ms", 1000}, {"us", 1},
};

int ff_duration_parse(const char *s, size_t len, int64_t *us)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && digit(s[i]) >= 0) {
        if (v > (uint64_t)INT64_MAX / 10) return FF_EFORMAT;
        v = v * 10 + (uint64_t)digit(s[i]);
        i++;
    }
    if (i == 0 || v > (uint64_t)INT64_MAX) return FF_EFORMAT;
    if (i == len) {
        if (v != 0) return FF_EFORMAT; /* a unit is required except for "0" */
        *us = 0;
        return 0;
    }
    for (size_t k = 0; k < FF_ARRAY_LEN(units); k++) {
        size_t ul = strlen(units[k].name);
        if (len - i == ul && memcmp(s + i, units[k].name, ul) == 0) {
            if (v > (uint64_t)(INT64_MAX / units[k].us)) return FF_EFORMAT;
            *us = (int64_t)v * units[k].us;
            return 0;
        }
    }
    return FF_EFORMAT;
}

size_t ff_duration_format(int64_t us, char out[FF_TIME_STRLEN])
{
    if (us == 0) {
        memcpy(out, "0", 2);
        return 1;
    }
    size_t n = 0;
    uint64_t a = us < 0 ? (uint64_t)0 - (uint64_t)us : (uint64_t)us;
    if (us < 0) out[n++] = '-';
    size_t k = 0;
    while ((uint64_t)units[k].us > a || a % (uint64_t)units[k].us != 0) k++;
    int len = snprintf(out + n, FF_TIME_STRLEN - n, "%llu%s",
                       (unsigned long long)(a / (uint64_t)units[k].us), units[k].name);
    return n + (size_t)len;
}
