/*
 * footfall.c -- the command-line client of footfalld (SPEC §6).
 *
 *   footfall [--http HOST:PORT] [--tcp HOST:PORT] [--token T] COMMAND [ARGS]
 *
 * Commands: import, count, counts, topology apply|show. Global flags may appear
 * anywhere on the line. Exit status: 0 success; 1 the server refused something (an
 * HTTP problem, refused or malformed rows); 2 usage, file or connection errors.
 *
 * Everything here is argument handling and I/O glue: the CSV parser, the wire format,
 * the import pipeline (net/client_import.c), the HTTP client (net/httpc.c) and the
 * printers (net/client_fmt.c) do the work.
 */
#include "net/client_fmt.h"
#include "net/client_import.h"
#include "net/cmd/footfall_cmds.h"
#include "net/httpc.h"
#include "net/timefmt.h"
#include "net/wire.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2 };

typedef struct global {
    ff_endpoint http, tcp;
    const char *http_s, *tcp_s;
    const char *token;
} global;

static global G;

static const char usage_main[] =
    "usage: footfall [--http HOST:PORT] [--tcp HOST:PORT] [--token T] COMMAND [ARGS]\n"
    "\n"
    "The client of footfalld.\n"
    "\n"
    "commands:\n"
    "  import FILE.csv          send a CSV of events over TCP with acks, print a summary\n"
    "  count SPACE [--at T]     the occupancy of a space now or at time T\n"
    "  counts SPACE --start T --end T [--interval 15m]\n"
    "                           occupancy buckets as a table, --csv or --json\n"
    "  topology apply FILE.json apply a topology document (PUT /v1/topology)\n"
    "  topology show            print spaces, doorways and DPUs\n"
    "  segments ls|dump|verify PATH\n"
    "                           read sealed segment files offline (no server needed)\n"
    "  archive --data-dir D --older-than 180d --to DIR [--dry-run]\n"
    "                           move old segments out (safe while footfalld runs)\n"
    "\n"
    "global flags (anywhere on the line):\n"
    "  --http HOST:PORT   HTTP API (default 127.0.0.1:8080)\n"
    "  --tcp HOST:PORT    TCP ingest (default 127.0.0.1:7071)\n"
    "  --token T          bearer token for changes (default $FOOTFALL_TOKEN)\n"
    "\n"
    "SPACE is a space id or name. Times are RFC 3339 (2018-02-24T08:45:21.893Z, offsets\n"
    "allowed) or `now`; durations are 90s, 15m, 1h, 7d.\n"
    "Exit status: 0 ok, 1 refused by the server (problem, refused or malformed rows),\n"
    "2 usage, file or connection error. `footfall COMMAND --help` for details.\n";

static const char usage_import[] =
    "usage: footfall import FILE.csv [--batch N] [--window W] [--timeout DUR]\n"
    "                       [--no-progress] [--no-resolve] [--max-errors N]\n"
    "\n"
    "Parses FILE.csv (header naming timestamp, direction, dpu_id; seq optional) and sends\n"
    "its rows to footfalld over TCP in frames of N rows (default 4096) with W frames in\n"
    "flight (default 16), waiting for each frame's ack. Frames whose ack does not come are\n"
    "sent again on a new connection (the server drops the repeats as duplicates).\n"
    "\n"
    "At the end it prints rows read, accepted, duplicates, late, refused, malformed,\n"
    "elapsed time and rows/s, then the line numbers and reasons of refused and malformed\n"
    "rows (at most --max-errors, default 1000; 0 = all). To learn which rows of a frame\n"
    "were refused, that frame is sent again over HTTP (POST /v1/events); --no-resolve\n"
    "skips this (do so against a server running --dedup=off).\n"
    "A progress bar goes to stderr when it is a terminal.\n"
    "\n"
    "Exit status: 0 every row taken (accepted or duplicate), 1 some rows refused or\n"
    "malformed, 2 usage, file or connection error.\n";

