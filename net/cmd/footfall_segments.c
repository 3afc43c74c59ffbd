/*
 * footfall_segments.c -- `footfall segments ls|dump|verify PATH`: the offline tooling of
 * sealed segment files (SPEC §6), without a server, through storage/segment.h only.
 *
 * PATH is one segment file or a directory of them. In a directory, ls and dump read the
 * live segments (the highest version of each range, in time order, as ff_seg_list()
 * gives them); verify checks every "*.ffs" file, superseded versions included, since
 * each is data on disk. Nothing here writes.
 *
 * Exit status: 0 ok; 1 a segment is corrupt or cannot be read (each one named on
 * stderr, or on stdout by verify); 2 usage error.
 */
#include "net/cmd/footfall_cmds.h"
#include "net/timefmt.h"
#include "storage/archive.h"
#include "storage/segment.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

enum { EXIT_BAD = 1, EXIT_USAGE = 2 };

static const char usage_segments[] =
    "usage: footfall segments ls PATH\n"
    "       footfall segments dump PATH [--space ID] [--start T] [--end T]\n"
    "                                   [--format csv|jsonl]\n"
    "       footfall segments verify PATH\n"
    "\n"
    "Offline tools for sealed segment files (*.ffs); no server needed. PATH is a segment\n"
    "file or a directory of them (e.g. the server's data directory's segments).\n"
    "`footfall segments COMMAND --help` for details.\n"
    "Exit status: 0 ok, 1 a segment is corrupt or unreadable (ls reads headers and\n"
    "footers only; verify reads every block), 2 usage error.\n";

static const char usage_ls[] =
    "usage: footfall segments ls PATH\n"
    "\n"
    "One line per segment (in a directory: the stubs of archived ones, `archived` in the\n"
    "last column, then the live version of each range, in time order): file name,\n"
    "first and last row time, spaces, rows, bytes on disk, bytes per row. A segment that\n"
    "cannot be opened is named on stderr with the reason.\n"
    "Exit status: 0 ok, 1 some segment could not be opened, 2 usage error.\n";

static const char usage_dump[] =
    "usage: footfall segments dump PATH [--space ID] [--start T] [--end T]\n"
    "                              [--format csv|jsonl]\n"
    "\n"
    "Prints the rows of PATH, one per line, segment by segment (in time order) and space\n"
    "by space (ascending id): space_id, timestamp (RFC 3339), dpu_id, seq, direction,\n"
    "delta, occupancy (after the row). CSV (the default) starts with a header line.\n"
    "  --space ID   only this space\n"
    "  --start T    only rows at or after T (RFC 3339)\n"
    "  --end T      only rows before T (RFC 3339)\n"
    "  --format F   csv or jsonl (one JSON object per line)\n"
    "Exit status: 0 ok, 1 a segment is corrupt or unreadable (rows before the damage\n"
    "are printed; the damaged block's are not), 2 usage error.\n";

static const char usage_verify[] =
    "usage: footfall segments verify PATH\n"
    "\n"
    "Checks every segment file in PATH completely: header, footer and every block\n"
    "checksum, every row decoded, canonical order, counts, time ranges, occupancy chain.\n"
    "Prints `ok FILE (N rows)` or `CORRUPT FILE: reason` per file and a summary.\n"
    "Exit status: 0 all sound, 1 some file is corrupt, 2 usage error.\n";

static int usage_error(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;
    fputs("footfall segments: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n\n", stderr);
    fputs(usage, stderr);
    return EXIT_USAGE;
}

static bool is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* ---- the files of PATH ------------------------------------------------------------- */

typedef struct paths {
    char **v;
    size_t n, cap;
} paths;

static void paths_add(paths *p, const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *s = ff_xmalloc(len);
    snprintf(s, len, "%s%s%s", dir, dir[0] ? "/" : "", name);
    p->v = ff_xgrow(p->v, &p->cap, p->n + 1, sizeof *p->v);
    p->v[p->n++] = s;
}

