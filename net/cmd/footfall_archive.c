/*
 * footfall_archive.c -- `footfall archive --data-dir D --older-than DUR --to DIR`
 * (SPEC §6): moves the oldest sealed segments of a data directory to an archive
 * directory, while footfalld runs or not. Which segments may move and how a running
 * server takes it is engine/archive.c; how a file moves without ever losing a row,
 * storage/archive.h.
 *
 * Exit status: 0 ok (also when nothing is old enough); 1 a segment could not be
 * archived (named on stderr; those before it are archived, the rest untouched);
 * 2 usage error (bad duration, missing or same directories).
 */
#include "engine/engine.h"
#include "net/cmd/footfall_cmds.h"
#include "net/timefmt.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { EXIT_BAD = 1, EXIT_USAGE = 2 };

static const char usage_archive[] =
    "usage: footfall archive --data-dir DIR --older-than DUR --to ARCHIVE\n"
    "                        [--max-lateness DUR] [--dry-run]\n"
    "\n"
    "Moves the oldest sealed segments of the server's data directory to ARCHIVE, whole\n"
    "and oldest first, while footfalld runs or not. Each segment is verified, copied,\n"
    "its copy verified, then replaced by a small stub (DIR/segments/NAME.archived: its\n"
    "footer, so the server still knows the occupancy before and after) and only then\n"
    "removed: a crash at any point loses nothing, and running again finishes the job.\n"
    "footfalld answers 410 to queries into archived history, unless started with\n"
    "--archive-dir ARCHIVE; events older than archived history are refused too_old.\n"
    "\n"
    "  --data-dir DIR      the server's data directory (required)\n"
    "  --older-than DUR    move segments whose window ends before now - DUR\n"
    "                      (required; e.g. 180d). A segment's window is the time its\n"
    "                      seal covered; it ends at the horizon H of that seal, so\n"
    "                      it can end well after the segment's last row\n"
    "  --to ARCHIVE        an existing directory, other than DIR and DIR/segments\n"
    "  --max-lateness DUR  the server's --max-lateness (default 7d): a segment late\n"
    "                      events may still amend (ending after H - DUR) never moves\n"
    "  --dry-run           list what would move; move nothing\n"
    "\n"
    "Prints one line per segment and a summary: segments, bytes and rows moved.\n"
    "Durations: 90s, 15m, 1h, 7d. Exit status: 0 ok (also when nothing is old enough),\n"
    "1 a segment could not be archived (named), 2 usage error.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("footfall archive: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see footfall archive --help)\n", stderr);
    return EXIT_USAGE;
}

typedef struct args {
    const char *data, *to;
    int64_t older, lateness;
    bool dry;
} args;

static bool duration(const char *s, int64_t *out)
{
    return ff_duration_parse(s, strlen(s), out) == 0 && *out >= 0;
}

/* Parses argv; returns -1 when --help was printed, else 0 or an exit status. */
static int parse(int argc, char **argv, args *a)
{
    bool has_older = false;
    a->lateness = 7 * FF_DAY;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0)
            return fputs(usage_archive, stdout), -1;
        if (strcmp(f, "--dry-run") == 0) {
            a->dry = true;
            continue;
        }
        bool known = !strcmp(f, "--data-dir") || !strcmp(f, "--to") || !strcmp(f, "--older-than") ||
                     !strcmp(f, "--max-lateness");
        if (!known) return usage_error("unknown argument '%s'", f);
        if (!v) return usage_error("%s needs a value", f);
        i++;
        if (!strcmp(f, "--data-dir"))
            a->data = v;
        else if (!strcmp(f, "--to"))
            a->to = v;
        else if (!strcmp(f, "--older-than") && !(has_older = duration(v, &a->older)))
            return usage_error("--older-than %s: expected a duration like 180d", v);
        else if (!strcmp(f, "--max-lateness") && !duration(v, &a->lateness))
            return usage_error("--max-lateness %s: expected a duration like 7d", v);
    }
    if (!a->data) return usage_error("--data-dir is required");
    if (!has_older) return usage_error("--older-than is required");
    if (!a->to) return usage_error("--to is required");
    return 0;
}