static const char usage_count[] =
    "usage: footfall count SPACE [--at T] [--json]\n"
    "\n"
    "Prints the occupancy of SPACE (an id or a name) after every accepted event, or at\n"
    "time T, with its status (settled or pending) and revision:\n"
    "  Space A  occupancy -2  at 2018-03-02T16:39:37.240Z  settled  revision 0\n"
    "--json prints the server's answer.\n";

static const char usage_counts[] =
    "usage: footfall counts SPACE --start T --end T [--interval DUR] [--csv | --json]\n"
    "\n"
    "Prints the occupancy of SPACE in buckets [b, b+interval) from --start to --end\n"
    "(interval default 15m, at most 10,000 buckets): occupancy at the bucket's start and\n"
    "end, min and max inside it, entrances (in) and exits (out), and whether it is\n"
    "settled. A table by default; --csv or --json for machines.\n";

static const char usage_topology[] =
    "usage: footfall topology apply FILE.json\n"
    "       footfall topology show [--json]\n"
    "\n"
    "apply: sends the topology document (spaces, doorways, dpus; SPEC §6) to PUT\n"
    "/v1/topology; applying the same document twice changes nothing.\n"
    "show: prints the spaces (with their current occupancy), doorways and DPU\n"
    "assignments; --json prints {\"spaces\",\"doorways\",\"dpus\"} as the server gives them.\n";

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("footfall: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* ---- argument helpers -------------------------------------------------------------------- */

/* Matches argv[*i] against --name or --name=VALUE; a value-taking flag consumes the next
 * argument when it is not inline. Returns 1 on a match (*val set for value flags), 0 on no
 * match, -1 when the value is missing. */
static int flag(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '\0') {
        if (!val) return 1;
        if (*i + 1 >= argc) return -1;
        *val = argv[++*i];
        return 1;
    }
    if (a[n] == '=' && val) {
        *val = a + n + 1;
        return 1;
    }
    return 0;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Parses a count option: a decimal in [lo, hi]. */
static bool parse_count(const char *s, size_t lo, size_t hi, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) return false;
    *out = (size_t)v;
    return true;
}

/* Normalizes a time argument (RFC 3339 or "now") into out. */
static bool parse_time_arg(const char *s, char out[FF_TIME_STRLEN])
{
    int64_t us;
    if (strcmp(s, "now") == 0) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        us = (int64_t)t.tv_sec * FF_SECOND + t.tv_nsec / 1000;
    } else if (ff_time_parse(s, strlen(s), &us) < 0) {
        return false;
    }
    ff_time_format(us, out);
    return true;
}

/* " (why)" for a time argument parse_time_arg() refused, "" when there is no value. */
static const char *time_why(const char *s)
{
    static char out[128];
    const char *why = s ? ff_time_error(s, strlen(s)) : NULL;
    if (!why) return "";
    snprintf(out, sizeof out, " (%s)", why);
    return out;
}

/* ---- HTTP ------------------------------------------------------------------------------ */

typedef struct answer {
    ff_buf raw;
    ff_http_response r;
    json_t *json; /* the parsed body when it is JSON */
} answer;

static void answer_release(answer *a)
{
    json_decref(a->json);
    ff_buf_release(&a->raw);
}

/*
 * Sends one request; returns 0 with a 2xx answer in a, or prints the problem and returns
 * EXIT_REFUSED (an HTTP error) or EXIT_USAGE (no answer at all).
 */
static int api(const char *method, const char *path, const char *ctype, const char *body,
               size_t len, answer *a)
{
    char err[512];
    memset(a, 0, sizeof *a);
    ff_buf_init(&a->raw);
    ff_http_request q = {.method = method,
                         .path = path,
                         .token = G.token,
                         .content_type = ctype,
                         .body = body,
                         .body_len = len};
    if (ff_http_do(&G.http, &q, &a->raw, &a->r, err, sizeof err) < 0) {
        answer_release(a);
        return fail(EXIT_USAGE, "%s", err);
    }
    if (a->r.status < 200 || a->r.status > 299) {
        ff_buf msg;
        ff_buf_init(&msg);
        ff_cli_problem(&msg, &a->r);
        fail(EXIT_REFUSED, "%s", msg.p);
        ff_buf_release(&msg);
        answer_release(a);
        return EXIT_REFUSED;
    }
    a->json = json_loadb(a->r.body, a->r.body_len, 0, NULL);
    if (!a->json && strstr(a->r.content_type, "json")) {
        answer_release(a);
        return fail(EXIT_USAGE, "%s %s: the server's answer is not valid JSON", method, path);
    }
    return 0;
}