static void paths_free(paths *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->v[i]);
    free(p->v);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The stubs "*.ffs.archived" of directory path (footfall archive), sorted. */
static void collect_stubs(const char *path, paths *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *de;
    size_t k = strlen(".ffs" FF_ARC_SUFFIX);
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > k && strcmp(de->d_name + n - k, ".ffs" FF_ARC_SUFFIX) == 0)
            paths_add(out, path, de->d_name);
    }
    closedir(d);
    if (out->n) qsort(out->v, out->n, sizeof *out->v, str_cmp);
}

/*
 * The segment files of path: itself when it is a file; in a directory the live segments
 * (all = false) or every "*.ffs" file (all = true). Prints and returns -1 on failure.
 */
static int collect_paths(const char *path, bool all, paths *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    if (stat(path, &st) != 0) {
        fprintf(stderr, "footfall segments: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        paths_add(out, "", path);
        return 0;
    }
    if (!all) {
        ff_seg_entry *v;
        size_t n;
        int rc = ff_seg_list(path, 0, &v, &n);
        if (rc) {
            fprintf(stderr, "footfall segments: %s: %s\n", path, ff_strerror(rc));
            return -1;
        }
        for (size_t i = 0; i < n; i++) paths_add(out, path, v[i].name);
        free(v);
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "footfall segments: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".ffs") == 0) paths_add(out, path, de->d_name);
    }
    closedir(d);
    if (out->n) qsort(out->v, out->n, sizeof *out->v, str_cmp);
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ---- ls ---------------------------------------------------------------------------- */

static int cmd_ls(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) return fputs(usage_ls, stdout), 0;
        if (argv[i][0] == '-' && argv[i][1])
            return usage_error(usage_ls, "unknown flag %s", argv[i]);
        if (path) return usage_error(usage_ls, "one PATH only");
        path = argv[i];
    }
    if (!path) return usage_error(usage_ls, "PATH is missing");
    paths ps, live;
    if (collect_paths(path, false, &live) < 0) return EXIT_BAD;
    collect_stubs(path, &ps); /* archived segments (the oldest): with their stub's size */
    for (size_t i = 0; i < live.n; i++) paths_add(&ps, "", live.v[i]);
    paths_free(&live);
    /* The name column is as wide as the longest name: a stub's name is its segment's
     * and ".archived", longer than any live one. Times take 27 columns at most
     * ("2018-02-24T08:45:21.893123Z"). */
    int w = (int)strlen("segment");
    for (size_t i = 0; i < ps.n; i++)
        if ((int)strlen(base_name(ps.v[i])) > w) w = (int)strlen(base_name(ps.v[i]));
    int status = 0;
    printf("%-*s %-27s %-27s %8s %12s %12s %9s\n", w, "segment", "first", "last", "spaces", "rows",
           "bytes", "bytes/row");
    for (size_t i = 0; i < ps.n; i++) {
        ff_seg *seg;
        char err[FF_SEG_ERRLEN], a[FF_TIME_STRLEN] = "-", b[FF_TIME_STRLEN] = "-";
        if (ff_seg_open(ps.v[i], &seg, err, sizeof err) != 0) {
            fprintf(stderr, "footfall segments: %s\n", err);
            status = EXIT_BAD;
            continue;
        }
        ff_seg_info in;
        ff_seg_get_info(seg, &in);
        if (in.rows) ff_time_format(in.first_ts, a), ff_time_format(in.last_ts, b);
        if (in.stub)
            printf("%-*s %-27s %-27s %8" PRIu32 " %12" PRIu64 " %12" PRIu64 " %9s\n", w,
                   base_name(ps.v[i]), a, b, in.spaces, in.rows, in.file_bytes, "archived");
        else
            printf("%-*s %-27s %-27s %8" PRIu32 " %12" PRIu64 " %12" PRIu64 " %9.3f\n", w,
                   base_name(ps.v[i]), a, b, in.spaces, in.rows, in.file_bytes,
                   in.rows ? (double)in.file_bytes / (double)in.rows : 0.0);
        ff_seg_close(seg);
    }
    paths_free(&ps);
    return status;
}

