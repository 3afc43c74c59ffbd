/*
 * api.c -- the HTTP API of SPEC §4 as request -> reply functions: routing, the token,
 * topology routes, operations. Events are in api_events.c, occupancy answers in
 * api_query.c.
 *
 * http.c turns an MHD request into an ff_api_req (method, path, argument and header
 * look-ups, the whole body) and sends back the ff_api_reply these files fill; nothing
 * here touches a socket.
 *
 * Answers on the hot paths (count, counts, occupancy rows, lists) are written by hand
 * into an ff_buf; request bodies are parsed with jansson. Errors are RFC 9457 problem
 * documents with a stable `type` URN per kind of problem. Every request that changes
 * state (POST, PUT, DELETE) needs the bearer token when the server has one, and its
 * answer waits until the change is durable (reply->wait_durable).
 */
#include "net/api_int.h"
#include "net/timefmt.h"

#include <jansson.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <strings.h>

/* ---- Replies ----------------------------------------------------------------------- */

void ff__api_problem(ff_api_reply *r, unsigned status, const char *slug, const char *title,
                     const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    ff_buf_reset(&r->body);
    r->status = status;
    r->content_type = "application/problem+json";
    r->wait_durable = false;
    ff_buf_adds(&r->body, "{\"type\":\"urn:footfall:problem:");
    ff_buf_adds(&r->body, slug);
    ff_buf_adds(&r->body, "\",\"title\":");
    ff_json_str(&r->body, title);
    ff_buf_addf(&r->body, ",\"status\":%u,\"detail\":", status);
    ff_json_str(&r->body, detail);
    ff_buf_adds(&r->body, "}");
}

/* Maps an engine error to its HTTP problem. */
void ff__api_engine_problem(ff_api_reply *r, int err, const char *what)
{
    switch (err) {
    case FF_ENOTFOUND:
        NOT_FOUND(r, "%s: %s", what, ff_strerror(err));
        break;
    case FF_EEXIST:
    case FF_ECONFLICT:
        CONFLICT(r, "%s: %s", what, ff_strerror(err));
        break;
    case FF_EOVERLOAD:
        ff__api_problem(r, 503, "overloaded", "Service Unavailable", "%s: %s", what,
                        ff_strerror(err));
        break;
    case FF_EARCHIVED:
        ff__api_problem(r, 410, "archived", "Gone", "%s: %s", what, ff_strerror(err));
        break;
    case FF_EINVAL:
    case FF_EREF:
    case FF_ETOOBIG:
    case FF_EFORMAT:
        BAD_REQUEST(r, "%s: %s", what, ff_strerror(err));
        break;
    case FF_ECORRUPT:
        ff__api_problem(r, 500, "corrupt", "Stored Data Is Corrupt",
                        "%s: a sealed segment failed a check; the answer is withheld "
                        "(footfall segments verify on the segments/ or --archive-dir "
                        "directory names every damaged file)",
                        what);
        break;
    default:
        ff__api_problem(r, 500, "internal", "Internal Server Error", "%s: %s", what,
                        ff_strerror(err));
    }
}

const char *ff__api_status_word(bool settled)
{
    return settled ? "settled" : "pending";
}

/* ---- Arguments --------------------------------------------------------------------- */