static int get_json(const char *path, answer *a)
{
    int rc = api("GET", path, NULL, NULL, 0, a);
    if (rc == 0 && !a->json) {
        answer_release(a);
        return fail(EXIT_USAGE, "GET %s: the server's answer is not JSON", path);
    }
    return rc;
}

static void print_body(const answer *a)
{
    fwrite(a->r.body, 1, a->r.body_len, stdout);
    if (a->r.body_len == 0 || a->r.body[a->r.body_len - 1] != '\n') putchar('\n');
}

/* Resolves SPACE (an id, or else a name) to an id. 0 or an exit code. */
static int space_id(const char *arg, unsigned long *id)
{
    size_t v;
    if (parse_count(arg, 1, UINT32_MAX, &v)) {
        *id = v;
        return 0;
    }
    ff_buf path;
    ff_buf_init(&path);
    ff_buf_adds(&path, "/v1/spaces?name=");
    ff_url_escape(&path, arg);
    answer a;
    int rc = get_json(path.p, &a);
    ff_buf_release(&path);
    if (rc) return rc;
    json_t *list = json_object_get(a.json, "spaces"), *s;
    size_t i, n = 0;
    json_array_foreach(list, i, s)
    {
        json_t *name = json_object_get(s, "name"), *jid = json_object_get(s, "id");
        if (json_is_string(name) && strcmp(json_string_value(name), arg) == 0 &&
            json_is_integer(jid)) {
            *id = (unsigned long)json_integer_value(jid);
            n++;
        }
    }
    answer_release(&a);
    if (n == 0) return fail(EXIT_REFUSED, "no space named \"%s\"", arg);
    return 0;
}

/* ---- import ----------------------------------------------------------------------------- */

static int map_file(const char *path, const char **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(EXIT_USAGE, "%s: %s", path, strerror(errno));
    struct stat st;
    int e = fstat(fd, &st) < 0 ? errno : 0; /* errno only means something if fstat failed */
    if (e || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(EXIT_USAGE, "%s: %s", path, e ? strerror(e) : "not a regular file");
    }
    *len = (size_t)st.st_size;
    *buf = "";
    if (*len) {
        void *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (p == MAP_FAILED) {
            e = errno;
            close(fd);
            return fail(EXIT_USAGE, "%s: cannot map: %s", path, strerror(e));
        }
        madvise(p, *len, MADV_SEQUENTIAL);
        *buf = p;
    }
    close(fd);
    return 0;
}

