/*
 * server.h -- footfalld: one libuv loop that takes UDP and TCP frames and HTTP requests
 * and answers from the engine.
 *
 * Durability policy (SPEC §5), enforced in server.c's commit step: every ingest and
 * topology change is appended to the engine's log when it is handled; one msync at a
 * time runs on a worker thread and covers everything appended before it began; when
 * it completes, the UDP acks, TCP acks and suspended HTTP answers it covers are
 * released (group commit), and the next sync begins. With --fsync=interval:MS the log
 * is synced by a timer and answers go out without waiting; with --fsync=never only the
 * OS writes it back.
 */
#ifndef FF_NET_SERVER_H
#define FF_NET_SERVER_H

#include "engine/engine.h"

#include <stdbool.h>

enum ff_fsync_mode { FF_FSYNC_ALWAYS = 0, FF_FSYNC_INTERVAL, FF_FSYNC_NEVER };

typedef struct ff_server_opts {
    ff_engine_opts engine;
    const char *udp;           /* HOST:PORT, "" or NULL = off */
    const char *tcp;           /* HOST:PORT */
    const char *http;          /* HOST:PORT */
    const char *token;         /* NULL: no token check */
    const char *topology_file; /* applied at start, may be NULL */
    int fsync_mode;
    int64_t fsync_interval_ms;
    bool metrics_per_space; /* footfall_space_occupancy gauge per space */
    int udp_rcvbuf;         /* SO_RCVBUF bytes; 0 = default (32 MiB) */
    bool quiet;             /* no informational lines on stderr */
} ff_server_opts;

/* Fills o with the defaults of SPEC §6. */
void ff_server_opts_default(ff_server_opts *o);

/*
 * Opens the engine (recovering the log), applies the topology file, binds the
 * listeners, prints `footfalld: ready udp=... tcp=... http=...` on stdout and runs until
 * SIGTERM or SIGINT; then stops taking input, makes everything durable and returns 0.
 * Returns a negative error (and prints why on stderr) when it cannot start.
 */
int ff_server_run(const ff_server_opts *o);

/* Parses "HOST:PORT" or "[V6]:PORT" into a sockaddr_storage. 0 or FF_EFORMAT. */
struct sockaddr_storage;
int ff_parse_hostport(const char *s, struct sockaddr_storage *out);

#endif /* FF_NET_SERVER_H */
