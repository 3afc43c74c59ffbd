/*
 * footfalld -- the footfall server (SPEC §6). Parses flags, then ff_server_run().
 */
#include "net/server.h"
#include "net/timefmt.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/socket.h>
#include <sys/stat.h>
#include <string.h>

static const char usage[] =
    "usage: footfalld [options]\n"
    "\n"
    "The footfall occupancy server: takes DPU events over UDP, TCP and HTTP, keeps the\n"
    "occupancy of every space, and answers queries over HTTP.\n"
    "\n"
    "  --data-dir DIR        where the log lives (default ./footfall-data)\n"
    "  --udp HOST:PORT       UDP ingest (default 127.0.0.1:7070; 'off' disables)\n"
    "  --tcp HOST:PORT       TCP ingest (default 127.0.0.1:7071; 'off' disables)\n"
    "  --http HOST:PORT      HTTP API (default 127.0.0.1:8080; 'off' disables)\n"
    "  --settle DURATION     settle delay behind the newest event (default 5m)\n"
    "  --late amend|reject   late events amend history (default) or are refused\n"
    "  --max-lateness DUR    refuse events older than horizon minus this (default 7d)\n"
    "  --max-future DUR      refuse events this far ahead of the clock (default 5m)\n"
    "  --dedup on|off        drop exact repeats of accepted events (default on)\n"
    "  --fsync always|interval:MS|never\n"
    "                        when answers wait for the disk (default always: group commit)\n"
    "  --topology FILE       apply this topology document (JSON) at start\n"
    "  --token TOKEN         require 'Authorization: Bearer TOKEN' on changes\n"
    "                        (default: $FOOTFALL_TOKEN)\n"
    "  --seal-rows N         seal settled rows into a segment once N have settled\n"
    "                        (default 1048576)\n"
    "  --seal-age DURATION   ... or once this much time has passed (default 1h)\n"
    "  --seal-lag DURATION   keep settled rows younger than H - this in memory, where a\n"
    "                        late event costs a refold, not segment rewrites (default 5m)\n"
    "  --archive-dir DIR     read the segments `footfall archive` moved to DIR, so queries\n"
    "                        into archived history answer (default: they answer 410)\n"
    "  --metrics-per-space   export footfall_space_occupancy{space=...} per space\n"
    "  --udp-rcvbuf BYTES    UDP receive buffer (default 33554432)\n"
    "  --log-file-bytes N    size of each preallocated log file (default 67108864;\n"
    "                        at least 4096)\n"
    "  --quiet               no informational lines on stderr\n"
    "  --help, --version\n"
    "\n"
    "Durations: 90s, 15m, 1h, 7d. SIGTERM or SIGINT stops taking input, makes\n"
    "everything durable and exits 0. On start it prints one line to stdout:\n"
    "  footfalld: ready udp=HOST:PORT tcp=HOST:PORT http=HOST:PORT\n";

enum {
    OPT_DATA = 256,
    OPT_UDP,
    OPT_TCP,
    OPT_HTTP,
    OPT_SETTLE,
    OPT_LATE,
    OPT_LATENESS,
    OPT_FUTURE,
    OPT_DEDUP,
    OPT_FSYNC,
    OPT_TOPOLOGY,
    OPT_TOKEN,
    OPT_PER_SPACE,
    OPT_RCVBUF,
    OPT_QUIET,
    OPT_HELP,
    OPT_VERSION,
    OPT_LOG_FILE_BYTES,
    OPT_SEAL_ROWS,
    OPT_SEAL_AGE,
    OPT_SEAL_LAG,
    OPT_ARCHIVE_DIR,
};