/* Reads import's flags into o, *file and *max_errors. 0, -1 for --help, or an exit code. */
static int import_flags(int argc, char **argv, ff_import_opts *o, const char **file,
                        size_t *max_errors)
{
    const char *v;
    int64_t us;
    for (int i = 1; i < argc; i++) {
        int m;
        if (is_help(argv[i])) return fputs(usage_import, stdout), -1;
        if ((m = flag(argc, argv, &i, "--batch", &v))) {
            if (m < 0 || !parse_count(v, 1, FF_FRAME_MAX_COUNT, &o->batch))
                return fail(EXIT_USAGE, "import: --batch takes a count from 1 to 4096");
        } else if ((m = flag(argc, argv, &i, "--window", &v))) {
            if (m < 0 || !parse_count(v, 1, 4096, &o->window))
                return fail(EXIT_USAGE, "import: --window takes a count from 1 to 4096");
        } else if ((m = flag(argc, argv, &i, "--timeout", &v))) {
            if (m < 0 || ff_duration_parse(v, strlen(v), &us) < 0 || us < 1000 ||
                us > 3600 * FF_SECOND)
                return fail(EXIT_USAGE, "import: --timeout takes a duration from 1ms to 1h");
            o->timeout_ms = (int)(us / 1000);
        } else if ((m = flag(argc, argv, &i, "--max-errors", &v))) {
            if (m < 0 || !parse_count(v, 0, SIZE_MAX, max_errors))
                return fail(EXIT_USAGE, "import: --max-errors takes a count");
        } else if (flag(argc, argv, &i, "--no-progress", NULL)) {
            o->progress = false;
        } else if (flag(argc, argv, &i, "--progress", NULL)) {
            o->progress = true;
        } else if (flag(argc, argv, &i, "--no-resolve", NULL)) {
            o->resolve = false;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return fail(EXIT_USAGE, "import: unknown flag %s (see footfall import --help)",
                        argv[i]);
        } else if (!*file) {
            *file = argv[i];
        } else {
            return fail(EXIT_USAGE, "import: one file at a time (see footfall import --help)");
        }
    }
    if (!*file) return fail(EXIT_USAGE, "import: which file? (footfall import FILE.csv)");
    return 0;
}

static int cmd_import(int argc, char **argv)
{
    ff_import_opts o;
    ff_import_opts_default(&o);
    o.tcp = G.tcp;
    o.http = G.http;
    o.token = G.token;
    o.progress = isatty(STDERR_FILENO);
    const char *file = NULL, *buf;
    size_t max_errors = 1000, len;
    int rc = import_flags(argc, argv, &o, &file, &max_errors);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = map_file(file, &buf, &len))) return rc;
    o.source = file;

    ff_import_result res;
    char err[512];
    rc = ff_import_run(buf, len, &o, &res, err, sizeof err);
    if (len) munmap((void *)buf, len);
    if (rc < 0 && res.frames == 0) { /* a bad header or no connection: nothing sent */
        ff_import_result_release(&res);
        return fail(EXIT_USAGE, "%s", err);
    }
    ff_buf out;
    ff_buf_init(&out);
    ff_buf_addf(&out, "%s\n", file);
    ff_import_summary(&res, &out, max_errors);
    fputs(out.p, stdout);
    fflush(stdout);
    ff_buf_release(&out);
    int code = res.refused || res.malformed ? EXIT_REFUSED : 0;
    ff_import_result_release(&res);
    if (rc < 0) return fail(EXIT_USAGE, "%s (the summary above counts what was acknowledged)", err);
    return code;
}

/* ---- count, counts ------------------------------------------------------------------------ */

static int cmd_count(int argc, char **argv)
{
    const char *space = NULL, *v;
    char at[FF_TIME_STRLEN] = "";
    bool json = false;
    for (int i = 1; i < argc; i++) {
        int m;
        if (is_help(argv[i])) return fputs(usage_count, stdout), 0;
        if ((m = flag(argc, argv, &i, "--at", &v))) {
            if (m < 0 || !parse_time_arg(v, at))
                return fail(EXIT_USAGE, "count: --at takes an RFC 3339 time or now%s",
                            time_why(m > 0 ? v : NULL));
        } else if (flag(argc, argv, &i, "--json", NULL)) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return fail(EXIT_USAGE, "count: unknown flag %s (see footfall count --help)", argv[i]);
        } else if (!space) {
            space = argv[i];
        } else {
            return fail(EXIT_USAGE, "count: one space at a time");
        }
    }
    if (!space) return fail(EXIT_USAGE, "count: which space? (footfall count SPACE)");
    unsigned long id;
    int rc = space_id(space, &id);
    if (rc) return rc;
    char path[128];
    snprintf(path, sizeof path, "/v1/spaces/%lu/count%s%s", id, at[0] ? "?at=" : "", at);
    answer a;
    if ((rc = get_json(path, &a))) return rc;
    if (json) {
        print_body(&a);
    } else {
        ff_buf out;
        ff_buf_init(&out);
        ff_cli_count_line(&out, a.json);
        fputs(out.p, stdout);
        ff_buf_release(&out);
    }
    answer_release(&a);
    return 0;
}