/* ---- dump -------------------------------------------------------------------------- */

typedef struct dump_opts {
    bool has_space, jsonl;
    uint32_t space;
    int64_t start, end;
} dump_opts;

typedef struct dump_ctx {
    const dump_opts *o;
    uint32_t space;
} dump_ctx;

static int print_row(void *ctx, const ff_seg_row *r)
{
    const dump_ctx *c = ctx;
    char t[FF_TIME_STRLEN];
    ff_time_format(r->ts, t);
    if (c->o->jsonl)
        printf("{\"space_id\":%" PRIu32 ",\"timestamp\":\"%s\",\"dpu_id\":%" PRIu32
               ",\"seq\":%u,\"direction\":%d,\"delta\":%d,\"occupancy\":%" PRId64 "}\n",
               c->space, t, r->dpu_id, r->seq, r->direction, r->delta, r->occupancy);
    else
        printf("%" PRIu32 ",%s,%" PRIu32 ",%u,%d,%d,%" PRId64 "\n", c->space, t, r->dpu_id, r->seq,
               r->direction, r->delta, r->occupancy);
    return 0;
}

/* Prints the selected rows of one segment file; 0 or EXIT_BAD after naming the damage. */
static int dump_one(const char *path, const dump_opts *o)
{
    ff_seg *seg;
    char err[FF_SEG_ERRLEN];
    if (ff_seg_open(path, &seg, err, sizeof err) != 0) {
        fprintf(stderr, "footfall segments: %s\n", err);
        return EXIT_BAD;
    }
    ff_seg_info in;
    ff_seg_get_info(seg, &in);
    int rc = 0;
    for (uint32_t i = 0; i < in.spaces && rc == 0; i++) {
        ff_seg_space s;
        ff_seg_space_at(seg, i, &s);
        if (o->has_space && s.space_id != o->space) continue;
        dump_ctx c = {o, s.space_id};
        rc = ff_seg_rows(seg, s.space_id, o->start, o->end, NULL, print_row, &c);
    }
    if (rc) {
        fflush(stdout);
        fprintf(stderr, "footfall segments: %s\n",
                ff_seg_error(seg)[0] ? ff_seg_error(seg) : ff_strerror(rc));
    }
    ff_seg_close(seg);
    return rc ? EXIT_BAD : 0;
}

/* Parses the flags of dump; returns -1 after a usage message (status in *status). */
static int dump_flags(int argc, char **argv, dump_opts *o, const char **path)
{
    o->start = FF_TS_MIN;
    o->end = FF_TS_MAX;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--space") == 0 || strcmp(a, "--start") == 0 ||
                     strcmp(a, "--end") == 0 || strcmp(a, "--format") == 0;
        if (takes && !v) return usage_error(usage_dump, "%s needs a value", a), -1;
        if (strcmp(a, "--space") == 0) {
            char *end;
            errno = 0;
            unsigned long id = strtoul(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-' || id > UINT32_MAX)
                return usage_error(usage_dump, "--space %s: expected a space id", v), -1;
            o->has_space = true;
            o->space = (uint32_t)id;
        } else if (strcmp(a, "--start") == 0 || strcmp(a, "--end") == 0) {
            int64_t *t = a[2] == 's' ? &o->start : &o->end;
            if (ff_time_parse(v, strlen(v), t) != 0)
                return usage_error(usage_dump, "%s %s: expected an RFC 3339 time (%s)", a, v,
                                   ff_time_error(v, strlen(v))),
                       -1;
        } else if (strcmp(a, "--format") == 0) {
            if (strcmp(v, "csv") != 0 && strcmp(v, "jsonl") != 0)
                return usage_error(usage_dump, "--format %s: expected csv or jsonl", v), -1;
            o->jsonl = v[0] == 'j';
        } else if (a[0] == '-' && a[1]) {
            return usage_error(usage_dump, "unknown flag %s", a), -1;
        } else if (*path) {
            return usage_error(usage_dump, "one PATH only"), -1;
        } else {
            *path = a;
            continue;
        }
        i++;
    }
    if (!*path) return usage_error(usage_dump, "PATH is missing"), -1;
    if (o->end <= o->start) return usage_error(usage_dump, "--end must be after --start"), -1;
    return 0;
}