static const struct option options[] = {
    {"data-dir", required_argument, 0, OPT_DATA},
    {"udp", required_argument, 0, OPT_UDP},
    {"tcp", required_argument, 0, OPT_TCP},
    {"http", required_argument, 0, OPT_HTTP},
    {"settle", required_argument, 0, OPT_SETTLE},
    {"late", required_argument, 0, OPT_LATE},
    {"max-lateness", required_argument, 0, OPT_LATENESS},
    {"max-future", required_argument, 0, OPT_FUTURE},
    {"dedup", required_argument, 0, OPT_DEDUP},
    {"fsync", required_argument, 0, OPT_FSYNC},
    {"topology", required_argument, 0, OPT_TOPOLOGY},
    {"token", required_argument, 0, OPT_TOKEN},
    {"metrics-per-space", no_argument, 0, OPT_PER_SPACE},
    {"udp-rcvbuf", required_argument, 0, OPT_RCVBUF},
    {"quiet", no_argument, 0, OPT_QUIET},
    {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION},
    {"log-file-bytes", required_argument, 0, OPT_LOG_FILE_BYTES},
    {"seal-rows", required_argument, 0, OPT_SEAL_ROWS},
    {"seal-age", required_argument, 0, OPT_SEAL_AGE},
    {"seal-lag", required_argument, 0, OPT_SEAL_LAG},
    {"archive-dir", required_argument, 0, OPT_ARCHIVE_DIR},
    {0, 0, 0, 0},
};

static int bad(const char *flag, const char *value, const char *want)
{
    fprintf(stderr, "footfalld: --%s %s: %s\n(see footfalld --help)\n", flag, value, want);
    return 2;
}

static bool duration(const char *s, int64_t *out)
{
    return ff_duration_parse(s, strlen(s), out) == 0 && *out >= 0;
}

/* A whole number in [min, max] ("1e6", "-5", "12kb" are not). */
static bool count(const char *s, unsigned long long min, unsigned long long max,
                  unsigned long long *out)
{
    char *end;
    if (*s < '0' || *s > '9') return false;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return !*end && errno == 0 && *out >= min && *out <= max;
}

static const char *addr_or_off(const char *s)
{
    return strcmp(s, "off") == 0 ? "" : s;
}

static int parse_fsync(const char *v, ff_server_opts *o)
{
    if (strcmp(v, "always") == 0)
        o->fsync_mode = FF_FSYNC_ALWAYS;
    else if (strcmp(v, "never") == 0)
        o->fsync_mode = FF_FSYNC_NEVER;
    else if (strncmp(v, "interval:", 9) == 0) {
        char *end;
        long ms = strtol(v + 9, &end, 10);
        if (*end || ms <= 0) return -1;
        o->fsync_mode = FF_FSYNC_INTERVAL;
        o->fsync_interval_ms = ms;
    } else
        return -1;
    return 0;
}