static int cmd_counts(int argc, char **argv)
{
    const char *space = NULL, *v, *interval = "15m";
    char start[FF_TIME_STRLEN] = "", end[FF_TIME_STRLEN] = "";
    bool json = false, csv = false;
    int64_t us;
    for (int i = 1; i < argc; i++) {
        int m;
        if (is_help(argv[i])) return fputs(usage_counts, stdout), 0;
        if ((m = flag(argc, argv, &i, "--start", &v))) {
            if (m < 0 || !parse_time_arg(v, start))
                return fail(EXIT_USAGE, "counts: --start takes an RFC 3339 time or now%s",
                            time_why(m > 0 ? v : NULL));
        } else if ((m = flag(argc, argv, &i, "--end", &v))) {
            if (m < 0 || !parse_time_arg(v, end))
                return fail(EXIT_USAGE, "counts: --end takes an RFC 3339 time or now%s",
                            time_why(m > 0 ? v : NULL));
        } else if ((m = flag(argc, argv, &i, "--interval", &v))) {
            if (m < 0 || ff_duration_parse(v, strlen(v), &us) < 0 || us <= 0)
                return fail(EXIT_USAGE, "counts: --interval takes a duration such as 15m");
            interval = v;
        } else if (flag(argc, argv, &i, "--json", NULL)) {
            json = true;
        } else if (flag(argc, argv, &i, "--csv", NULL)) {
            csv = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return fail(EXIT_USAGE, "counts: unknown flag %s (see footfall counts --help)",
                        argv[i]);
        } else if (!space) {
            space = argv[i];
        } else {
            return fail(EXIT_USAGE, "counts: one space at a time");
        }
    }
    if (!space) return fail(EXIT_USAGE, "counts: which space? (footfall counts SPACE ...)");
    if (!start[0] || !end[0]) return fail(EXIT_USAGE, "counts: --start and --end are required");
    if (json && csv) return fail(EXIT_USAGE, "counts: --csv or --json, not both");
    unsigned long id;
    int rc = space_id(space, &id);
    if (rc) return rc;
    char path[256];
    snprintf(path, sizeof path, "/v1/spaces/%lu/counts?start=%s&end=%s&interval=%s", id, start, end,
             interval);
    answer a;
    if ((rc = get_json(path, &a))) return rc;
    if (json) {
        print_body(&a);
    } else {
        ff_buf out;
        ff_buf_init(&out);
        if (csv)
            ff_cli_counts_csv(&out, a.json);
        else
            ff_cli_counts_table(&out, a.json);
        fputs(out.p, stdout);
        ff_buf_release(&out);
    }
    answer_release(&a);
    return 0;
}

/* ---- topology ---------------------------------------------------------------------------- */

static int topology_apply(const char *file)
{
    const char *buf;
    size_t len;
    int rc = map_file(file, &buf, &len);
    if (rc) return rc;
    json_error_t je;
    json_t *doc = json_loadb(buf, len, 0, &je);
    if (!doc) {
        if (len) munmap((void *)buf, len);
        return fail(EXIT_USAGE, "%s: invalid JSON at line %d column %d: %s", file, je.line,
                    je.column, je.text);
    }
    json_decref(doc);
    answer a;
    rc = api("PUT", "/v1/topology", "application/json", buf, len, &a);
    if (len) munmap((void *)buf, len);
    if (rc) return rc;
    json_t *s = json_object_get(a.json, "spaces"), *d = json_object_get(a.json, "dpus");
    if (json_is_integer(s) && json_is_integer(d))
        printf("topology applied: %lld spaces, %lld DPUs on the server\n",
               (long long)json_integer_value(s), (long long)json_integer_value(d));
    else
        printf("topology applied\n");
    answer_release(&a);
    return 0;
}

