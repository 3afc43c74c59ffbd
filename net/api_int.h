/*
 * api_int.h -- what the HTTP API's files share: api.c (routing, topology, operations),
 * api_events.c (POST /v1/events), api_query.c (count, counts, occupancy rows, DPU
 * events). Internal to net/.
 */
#ifndef FF_NET_API_INT_H
#define FF_NET_API_INT_H

#include "net/server_int.h"

#include <jansson.h>

/* Replaces the reply with an RFC 9457 problem document. */
void ff__api_problem(ff_api_reply *r, unsigned status, const char *slug, const char *title,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define BAD_REQUEST(r, ...) ff__api_problem(r, 400, "bad-request", "Bad Request", __VA_ARGS__)
#define NOT_FOUND(r, ...)   ff__api_problem(r, 404, "not-found", "Not Found", __VA_ARGS__)
#define CONFLICT(r, ...)    ff__api_problem(r, 409, "conflict", "Conflict", __VA_ARGS__)
/* The problem for an engine error code. */
void ff__api_engine_problem(ff_api_reply *r, int err, const char *what);
const char *ff__api_status_word(bool settled); /* "settled" or "pending" */
/* Reads RFC 3339 query argument `name`; false (with a 400 written) when it is present
 * but bad, or required and missing. */
bool ff__api_time_arg(const ff_api_req *q, ff_api_reply *r, const char *name, bool required,
                      int64_t *out, bool *present);
/* Parses the body as JSON; NULL with a 400 written on failure. Caller json_decref()s. */
json_t *ff__api_parse_body(const ff_api_req *q, ff_api_reply *r);

void ff__api_post_events(ff_server *s, const ff_api_req *q, ff_api_reply *r);
void ff__api_get_count(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id);
void ff__api_get_counts(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id);
void ff__api_get_rows(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id);
void ff__api_get_dpu_events(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id);

#endif /* FF_NET_API_INT_H */