static bool parse_u32(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

/* Reads time argument `name`; false (with a 400 written) when present but bad or
 * required and missing. */
bool ff__api_time_arg(const ff_api_req *q, ff_api_reply *r, const char *name, bool required,
                      int64_t *out, bool *present)
{
    const char *v = q->arg(q->ctx, name);
    if (present) *present = v != NULL && v[0] != '\0';
    if (v == NULL || v[0] == '\0') {
        if (required) BAD_REQUEST(r, "query parameter '%s' is required (RFC 3339 time)", name);
        return !required;
    }
    if (ff_time_parse(v, strlen(v), out) < 0) {
        BAD_REQUEST(r, "query parameter '%s': '%s' is not an RFC 3339 time (%s)", name, v,
                    ff_time_error(v, strlen(v)));
        return false;
    }
    return true;
}

/* ---- JSON writers for topology ----------------------------------------------------- */

static void json_opt_id(ff_buf *b, uint32_t id)
{
    if (id)
        ff_buf_addu(b, id);
    else
        ff_buf_adds(b, "null");
}

static void write_space(ff_buf *b, const ff_space_info *s)
{
    ff_buf_adds(b, "{\"id\":");
    ff_buf_addu(b, s->def.id);
    ff_buf_adds(b, ",\"name\":");
    ff_json_str(b, s->def.name);
    ff_buf_adds(b, ",\"capacity\":");
    if (s->def.has_capacity)
        ff_buf_addi(b, s->def.capacity);
    else
        ff_buf_adds(b, "null");
    ff_buf_adds(b, s->def.clamp_at_zero ? ",\"clamp_at_zero\":true" : ",\"clamp_at_zero\":false");
    ff_buf_adds(b, ",\"occupancy\":");
    ff_buf_addi(b, s->occupancy);
    ff_buf_adds(b, ",\"at\":");
    ff_json_time(b, s->latest_ts);
    ff_buf_addf(b, ",\"status\":\"%s\",\"revision\":", ff__api_status_word(s->settled));
    ff_buf_addu(b, s->revision);
    ff_buf_adds(b, "}");
}

static void write_doorway(ff_buf *b, const ff_doorway_def *d)
{
    ff_buf_adds(b, "{\"id\":");
    ff_buf_addu(b, d->id);
    ff_buf_adds(b, ",\"name\":");
    ff_json_str(b, d->name);
    ff_buf_adds(b, "}");
}

static void write_assignment(ff_buf *b, const ff_assignment *a)
{
    ff_buf_adds(b, "{\"doorway_id\":");
    json_opt_id(b, a->doorway_id);
    ff_buf_adds(b, ",\"entry_space_id\":");
    json_opt_id(b, a->entry_space_id);
    ff_buf_adds(b, ",\"exit_space_id\":");
    json_opt_id(b, a->exit_space_id);
    ff_buf_adds(b, ",\"effective_from\":");
    ff_json_time(b, a->effective_from);
    ff_buf_adds(b, "}");
}

static void write_dpu(ff_buf *b, uint32_t id, const ff_assignment *v, size_t n)
{
    ff_buf_adds(b, "{\"id\":");
    ff_buf_addu(b, id);
    if (n) {
        const ff_assignment *cur = &v[n - 1];
        ff_buf_adds(b, ",\"doorway_id\":");
        json_opt_id(b, cur->doorway_id);
        ff_buf_adds(b, ",\"entry_space_id\":");
        json_opt_id(b, cur->entry_space_id);
        ff_buf_adds(b, ",\"exit_space_id\":");
        json_opt_id(b, cur->exit_space_id);
    }
    ff_buf_adds(b, ",\"assignments\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) ff_buf_adds(b, ",");
        write_assignment(b, &v[i]);
    }
    ff_buf_adds(b, "]}");
}

typedef struct list_ctx {
    ff_buf *b;
    size_t n;
    const char *name; /* ?name= filter */
} list_ctx;

static int list_space(void *ctx, const ff_space_info *s)
{
    list_ctx *l = ctx;
    if (l->name && strcmp(l->name, s->def.name) != 0) return 0;
    if (l->n++) ff_buf_adds(l->b, ",");
    write_space(l->b, s);
    return 0;
}

static int list_doorway(void *ctx, const ff_doorway_def *d)
{
    list_ctx *l = ctx;
    if (l->name && strcmp(l->name, d->name) != 0) return 0;
    if (l->n++) ff_buf_adds(l->b, ",");
    write_doorway(l->b, d);
    return 0;
}

static int list_dpu(void *ctx, uint32_t id, const ff_assignment *v, size_t n)
{
    list_ctx *l = ctx;
    if (l->n++) ff_buf_adds(l->b, ",");
    write_dpu(l->b, id, v, n);
    return 0;
}

/* ---- JSON bodies ------------------------------------------------------------------- */

json_t *ff__api_parse_body(const ff_api_req *q, ff_api_reply *r)
{
    if (q->parsed) { /* parsed off the loop (http.c) */
        if (q->doc == NULL) BAD_REQUEST(r, "%s", q->doc_error);
        return q->doc ? json_incref(q->doc) : NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(q->body, q->body_len, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL)
        BAD_REQUEST(r, "invalid JSON at line %d column %d: %s", e.line, e.column, e.text);
    return j;
}

/* Reads an optional id field: absent or null -> 0. false on a bad value. */
static bool json_id(json_t *o, const char *key, uint32_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (v == NULL || json_is_null(v)) return true;
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > UINT32_MAX) {
        snprintf(err, errlen, "'%s' must be an integer from 1 to 4294967295", key);
        return false;
    }
    *out = (uint32_t)json_integer_value(v);
    return true;
}

static bool json_name(json_t *o, char out[FF_NAME_MAX + 1], char *err, size_t errlen)
{
    json_t *v = json_object_get(o, "name");
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > FF_NAME_MAX) {
        snprintf(err, errlen, "'name' must be a string of 1 to %d bytes", FF_NAME_MAX);
        return false;
    }
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static bool json_space(json_t *o, uint32_t id, ff_space_def *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(o)) return snprintf(err, errlen, "a space must be a JSON object"), false;
    if (id == 0 && !json_id(o, "id", &id, err, errlen)) return false;
    d->id = id;
    if (!json_name(o, d->name, err, errlen)) return false;
    json_t *cap = json_object_get(o, "capacity");
    if (cap && !json_is_null(cap)) {
        if (!json_is_integer(cap) || json_integer_value(cap) < 0)
            return snprintf(err, errlen, "'capacity' must be an integer >= 0"), false;
        d->has_capacity = true;
        d->capacity = json_integer_value(cap);
    }
    json_t *cl = json_object_get(o, "clamp_at_zero");
    if (cl && !json_is_null(cl)) {
        if (!json_is_boolean(cl))
            return snprintf(err, errlen, "'clamp_at_zero' must be true or false"), false;
        d->clamp_at_zero = json_is_true(cl);
    }
    return true;
}