static int cmd_dump(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (is_help(argv[i])) return fputs(usage_dump, stdout), 0;
    dump_opts o = {0};
    const char *path = NULL;
    if (dump_flags(argc, argv, &o, &path) < 0) return EXIT_USAGE;
    paths ps;
    if (collect_paths(path, false, &ps) < 0) return EXIT_BAD;
    if (!o.jsonl) puts("space_id,timestamp,dpu_id,seq,direction,delta,occupancy");
    int status = 0;
    for (size_t i = 0; i < ps.n; i++)
        if (dump_one(ps.v[i], &o) != 0) status = EXIT_BAD;
    paths_free(&ps);
    return status;
}

/* ---- verify ------------------------------------------------------------------------ */

/*
 * A storage error names its file, "FILE: why" or "corrupt at offset X in FILE: why"
 * (storage/segment.h); verify's line already starts with FILE, so the reason is err
 * without it, written into out.
 */
static void without_path(const char *err, const char *path, char *out, size_t outlen)
{
    size_t n = strlen(path);
    char in_path[FF_SEG_ERRLEN];
    snprintf(in_path, sizeof in_path, " in %s:", path);
    const char *at = strstr(err, in_path);
    if (strncmp(err, path, n) == 0 && strncmp(err + n, ": ", 2) == 0)
        snprintf(out, outlen, "%s", err + n + 2);
    else if (at)
        snprintf(out, outlen, "%.*s:%s", (int)(at - err), err, at + strlen(in_path));
    else
        snprintf(out, outlen, "%s", err);
}

static int cmd_verify(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) return fputs(usage_verify, stdout), 0;
        if (argv[i][0] == '-' && argv[i][1])
            return usage_error(usage_verify, "unknown flag %s", argv[i]);
        if (path) return usage_error(usage_verify, "one PATH only");
        path = argv[i];
    }
    if (!path) return usage_error(usage_verify, "PATH is missing");
    paths ps;
    if (collect_paths(path, true, &ps) < 0) return EXIT_BAD;
    size_t bad = 0;
    uint64_t rows = 0;
    for (size_t i = 0; i < ps.n; i++) {
        ff_seg_report rep;
        int rc = ff_seg_verify(ps.v[i], &rep);
        if (rc == 0) {
            printf("ok %s (%" PRIu64 " rows)\n", ps.v[i], rep.rows_checked);
            rows += rep.rows_checked;
            continue;
        }
        bad++;
        char why[FF_SEG_ERRLEN];
        if (rep.error[0])
            without_path(rep.error, ps.v[i], why, sizeof why);
        else
            snprintf(why, sizeof why, "%s", ff_strerror(rc));
        printf("CORRUPT %s: %s\n", ps.v[i], why);
    }
    printf("%zu file%s checked, %" PRIu64 " rows sound, %zu corrupt\n", ps.n, ps.n == 1 ? "" : "s",
           rows, bad);
    paths_free(&ps);
    return bad ? EXIT_BAD : 0;
}

int ff_cmd_segments(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_segments, stderr);
        return EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (is_help(verb) || strcmp(verb, "help") == 0) return fputs(usage_segments, stdout), 0;
    if (strcmp(verb, "ls") == 0) return cmd_ls(argc - 1, argv + 1);
    if (strcmp(verb, "dump") == 0) return cmd_dump(argc - 1, argv + 1);
    if (strcmp(verb, "verify") == 0) return cmd_verify(argc - 1, argv + 1);
    return usage_error(usage_segments, "unknown command \"segments %s\"", verb);
}