/* Checks that the directories exist and differ. */
static int check_dirs(const args *a)
{
    char segs[PATH_MAX], rd[PATH_MAX], rs[PATH_MAX], rt[PATH_MAX];
    struct stat st;
    snprintf(segs, sizeof segs, "%s/segments", a->data);
    if (stat(a->data, &st) != 0 || !S_ISDIR(st.st_mode))
        return usage_error("--data-dir %s: not a directory", a->data);
    if (stat(a->to, &st) != 0 || !S_ISDIR(st.st_mode))
        return usage_error("--to %s: not a directory (create it first)", a->to);
    if (!realpath(a->data, rd) || !realpath(a->to, rt))
        return usage_error("%s: %s", a->to, strerror(errno));
    if (strcmp(rd, rt) == 0 || (realpath(segs, rs) && strcmp(rs, rt) == 0))
        return usage_error("--to %s: is the data directory itself", a->to);
    return 0;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * FF_SECOND + ts.tv_nsec / 1000;
}

static void print_item(const char *verb, const ff_archive_item *it)
{
    char a[FF_TIME_STRLEN], b[FF_TIME_STRLEN];
    ff_time_format(it->start == FF_TS_MIN ? 0 : it->start, a);
    ff_time_format(it->end, b);
    printf("%s %s  %s .. %s  %llu rows  %llu bytes\n", verb, it->name,
           it->start == FF_TS_MIN ? "beginning" : a, b, (unsigned long long)it->rows,
           (unsigned long long)it->bytes);
}

int ff_cmd_archive(int argc, char **argv)
{
    args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if ((rc = check_dirs(&a))) return rc;
    int64_t now = now_us();
    ff_archive_plan plan;
    char err[600] = "";
    rc = ff_engine_archive_plan(a.data, a.older, a.lateness, now, &plan, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "footfall archive: %s\n", err[0] ? err : ff_strerror(rc));
        return EXIT_BAD;
    }
    char cut[FF_TIME_STRLEN];
    ff_time_format(plan.cutoff == FF_TS_MIN ? 0 : plan.cutoff, cut);
    uint64_t segs = 0, bytes = 0, rows = 0, stubs = 0, skipped = 0;
    int status = 0;
    for (size_t i = 0; i < plan.n; i++) {
        const ff_archive_item *it = &plan.items[i];
        if (a.dry) {
            print_item("would archive", it);
            continue;
        }
        uint64_t sb = 0;
        rc = ff_engine_archive_one(a.data, a.to, it, now, &sb, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "footfall archive: %s: %s\n", it->name, err[0] ? err : ff_strerror(rc));
            status = EXIT_BAD;
            break;
        }
        if (rc == 1) {
            print_item("skipped (merged by the server meanwhile)", it);
            skipped++;
            break; /* archived history stays a prefix: later segments wait for a re-run */
        }
        print_item("archived", it);
        segs++, bytes += it->bytes, rows += it->rows, stubs += sb;
    }
    if (a.dry)
        printf("dry run: would archive %zu segments; %zu already archived; %s%s%s\n", plan.n,
               plan.already,
               plan.cutoff == FF_TS_MIN ? "no sealed history yet" : "windows ending before ",
               plan.cutoff == FF_TS_MIN ? "" : cut,
               plan.cutoff == FF_TS_MIN ? ""
               : plan.lateness_cut      ? " (H - max-lateness) move"
                                        : " (now - older-than) move");
    else
        printf("archived %llu segments, %llu bytes, %llu rows to %s (stubs: %llu bytes); "
               "%zu already archived; %llu skipped\n",
               (unsigned long long)segs, (unsigned long long)bytes, (unsigned long long)rows, a.to,
               (unsigned long long)stubs, plan.already, (unsigned long long)skipped);
    ff_engine_archive_plan_free(&plan);
    return status;
}