static bool json_doorway(json_t *o, uint32_t id, ff_doorway_def *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    if (!json_is_object(o)) return snprintf(err, errlen, "a doorway must be a JSON object"), false;
    if (id == 0 && !json_id(o, "id", &id, err, errlen)) return false;
    d->id = id;
    return json_name(o, d->name, err, errlen);
}

static bool json_assignment(json_t *o, ff_assignment *a, bool *has_from, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (!json_is_object(o))
        return snprintf(err, errlen, "an assignment must be a JSON object"), false;
    if (!json_id(o, "doorway_id", &a->doorway_id, err, errlen) ||
        !json_id(o, "entry_space_id", &a->entry_space_id, err, errlen) ||
        !json_id(o, "exit_space_id", &a->exit_space_id, err, errlen))
        return false;
    if (a->doorway_id == 0)
        return snprintf(err, errlen, "'doorway_id' is required: a DPU hangs over a doorway"), false;
    if (a->entry_space_id && a->entry_space_id == a->exit_space_id)
        return snprintf(err, errlen,
                        "'entry_space_id' and 'exit_space_id' are both %u: a DPU "
                        "must sit between two different spaces",
                        a->entry_space_id),
               false;
    json_t *f = json_object_get(o, "effective_from");
    *has_from = f && !json_is_null(f);
    a->effective_from = FF_TS_MIN;
    if (*has_from && !json_is_string(f))
        return snprintf(err, errlen, "'effective_from' must be an RFC 3339 time"), false;
    if (*has_from &&
        ff_time_parse(json_string_value(f), json_string_length(f), &a->effective_from) < 0)
        return snprintf(err, errlen, "'effective_from' must be an RFC 3339 time (%s)",
                        ff_time_error(json_string_value(f), json_string_length(f))),
               false;
    return true;
}

/* ---- Topology document ------------------------------------------------------------- */

/*
 * A document is checked whole before anything of it is applied: JSON shapes, required
 * ids, and that every id a DPU names is a space or doorway of the document or of the
 * engine. What can still fail midway is what only the engine knows (a name taken by
 * another id, a version at or before the horizon); each change before it stays applied
 * and logged, and the error names the item.
 */
typedef struct topo_doc {
    uint32_t *space_ids, *doorway_ids; /* sorted, for the reference check */
    size_t nspace, ndoorway;
} topo_doc;

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static bool in_doc(const uint32_t *ids, size_t n, uint32_t id)
{
    return n && bsearch(&id, ids, n, sizeof(*ids), cmp_u32) != NULL;
}

static int check_ref(ff_engine *e, const topo_doc *d, uint32_t id, bool space, char *why,
                     size_t whylen)
{
    if (id == 0) return 0;
    if (space ? in_doc(d->space_ids, d->nspace, id) ||
                    ff_engine_space_get(e, id, &(ff_space_info){0}) == 0
              : in_doc(d->doorway_ids, d->ndoorway, id) ||
                    ff_engine_doorway_get(e, id, &(ff_doorway_def){0}) == 0)
        return 0;
    snprintf(why, whylen, "%s %u is neither in the document nor known", space ? "space" : "doorway",
             id);
    return FF_EREF;
}

/*
 * A DPU entry without effective_from is its first version. When the DPU already has
 * exactly that first version, the entry is already applied: this is what makes
 * re-applying a document (or GET /v1/topology's output) change nothing, even after the
 * DPU has moved since.
 */
static bool first_version_present(ff_engine *e, uint32_t id, const ff_assignment *a)
{
    const ff_assignment *v;
    size_t n;
    if (ff_engine_dpu_get(e, id, &v, &n) < 0 || n == 0) return false;
    return v[0].effective_from == FF_TS_MIN && v[0].doorway_id == a->doorway_id &&
           v[0].entry_space_id == a->entry_space_id && v[0].exit_space_id == a->exit_space_id;
}

/* The engine's refusal of a topology change, said for this item. */
static int topo_refused(int rc, const char *kind, const char *name, char *why, size_t whylen)
{
    if (rc == FF_EEXIST)
        snprintf(why, whylen, "another %s is already named '%s'", kind, name);
    else if (rc == FF_ECONFLICT && kind[0] == 's')
        snprintf(why, whylen,
                 "clamp_at_zero cannot change on a space that has events (it would "
                 "rewrite settled history)");
    else if (rc == FF_ECONFLICT)
        snprintf(why, whylen,
                 "effective_from must be after the horizon and after the DPU's "
                 "latest version (settled history is never rewritten)");
    return rc;
}

