/*
 * client_fmt.h -- how the `footfall` command prints the server's answers: one-line
 * counts, bucket tables and CSV, the topology summary, and problem documents.
 *
 * Pure functions from parsed JSON (jansson) to text appended to an ff_buf; missing or
 * mistyped fields print as "-" rather than failing, so a newer server with extra or
 * renamed fields still gives readable output. Nothing here does I/O.
 */
#ifndef FF_NET_CLIENT_FMT_H
#define FF_NET_CLIENT_FMT_H

#include "net/httpc.h"
#include "net/jsonw.h"

#include <jansson.h>

/*
 * The one-line answer of `footfall count`, from a count document:
 * "Space A  occupancy -2  at 2018-03-02T16:39:37.240Z  settled  revision 0\n".
 */
void ff_cli_count_line(ff_buf *out, json_t *count);

/*
 * The buckets of a counts document as an aligned table with a header line
 * (start end occ_start occ_end min max in out status), preceded by a title line naming
 * the space, interval and revision.
 */
void ff_cli_counts_table(ff_buf *out, json_t *counts);
/* The same buckets as CSV with the API's field names as header. */
void ff_cli_counts_csv(ff_buf *out, json_t *counts);

/*
 * A readable summary of the topology: the {"spaces":[...]}, {"doorways":[...]} and
 * {"dpus":[...]} lists of the API, each as a table, assignments with names resolved.
 */
void ff_cli_topology(ff_buf *out, json_t *spaces, json_t *doorways, json_t *dpus);

/*
 * The sentence for an HTTP error answer: "<title>: <detail>" from a problem document,
 * else "HTTP <status>" plus the first line of the body. No trailing newline.
 */
void ff_cli_problem(ff_buf *out, const ff_http_response *r);

/*
 * A table of text cells printed with aligned columns (two spaces between them; columns
 * flagged numeric are right-aligned). Cells are copied. Used by the formatters above
 * and the import summary.
 */
typedef struct ff_table ff_table;
ff_table *ff_table_new(size_t ncols, const char *const *header, const bool *numeric);
void ff_table_add(ff_table *t, const char *const *cells);
/* Appends the table (header first, each line indented by `indent` spaces) to out. */
void ff_table_write(ff_table *t, ff_buf *out, int indent);
void ff_table_free(ff_table *t);

#endif /* FF_NET_CLIENT_FMT_H */