static int parse_flag(int c, const char *v, ff_server_opts *o)
{
    const char *name = options[c - OPT_DATA].name;
    switch (c) {
    case OPT_DATA:
        o->engine.data_dir = v;
        break;
    case OPT_UDP:
        o->udp = addr_or_off(v);
        break;
    case OPT_TCP:
        o->tcp = addr_or_off(v);
        break;
    case OPT_HTTP:
        o->http = addr_or_off(v);
        break;
    case OPT_SETTLE:
        if (!duration(v, &o->engine.settle_us)) return bad(name, v, "expected a duration like 5m");
        break;
    case OPT_LATENESS:
        if (!duration(v, &o->engine.max_lateness_us))
            return bad(name, v, "expected a duration like 7d");
        break;
    case OPT_FUTURE:
        if (!duration(v, &o->engine.max_future_us))
            return bad(name, v, "expected a duration like 5m");
        break;
    case OPT_LATE:
        if (strcmp(v, "amend") && strcmp(v, "reject"))
            return bad(name, v, "expected amend or reject");
        o->engine.late_reject = strcmp(v, "reject") == 0;
        break;
    case OPT_DEDUP:
        if (strcmp(v, "on") && strcmp(v, "off")) return bad(name, v, "expected on or off");
        o->engine.dedup_off = strcmp(v, "off") == 0;
        break;
    case OPT_FSYNC:
        if (parse_fsync(v, o) < 0) return bad(name, v, "expected always, interval:MS or never");
        break;
    case OPT_TOPOLOGY:
        o->topology_file = v;
        break;
    case OPT_TOKEN:
        o->token = v;
        break;
    case OPT_PER_SPACE:
        o->metrics_per_space = true;
        break;
    case OPT_QUIET:
        o->quiet = true;
        break;
    case OPT_RCVBUF: {
        unsigned long long n;
        if (!count(v, 1, INT_MAX, &n)) return bad(name, v, "expected a positive number of bytes");
        o->udp_rcvbuf = (int)n;
        break;
    }
    case OPT_LOG_FILE_BYTES: {
        unsigned long long n;
        if (!count(v, 4096, (unsigned long long)1 << 40, &n))
            return bad(name, v, "expected a number of bytes from 4096 to 1 TiB");
        o->engine.log_file_bytes = n;
        break;
    }
    case OPT_SEAL_ROWS: {
        unsigned long long n;
        if (!count(v, 1, (unsigned long long)1 << 40, &n)) /* merges go to 16x: no wrap */
            return bad(name, v, "expected a positive number of rows, at most 2^40");
        o->engine.seal_rows = n;
        break;
    }
    case OPT_SEAL_AGE:
        if (!duration(v, &o->engine.seal_age_us) || o->engine.seal_age_us == 0)
            return bad(name, v, "expected a duration like 1h");
        break;
    case OPT_SEAL_LAG:
        if (!duration(v, &o->engine.seal_lag_us))
            return bad(name, v, "expected a duration like 10m");
        break;
    case OPT_ARCHIVE_DIR: {
        struct stat st;
        if (!v[0] || stat(v, &st) != 0 || !S_ISDIR(st.st_mode))
            return bad(name, v, "expected an existing directory");
        o->engine.archive_dir = v;
        break;
    }
    default:
        fprintf(stderr, "footfalld: flag %s is not handled (a bug)\n", name);
        return 2;
    }
    return 0;
}

/*
 * glibc raises its mmap threshold up to 32 MiB after a large block is freed, and then
 * serves the next large blocks from the heap, which it seldom gives back. footfalld
 * allocates and frees large blocks all the time (a seal's copy of its rows, a space's
 * settled rows, segment buffers), so its RSS would keep the high-water mark of every
 * seal. A fixed threshold keeps large blocks mmap'd: freed, they go back to the OS.
 * Two arenas: the loop thread and the thread pool's jobs.
 */
static void tune_malloc(void)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    mallopt(M_ARENA_MAX, 2);
#endif
}

int main(int argc, char **argv)
{
    tune_malloc();
    ff_server_opts o;
    ff_server_opts_default(&o);
    o.token = getenv("FOOTFALL_TOKEN");
    int c;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (c == OPT_HELP || c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (c == OPT_VERSION) {
            puts("footfalld 0.1.0");
            return 0;
        }
        if (c == '?') {
            fputs("(see footfalld --help)\n", stderr);
            return 2;
        }
        int rc = parse_flag(c, optarg, &o);
        if (rc) return rc;
    }
    const char *addrs[3] = {o.udp, o.tcp, o.http}, *names[3] = {"udp", "tcp", "http"};
    for (int i = 0; i < 3; i++) { /* before the log is replayed, which may take a while */
        struct sockaddr_storage ss;
        if (addrs[i] && addrs[i][0] && ff_parse_hostport(addrs[i], &ss) < 0)
            return bad(names[i], addrs[i], "expected HOST:PORT (an IP address, or localhost)");
    }
    if (optind < argc) {
        fprintf(stderr, "footfalld: unexpected argument '%s' (see footfalld --help)\n",
                argv[optind]);
        return 2;
    }
    return ff_server_run(&o) < 0 ? 1 : 0;
}