/* Checks (apply false) or applies item `it` of array `key`. */
static int topo_item(ff_engine *e, const topo_doc *d, const char *key, json_t *it, bool apply,
                     char *why, size_t whylen)
{
    uint32_t id = 0;
    if (strcmp(key, "spaces") == 0) {
        ff_space_def s;
        if (!json_space(it, 0, &s, why, whylen)) return FF_EFORMAT;
        if (s.id == 0) return snprintf(why, whylen, "'id' is required"), FF_EFORMAT;
        return apply ? topo_refused(ff_engine_space_put(e, &s, NULL), "space", s.name, why, whylen)
                     : 0;
    }
    if (strcmp(key, "doorways") == 0) {
        ff_doorway_def dd;
        if (!json_doorway(it, 0, &dd, why, whylen)) return FF_EFORMAT;
        if (dd.id == 0) return snprintf(why, whylen, "'id' is required"), FF_EFORMAT;
        return apply ? topo_refused(ff_engine_doorway_put(e, &dd, NULL), "doorway", dd.name, why,
                                    whylen)
                     : 0;
    }
    ff_assignment a;
    bool has_from;
    int rc;
    if (!json_is_object(it))
        return snprintf(why, whylen, "a DPU must be a JSON object"), FF_EFORMAT;
    if (!json_id(it, "id", &id, why, whylen)) return FF_EFORMAT;
    if (id == 0) return snprintf(why, whylen, "'id' is required"), FF_EFORMAT;
    if (!json_assignment(it, &a, &has_from, why, whylen)) return FF_EFORMAT;
    if ((rc = check_ref(e, d, a.doorway_id, false, why, whylen)) < 0 ||
        (rc = check_ref(e, d, a.entry_space_id, true, why, whylen)) < 0 ||
        (rc = check_ref(e, d, a.exit_space_id, true, why, whylen)) < 0)
        return rc;
    if (!apply || (!has_from && first_version_present(e, id, &a))) return 0;
    return topo_refused(ff_engine_dpu_assign(e, id, &a, has_from, NULL), "DPU", "", why, whylen);
}

/* Collects the document's space and doorway ids (sorted) for the reference check. */
static void topo_doc_ids(json_t *doc, topo_doc *d)
{
    for (int k = 0; k < 2; k++) {
        json_t *arr = json_object_get(doc, k ? "doorways" : "spaces"), *it;
        size_t i, n = json_is_array(arr) ? json_array_size(arr) : 0, m = 0;
        uint32_t *ids = ff_xmalloc((n ? n : 1) * sizeof(*ids));
        json_array_foreach(arr, i, it)
        {
            json_t *v = json_is_object(it) ? json_object_get(it, "id") : NULL;
            if (json_is_integer(v) && json_integer_value(v) > 0 &&
                json_integer_value(v) <= UINT32_MAX)
                ids[m++] = (uint32_t)json_integer_value(v);
        }
        qsort(ids, m, sizeof(*ids), cmp_u32);
        if (k)
            d->doorway_ids = ids, d->ndoorway = m;
        else
            d->space_ids = ids, d->nspace = m;
    }
}

static int status_of(int rc)
{
    return rc == FF_EEXIST || rc == FF_ECONFLICT ? 409 : rc == FF_ENOTFOUND ? 404 : 400;
}

/* Applies the parsed document doc (borrowed). */
static int apply_topology_doc(ff_engine *e, json_t *doc, char *err, size_t errlen, int *status)
{
    *status = 400;
    int rc = 0;
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "a topology document is a JSON object with spaces, doorways, dpus");
        rc = FF_EFORMAT;
    }
    static const char *const keys[3] = {"spaces", "doorways", "dpus"};
    topo_doc d = {0};
    if (rc == 0) topo_doc_ids(doc, &d);
    for (int pass = 0; pass < 2 && rc == 0; pass++) { /* check everything, then apply */
        for (int k = 0; k < 3 && rc == 0; k++) {
            json_t *arr = json_object_get(doc, keys[k]), *it;
            size_t i;
            if (arr == NULL) continue;
            if (!json_is_array(arr)) {
                snprintf(err, errlen, "'%s' must be an array", keys[k]);
                rc = FF_EFORMAT;
                break;
            }
            json_array_foreach(arr, i, it)
            {
                char why[256] = "";
                rc = topo_item(e, &d, keys[k], it, pass == 1, why, sizeof(why));
                if (rc == 0) continue;
                snprintf(err, errlen, "%s[%zu]: %s", keys[k], i, why[0] ? why : ff_strerror(rc));
                *status = status_of(rc);
                break;
            }
        }
    }
    free(d.space_ids);
    free(d.doorway_ids);
    if (rc == 0) *status = 200;
    return rc;
}

