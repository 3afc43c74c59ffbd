/*
 * timefmt.h -- RFC 3339 timestamps and durations, as the HTTP API and CSV spell them.
 *
 * Pure functions; no locale, no time zone database, no libc time functions on the hot
 * path (the CSV import parses a million timestamps a second through here).
 *
 * Input: "YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|z|+HH:MM|-HH:MM)", 'T' or 't' or ' ' between
 * date and time. Years 0001-9999. A 7th fraction digit is refused, not truncated: SPEC
 * allows 0-6, and footfall keeps microseconds, so more digits would be silently lost.
 * Output: always UTC with 'Z', with 3 fraction digits when the microseconds are a
 * whole number of milliseconds and 6 otherwise ("2018-02-24T08:45:21.893Z").
 *
 * Durations: a positive integer followed by a unit: "us", "ms", "s", "m", "h", "d"
 * ("90s", "15m", "1h", "7d", "180d"); "0" alone is zero.
 */
#ifndef FF_NET_TIMEFMT_H
#define FF_NET_TIMEFMT_H

#include "engine/ff.h"

#define FF_TIME_STRLEN 32 /* room for any formatted timestamp with its NUL */

/* Parses s[0..len) as RFC 3339 into *us. Returns 0 or FF_EFORMAT. */
int ff_time_parse(const char *s, size_t len, int64_t *us);
/* Why ff_time_parse() refuses s[0..len): a short phrase ("at most 6 fraction digits")
 * in static storage, or NULL when s parses. For error messages, not for the hot path. */
const char *ff_time_error(const char *s, size_t len);
/* Writes the RFC 3339 form of us into out (NUL-terminated); returns its length. */
size_t ff_time_format(int64_t us, char out[FF_TIME_STRLEN]);
/* Parses a duration into microseconds. Returns 0 or FF_EFORMAT. */
int ff_duration_parse(const char *s, size_t len, int64_t *us);
/* Formats microseconds as the shortest exact duration ("15m", "7d", "1500ms"). */
size_t ff_duration_format(int64_t us, char out[FF_TIME_STRLEN]);

#endif /* FF_NET_TIMEFMT_H */