static int topology_show(bool json)
{
    answer s, d, u;
    int rc = get_json("/v1/spaces", &s);
    if (rc) return rc;
    if ((rc = get_json("/v1/doorways", &d))) goto out_s;
    if ((rc = get_json("/v1/dpus", &u))) goto out_d;
    if (json) {
        json_t *all = json_object();
        json_object_set(all, "spaces", json_object_get(s.json, "spaces"));
        json_object_set(all, "doorways", json_object_get(d.json, "doorways"));
        json_object_set(all, "dpus", json_object_get(u.json, "dpus"));
        json_dumpf(all, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
        json_decref(all);
    } else {
        ff_buf out;
        ff_buf_init(&out);
        ff_cli_topology(&out, s.json, d.json, u.json);
        fputs(out.p, stdout);
        ff_buf_release(&out);
    }
    answer_release(&u);
out_d:
    answer_release(&d);
out_s:
    answer_release(&s);
    return rc;
}

static int cmd_topology(int argc, char **argv)
{
    const char *verb = NULL, *file = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) return fputs(usage_topology, stdout), 0;
        if (flag(argc, argv, &i, "--json", NULL))
            json = true;
        else if (argv[i][0] == '-' && argv[i][1])
            return fail(EXIT_USAGE, "topology: unknown flag %s (see footfall topology --help)",
                        argv[i]);
        else if (!verb)
            verb = argv[i];
        else if (!file)
            file = argv[i];
        else
            return fail(EXIT_USAGE, "topology: too many arguments");
    }
    if (verb && strcmp(verb, "apply") == 0) {
        if (!file) return fail(EXIT_USAGE, "topology apply: which file? (FILE.json)");
        return topology_apply(file);
    }
    if (verb && strcmp(verb, "show") == 0) {
        if (file) return fail(EXIT_USAGE, "topology show takes no file");
        return topology_show(json);
    }
    return fail(EXIT_USAGE, "topology: apply FILE.json or show (see footfall topology --help)");
}

/* ---- main ---------------------------------------------------------------------------------- */

/* Takes the global flags out of argv (they may appear anywhere); returns the new argc,
 * or -1 after printing an error. */
static int take_globals(int argc, char **argv)
{
    int out = 1;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int m;
        if ((m = flag(argc, argv, &i, "--http", &v)))
            G.http_s = m > 0 ? v : NULL;
        else if ((m = flag(argc, argv, &i, "--tcp", &v)))
            G.tcp_s = m > 0 ? v : NULL;
        else if ((m = flag(argc, argv, &i, "--token", &v)))
            G.token = m > 0 ? v : NULL;
        else
            m = 0, argv[out++] = argv[i];
        if (m < 0) {
            fail(EXIT_USAGE, "%s needs a value", argv[i]);
            return -1;
        }
    }
    argv[out] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    G.http_s = "127.0.0.1:8080";
    G.tcp_s = "127.0.0.1:7071";
    G.token = getenv("FOOTFALL_TOKEN");
    if ((argc = take_globals(argc, argv)) < 0) return EXIT_USAGE;
    if (G.token && !G.token[0]) G.token = NULL;
    if (ff_endpoint_parse(G.http_s, &G.http) < 0)
        return fail(EXIT_USAGE, "--http %s: expected HOST:PORT", G.http_s);
    if (ff_endpoint_parse(G.tcp_s, &G.tcp) < 0)
        return fail(EXIT_USAGE, "--tcp %s: expected HOST:PORT", G.tcp_s);
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) return fputs(usage_main, stdout), 0;
    if (strcmp(cmd, "import") == 0) return cmd_import(argc - 1, argv + 1);
    if (strcmp(cmd, "count") == 0) return cmd_count(argc - 1, argv + 1);
    if (strcmp(cmd, "counts") == 0) return cmd_counts(argc - 1, argv + 1);
    if (strcmp(cmd, "topology") == 0) return cmd_topology(argc - 1, argv + 1);
    if (strcmp(cmd, "segments") == 0) return ff_cmd_segments(argc - 1, argv + 1);
    if (strcmp(cmd, "archive") == 0) return ff_cmd_archive(argc - 1, argv + 1);
    return fail(EXIT_USAGE, "unknown command \"%s\" (see footfall --help)", cmd);
}