int ff__api_apply_topology(ff_engine *e, const char *json, size_t len, char *err, size_t errlen,
                           int *status)
{
    json_error_t je;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    *status = 400;
    if (doc == NULL) {
        snprintf(err, errlen, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
        return FF_EFORMAT;
    }
    int rc = apply_topology_doc(e, doc, err, errlen, status);
    json_decref(doc);
#ifdef __GLIBC__
    /* A large document leaves tens of MB of small freed blocks (about 1 KB of jansson
     * objects per DPU); give them back rather than keep them resident. */
    if (len > (1u << 20)) malloc_trim(0);
#endif
    return rc;
}

/* ---- Topology routes --------------------------------------------------------------- */

static void space_reply(ff_server *s, ff_api_reply *r, uint32_t id)
{
    ff_space_info info;
    if (ff_engine_space_get(s->eng, id, &info) < 0) {
        NOT_FOUND(r, "no space with id %u", id);
        return;
    }
    write_space(&r->body, &info);
}

static void doorway_reply(ff_server *s, ff_api_reply *r, uint32_t id)
{
    ff_doorway_def d;
    if (ff_engine_doorway_get(s->eng, id, &d) < 0) {
        NOT_FOUND(r, "no doorway with id %u", id);
        return;
    }
    write_doorway(&r->body, &d);
}

/* PUT /v1/{spaces|doorways}/{id} (id != 0) or POST to the collection (id == 0). */
static void put_named(ff_server *s, const ff_api_req *q, ff_api_reply *r, bool space, uint32_t id)
{
    char why[256];
    json_t *o = ff__api_parse_body(q, r);
    if (o == NULL) return;
    ff_space_def sd;
    ff_doorway_def dd;
    bool ok = space ? json_space(o, id, &sd, why, sizeof(why))
                    : json_doorway(o, id, &dd, why, sizeof(why));
    json_decref(o);
    if (!ok) {
        BAD_REQUEST(r, "%s", why);
        return;
    }
    uint32_t *pid = space ? &sd.id : &dd.id;
    bool post = id == 0, created = false;
    if (post && *pid == 0)
        *pid = space ? ff_engine_space_next_id(s->eng) : ff_engine_doorway_next_id(s->eng);
    else if (post && (space ? ff_engine_space_get(s->eng, *pid, &(ff_space_info){0})
                            : ff_engine_doorway_get(s->eng, *pid, &dd)) == 0) {
        CONFLICT(r, "a %s with id %u exists already", space ? "space" : "doorway", *pid);
        return;
    }
    int rc = space ? ff_engine_space_put(s->eng, &sd, &created)
                   : ff_engine_doorway_put(s->eng, &dd, &created);
    if (rc == FF_EEXIST || rc == FF_ECONFLICT) {
        topo_refused(rc, space ? "space" : "doorway", space ? sd.name : dd.name, why, sizeof(why));
        CONFLICT(r, "%s", why);
        return;
    }
    if (rc < 0) {
        ff__api_engine_problem(r, rc, space ? "space" : "doorway");
        return;
    }
    if (space)
        space_reply(s, r, *pid);
    else
        doorway_reply(s, r, *pid);
    r->status = created ? 201 : 200;
    r->wait_durable = true;
}

static void delete_named(ff_server *s, ff_api_reply *r, bool space, uint32_t id)
{
    int rc = space ? ff_engine_space_delete(s->eng, id) : ff_engine_doorway_delete(s->eng, id);
    if (rc == FF_ECONFLICT) {
        CONFLICT(r, "%s %u is still referenced by a DPU assignment", space ? "space" : "doorway",
                 id);
        return;
    }
    if (rc < 0) {
        ff__api_engine_problem(r, rc, space ? "space" : "doorway");
        return;
    }
    r->status = 204;
    r->wait_durable = true;
}

static void list_named(ff_server *s, const ff_api_req *q, ff_api_reply *r, bool space)
{
    list_ctx l = {.b = &r->body, .name = q->arg(q->ctx, "name")};
    ff_buf_adds(&r->body, space ? "{\"spaces\":[" : "{\"doorways\":[");
    if (space)
        ff_engine_spaces(s->eng, list_space, &l);
    else
        ff_engine_doorways(s->eng, list_doorway, &l);
    ff_buf_adds(&r->body, "]}");
}

static void dpu_reply(ff_server *s, ff_api_reply *r, uint32_t id, bool versions_only)
{
    const ff_assignment *v;
    size_t n;
    if (ff_engine_dpu_get(s->eng, id, &v, &n) < 0) {
        NOT_FOUND(r, "no DPU with id %u", id);
        return;
    }
    if (!versions_only) {
        write_dpu(&r->body, id, v, n);
        return;
    }
    ff_buf_adds(&r->body, "{\"dpu_id\":");
    ff_buf_addu(&r->body, id);
    ff_buf_adds(&r->body, ",\"assignments\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) ff_buf_adds(&r->body, ",");
        write_assignment(&r->body, &v[i]);
    }
    ff_buf_adds(&r->body, "]}");
}

static void put_dpu(ff_server *s, const ff_api_req *q, ff_api_reply *r, uint32_t id)
{
    char why[256];
    json_t *o = ff__api_parse_body(q, r);
    if (o == NULL) return;
    ff_assignment a;
    bool has_from, added = false;
    bool ok = json_assignment(o, &a, &has_from, why, sizeof(why));
    json_decref(o);
    if (!ok) {
        BAD_REQUEST(r, "%s", why);
        return;
    }
    bool is_new = ff_engine_dpu_get(s->eng, id, &(const ff_assignment *){0}, &(size_t){0}) < 0;
    int rc = ff_engine_dpu_assign(s->eng, id, &a, has_from, &added);
    if (rc == FF_ECONFLICT) {
        CONFLICT(r, "an assignment must take effect after the horizon and after the DPU's "
                    "latest version (settled history is never rewritten)");
        return;
    }
    if (rc < 0) {
        ff__api_engine_problem(r, rc, "assignment");
        return;
    }
    dpu_reply(s, r, id, false);
    r->status = is_new ? 201 : 200;
    r->wait_durable = true;
}

static void put_topology(ff_server *s, const ff_api_req *q, ff_api_reply *r)
{
    char err[512];
    int status;
    json_t *doc = ff__api_parse_body(q, r);
    if (doc == NULL) return;
    int rc = apply_topology_doc(s->eng, doc, err, sizeof(err), &status);
    json_decref(doc);
    if (rc < 0) {
        if (status == 409)
            CONFLICT(r, "%s", err);
        else if (status == 404)
            NOT_FOUND(r, "%s", err);
        else
            BAD_REQUEST(r, "%s", err);
        r->wait_durable = true; /* a partly applied document is logged: answer once durable */
        return;
    }
    ff_buf_addf(&r->body, "{\"applied\":true,\"spaces\":%zu,\"dpus\":%zu}",
                ff_engine_space_count(s->eng), ff_engine_dpu_count(s->eng));
    r->wait_durable = true;
}

static int doc_space(void *ctx, const ff_space_info *s)
{
    list_ctx *l = ctx;
    if (l->n++) ff_buf_adds(l->b, ",");
    ff_buf_adds(l->b, "\n  {\"id\":");
    ff_buf_addu(l->b, s->def.id);
    ff_buf_adds(l->b, ",\"name\":");
    ff_json_str(l->b, s->def.name);
    if (s->def.has_capacity) ff_buf_addf(l->b, ",\"capacity\":%lld", (long long)s->def.capacity);
    if (s->def.clamp_at_zero) ff_buf_adds(l->b, ",\"clamp_at_zero\":true");
    ff_buf_adds(l->b, "}");
    return 0;
}

static int doc_doorway(void *ctx, const ff_doorway_def *d)
{
    list_ctx *l = ctx;
    if (l->n++) ff_buf_adds(l->b, ",");
    ff_buf_adds(l->b, "\n  ");
    write_doorway(l->b, d);
    return 0;
}

/* One entry per assignment version, so the document gives the DPU's whole history. */
static int doc_dpu(void *ctx, uint32_t id, const ff_assignment *v, size_t n)
{
    list_ctx *l = ctx;
    for (size_t i = 0; i < n; i++) {
        if (l->n++) ff_buf_adds(l->b, ",");
        ff_buf_addf(l->b, "\n  {\"id\":%u", id);
        if (v[i].doorway_id) ff_buf_addf(l->b, ",\"doorway_id\":%u", v[i].doorway_id);
        if (v[i].entry_space_id) ff_buf_addf(l->b, ",\"entry_space_id\":%u", v[i].entry_space_id);
        if (v[i].exit_space_id) ff_buf_addf(l->b, ",\"exit_space_id\":%u", v[i].exit_space_id);
        if (v[i].effective_from != FF_TS_MIN) {
            ff_buf_adds(l->b, ",\"effective_from\":");
            ff_json_time(l->b, v[i].effective_from);
        }
        ff_buf_adds(l->b, "}");
    }
    return 0;
}

/* GET /v1/topology: the whole topology as a document PUT /v1/topology takes back. */
static void get_topology(ff_server *s, ff_api_reply *r)
{
    list_ctx l = {.b = &r->body};
    ff_buf_adds(&r->body, "{\"spaces\":[");
    ff_engine_spaces(s->eng, doc_space, &l);
    l.n = 0;
    ff_buf_adds(&r->body, "],\n\"doorways\":[");
    ff_engine_doorways(s->eng, doc_doorway, &l);
    l.n = 0;
    ff_buf_adds(&r->body, "],\n\"dpus\":[");
    ff_engine_dpus(s->eng, doc_dpu, &l);
    ff_buf_adds(&r->body, "]}\n");
}

/* ---- Operations -------------------------------------------------------------------- */

bool ff__api_more(ff_server *s, ff_api_reply *r)
{
    if (!r->more->step(s, r->more, r)) return false;
    ff__api_more_free(r);
    return true;
}

void ff__api_more_free(ff_api_reply *r)
{
    r->more->free(r->more);
    r->more = NULL;
}

/*
 * The engine's statistics for /metrics and /healthz, STATS_SPACES_PER_TURN spaces a loop
 * turn: counting the rows walks every space (15-30 ms of the loop at 10 million DPUs and
 * 100,000 spaces, measured), and a scrape or a health check would hold every ack that
 * long. Up to that many spaces the answer is written in the turn of its request.
 */
#define STATS_SPACES_PER_TURN 4096

typedef struct stats_more {
    ff_api_more more;
    ff_engine_stats_walk w;
    void (*write)(ff_server *s, const ff_engine_stats *st, ff_buf *b);
} stats_more;

static bool stats_step(ff_server *s, ff_api_more *more, ff_api_reply *r)
{
    stats_more *m = (stats_more *)more;
    ff_engine_stats st;
    if (!ff_engine_stats_step(s->eng, &m->w, STATS_SPACES_PER_TURN, &st)) return false;
    m->write(s, &st, &r->body);
    return true;
}

static void stats_free(ff_api_more *more)
{
    free(more);
}

static void with_stats(ff_server *s, ff_api_reply *r,
                       void (*write)(ff_server *s, const ff_engine_stats *st, ff_buf *b))
{
    stats_more *m = ff_xcalloc(1, sizeof(*m));
    m->more = (ff_api_more){.step = stats_step, .free = stats_free};
    m->write = write;
    r->more = &m->more;
    ff__api_more(s, r);
}

static void write_health(ff_server *s, const ff_engine_stats *st, ff_buf *b)
{
    ff_buf_adds(b, "{\"status\":\"ok\",\"horizon\":");
    ff_json_time(b, st->horizon);
    ff_buf_addf(b, ",\"pending_rows\":%llu,\"spaces\":%zu,\"dpus\":%zu}",
                (unsigned long long)st->pending_rows, ff_engine_space_count(s->eng),
                ff_engine_dpu_count(s->eng));
}

/* ---- Routing ----------------------------------------------------------------------- */

static bool authorized(ff_server *s, const ff_api_req *q)
{
    if (s->opts.token == NULL || s->opts.token[0] == '\0') return true;
    if (strcmp(q->method, "GET") == 0 || strcmp(q->method, "HEAD") == 0) return true;
    const char *h = q->header(q->ctx, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) return false; /* RFC 9110: any case */
    const char *a = h + 7, *t = s->opts.token;
    size_t la = strlen(a), lt = strlen(t);
    unsigned diff = (unsigned)(la ^ lt);
    for (size_t i = 0; i < la && i < lt; i++) diff |= (unsigned)(a[i] ^ t[i]);
    return diff == 0;
}

/* Splits "/v1/a/b/c" into at most 4 segments. */
static int split_path(const char *path, const char *seg[4], size_t len[4])
{
    int n = 0;
    const char *p = path;
    while (*p == '/') p++;
    while (*p && n < 4) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        seg[n] = p;
        len[n++] = l;
        p += l;
        while (*p == '/') p++;
    }
    return *p ? 5 : n;
}

