/*
 * csv.h -- the event CSV of SPEC §6, parsed from a byte array.
 *
 * The first non-empty line is the header: it must name `timestamp`, `direction` and
 * `dpu_id` (any order, case-sensitive, quoted or not); `seq` is optional; other columns
 * are ignored. Every later line is one event. Fields may be quoted ("1" and 1 both
 * work; "" inside quotes is a quote). Lines end in LF or CRLF; a last line without a
 * newline counts; empty lines are skipped. Line numbers are 1-based and count the
 * header line, so they match what an editor shows.
 *
 * A row that cannot be read is reported to the callback with a reason ("bad timestamp:
 * at most 6 fraction digits" -- a bad timestamp says what is wrong with it -- "bad
 * direction", "bad dpu_id", "bad seq", "missing field", "unterminated quote")
 * and parsing goes on with the next line: one bad row loses nothing else.
 */
#ifndef FF_NET_CSV_H
#define FF_NET_CSV_H

#include "engine/ff.h"

#include <stdbool.h>

/*
 * Called once per data row: ev is the parsed event (ev->reserved 0), or NULL with
 * reason set when the row is malformed. Both are valid only during the call. A non-zero return
 * stops parsing and is returned by ff_csv_parse().
 */
typedef int (*ff_csv_row_cb)(void *ctx, uint64_t line, const ff_event *ev, const char *reason);

/*
 * Parses buf[0..len). Returns 0, a callback's non-zero value, or FF_EFORMAT when the
 * header is missing or lacks a required column; then err (may be NULL, errlen bytes)
 * receives a sentence saying which.
 */
int ff_csv_parse(const char *buf, size_t len, ff_csv_row_cb cb, void *ctx, char *err,
                 size_t errlen);

/*
 * The same parse a part at a time: ff_csv_begin() on the buffer, which must stay put
 * until the end, then ff_csv_next() as often as wanted, each call reading at most
 * `rows` more data rows. ff_csv_next() returns 1 once the buffer is read, 0 when rows
 * were read and more remain, or what ff_csv_parse() returns on failure.
 */
typedef struct ff_csv_reader {
    const char *p, *end;
    uint64_t line;
    bool have_header;
    size_t ncols;
    unsigned char role[256]; /* the header's verdict: a column's role */
} ff_csv_reader;

void ff_csv_begin(ff_csv_reader *r, const char *buf, size_t len);
int ff_csv_next(ff_csv_reader *r, size_t rows, ff_csv_row_cb cb, void *ctx, char *err,
                size_t errlen);

#endif /* FF_NET_CSV_H */