static bool is(const char *seg, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(seg, word, len) == 0;
}

static void method_not_allowed(ff_api_reply *r, const char *method, const char *path,
                               const char *allow)
{
    ff__api_problem(r, 405, "method-not-allowed", "Method Not Allowed",
                    "%s is not allowed on %s (allowed: %s)", method, path, allow);
    r->header_name = "Allow";
    r->header_value = allow;
}

/* /v1/spaces..., /v1/doorways... */
static void route_named(ff_server *s, const ff_api_req *q, ff_api_reply *r, bool space, int n,
                        const char **seg, size_t *len)
{
    const char *m = q->method;
    uint32_t id = 0;
    if (n == 2) {
        if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
            list_named(s, q, r, space);
        else if (strcmp(m, "POST") == 0)
            put_named(s, q, r, space, 0);
        else
            method_not_allowed(r, m, q->path, "GET, HEAD, POST");
        return;
    }
    if (!parse_u32(seg[2], len[2], &id)) {
        NOT_FOUND(r, "'%.*s' is not a %s id (a positive integer)", (int)len[2], seg[2],
                  space ? "space" : "doorway");
        return;
    }
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    if (n == 3) {
        if (get)
            space ? space_reply(s, r, id) : doorway_reply(s, r, id);
        else if (strcmp(m, "PUT") == 0)
            put_named(s, q, r, space, id);
        else if (strcmp(m, "DELETE") == 0)
            delete_named(s, r, space, id);
        else
            method_not_allowed(r, m, q->path, "GET, HEAD, PUT, DELETE");
        return;
    }
    if (!space || n != 4) {
        NOT_FOUND(r, "no such resource: %s", q->path);
    } else if (!get) {
        method_not_allowed(r, m, q->path, "GET, HEAD");
    } else if (is(seg[3], len[3], "count")) {
        ff__api_get_count(s, q, r, id);
    } else if (is(seg[3], len[3], "counts")) {
        ff__api_get_counts(s, q, r, id);
    } else if (is(seg[3], len[3], "occupancy")) {
        ff__api_get_rows(s, q, r, id);
    } else {
        NOT_FOUND(r, "no such resource: %s", q->path);
    }
}

static void route_dpus(ff_server *s, const ff_api_req *q, ff_api_reply *r, int n, const char **seg,
                       size_t *len)
{
    const char *m = q->method;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    uint32_t id = 0;
    if (n == 2) {
        if (!get) {
            method_not_allowed(r, m, q->path, "GET, HEAD");
            return;
        }
        list_ctx l = {.b = &r->body};
        ff_buf_adds(&r->body, "{\"dpus\":[");
        ff_engine_dpus(s->eng, list_dpu, &l);
        ff_buf_adds(&r->body, "]}");
        return;
    }
    /* DPU serials may be 0, unlike space and doorway ids. */
    if (len[2] == 1 && seg[2][0] == '0')
        id = 0;
    else if (!parse_u32(seg[2], len[2], &id)) {
        NOT_FOUND(r, "'%.*s' is not a DPU id", (int)len[2], seg[2]);
        return;
    }
    if (n == 3 && get)
        dpu_reply(s, r, id, false);
    else if (n == 3 && strcmp(m, "PUT") == 0)
        put_dpu(s, q, r, id);
    else if (n == 4 && get && is(seg[3], len[3], "assignments"))
        dpu_reply(s, r, id, true);
    else if (n == 4 && get && is(seg[3], len[3], "events"))
        ff__api_get_dpu_events(s, q, r, id);
    else if (n <= 4 &&
             (n == 3 || is(seg[3], len[3], "assignments") || is(seg[3], len[3], "events")))
        method_not_allowed(r, m, q->path, n == 3 ? "GET, HEAD, PUT" : "GET, HEAD");
    else
        NOT_FOUND(r, "no such resource: %s", q->path);
}

bool ff__api_reads_big_json(ff_server *s, const ff_api_req *q)
{
    const char *ct = q->header(q->ctx, "Content-Type");
    if (ct && strncasecmp(ct, "text/csv", 8) == 0) return false;
    bool put = strcmp(q->method, "PUT") == 0, post = strcmp(q->method, "POST") == 0;
    return authorized(s, q) && ((put && strcmp(q->path, "/v1/topology") == 0) ||
                                (post && strcmp(q->path, "/v1/events") == 0));
}

void ff__api_handle(ff_server *s, const ff_api_req *q, ff_api_reply *r)
{
    const char *seg[4];
    size_t len[4];
    const char *m = q->method;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    r->status = 200;
    r->content_type = "application/json";
    if (!authorized(s, q)) {
        ff__api_problem(r, 401, "unauthorized", "Unauthorized",
                        "this server needs 'Authorization: Bearer <token>' for %s", m);
        r->header_name = "WWW-Authenticate";
        r->header_value = "Bearer realm=\"footfall\"";
        return;
    }
    int n = split_path(q->path, seg, len);
    if (n == 1 && !get && (is(seg[0], len[0], "healthz") || is(seg[0], len[0], "metrics"))) {
        method_not_allowed(r, m, q->path, "GET, HEAD");
        return;
    }
    if (n == 1 && is(seg[0], len[0], "healthz")) {
        with_stats(s, r, write_health);
        return;
    }
    if (n == 1 && is(seg[0], len[0], "metrics")) {
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
        with_stats(s, r, ff__metrics_write);
        return;
    }
    if (n >= 2 && n <= 4 && is(seg[0], len[0], "v1")) {
        if (is(seg[1], len[1], "spaces")) {
            route_named(s, q, r, true, n, seg, len);
            return;
        }
        if (is(seg[1], len[1], "doorways")) {
            route_named(s, q, r, false, n, seg, len);
            return;
        }
        if (is(seg[1], len[1], "dpus")) {
            route_dpus(s, q, r, n, seg, len);
            return;
        }
        if (n == 2 && is(seg[1], len[1], "events")) {
            if (strcmp(m, "POST") == 0)
                ff__api_post_events(s, q, r);
            else
                method_not_allowed(r, m, q->path, "POST");
            return;
        }
        if (n == 2 && is(seg[1], len[1], "topology")) {
            if (strcmp(m, "PUT") == 0) {
                put_topology(s, q, r);
                return;
            }
            if (get)
                get_topology(s, r);
            else
                method_not_allowed(r, m, q->path, "GET, HEAD, PUT");
            return;
        }
    }
    NOT_FOUND(r, "no such resource: %s", q->path);
}
