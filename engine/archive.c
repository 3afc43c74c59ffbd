/*
 * archive.c -- archived history: which segments may be archived, how the engine reads
 * (or refuses to read) them, and how a running engine notices an archive.
 *
 * What. `footfall archive` (ff_engine_archive_plan/one, offline) moves the oldest live
 * segments of a data directory to an archive directory, whole, oldest first, leaving a
 * stub (storage/archive.h: the segment's footer) under the segment's name +
 * ".archived". Archived history is therefore a prefix of the segment windows,
 * (FF_TS_MIN, archived_upto]. Only segments ending before
 *   cutoff = min(now - older_than, H - max_lateness)
 * move, H being the checkpoint's (H only grows): no event can be admitted into them
 * any more (it would be too_old), so no amendment will rewrite them.
 *
 * Reading. The index of a space (engine/seal.c) comes from the footers, which a stub
 * keeps, so occupancy before and after archived history, row counts and latest values
 * are all exact. Reading rows of archived history needs the blocks: without
 * opts.archive_dir, count-at-T with T < stub_upto and ranges (buckets, rows, a DPU's
 * events) starting at or before stub_upto answer FF_EARCHIVED (HTTP 410); with it, the
 * archive's copies are opened instead of the stubs (checked to be the same file) and
 * every answer is as if nothing had moved. Either way:
 *   - events at or before archived_upto are refused too_old (archived segments are
 *     never rewritten);
 *   - merges never touch an archived segment (engine/seal.c, merge_some).
 *
 * A running engine. The tool may run while footfalld does. It never writes a file the
 * engine writes, and the engine's mapping of a segment stays valid after the tool
 * unlinks it, so the engine answers on; about once a second, when no seal or merge job
 * is in flight and the segment directory changed since the last look (its mtime: one
 * stat), ff__arc_tick() reads the directory for stubs of live segments not archived
 * yet, checks each describes that very file (ff_seg_same) and swaps the mapping for the
 * stub (or for the archive copy with archive_dir), then tells opts.on_archived what it
 * adopted (footfalld logs it). Races, and why no row is lost:
 *   - a merge or amendment of a segment the tool is archiving: the engine writes a new
 *     segment from its mapping, commits, and the old name leaves the checkpoint; the
 *     stub then names no live segment and is never adopted (the tool removes it when
 *     it sees the merge, else the next open does); the rows are in the new local
 *     segment, which the next run archives. Archived history may then have a local
 *     hole until that run: archived_upto is the latest end of any archived segment,
 *     so queries stay refused (410) up to it, never answered from missing rows.
 *   - a crash of either at any step: the checkpoint names the segment; recovery
 *     (ff__arc_open) opens its stub when there is a valid one (unlinking a left-over
 *     original, ff_arc_settle), else the file, which the tool only unlinks after the
 *     stub is durable.
 *   - a late event replayed from the log into a stub's window (only if the tool was
 *     given a max_lateness smaller than the server's): the open fails, naming it,
 *     rather than lose it; with archive_dir the segment is rewritten as usual and so
 *     comes back from the archive.
 */
#include "engine/engine_int.h"
#include "storage/archive.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_EVERY FF_SECOND
#define PATH_MAX_  (4096 + FF_ARC_NAME_MAX + 16)

int64_t ff_engine_archived_upto(const ff_engine *e)
{
    return e->stub_upto;
}

void ff__arc_recount(ff_engine *e)
{
    e->archived_upto = e->stub_upto = FF_TS_MIN;
    e->segments_archived = 0;
    for (size_t i = 0; i < e->nsegs; i++) {
        const ff__segref *g = &e->segs[i];
        if (!g->archived) continue;
        ff_seg_info info;
        ff_seg_get_info(g->seg, &info);
        e->segments_archived++;
        if (g->end > e->archived_upto) e->archived_upto = g->end;
        if (info.stub && g->end > e->stub_upto) e->stub_upto = g->end;
    }
}

/* The archive's copy of the segment whose stub is `stub`, when opts.archive_dir has
 * it: 0 and *out, or an error naming the file. */
static int open_copy(const ff_engine *e, const char *name, const ff_seg *stub, ff_seg **out,
                     char *err, size_t errlen)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", e->o.archive_dir, name) >= sizeof(path)) {
        snprintf(err, errlen, "%s: path too long", e->o.archive_dir);
        return -ENAMETOOLONG;
    }
    int rc = ff_seg_open(path, out, err, errlen);
    if (rc < 0) return rc;
    ff_seg_info info;
    ff_seg_get_info(*out, &info);
    if (info.stub || !ff_seg_same(*out, stub)) {
        ff_seg_close(*out);
        snprintf(err, errlen, "%s: is not the segment its stub in %s names", path, e->seg_dir);
        return FF_ECONFLICT;
    }
    return 0;
}

int ff__arc_open(ff_engine *e, const char *name, ff_seg **out, bool *archived, char *err,
                 size_t errlen)
{
    char path[4096], stub[FF_ARC_NAME_MAX];
    ff_arc_stub_name(stub, name);
    snprintf(path, sizeof(path), "%s/%s", e->seg_dir, stub);
    *archived = false;
    ff_seg *s;
    int rc = ff_seg_open(path, &s, err, errlen);
    if (rc == -ENOENT) { /* not archived */
        snprintf(path, sizeof(path), "%s/%s", e->seg_dir, name);
        return ff_seg_open(path, out, err, errlen);
    }
    if (rc < 0) return rc; /* a stub is written by rename: a bad one is damage */
    rc = ff_arc_settle(e->seg_dir, name);
    if (rc < 0) {
        snprintf(err, errlen, "%s: both it and its stub %s exist and differ (%s)", name, stub,
                 ff_strerror(rc));
        ff_seg_close(s);
        return rc;
    }
    *archived = true;
    if (!e->o.archive_dir) {
        *out = s;
        return 0;
    }
    rc = open_copy(e, name, s, out, err, errlen);
    ff_seg_close(s);
    return rc;
}

/* The position of the live segment named `name` (a stub's name without its suffix)
 * that is not archived yet, or -1. Windows are disjoint and sorted by start. */
static ptrdiff_t live_unarchived(const ff_engine *e, const char *name)
{
    int64_t start, end;
    uint32_t version;
    if (ff_seg_name_parse(name, &start, &end, &version) != 0) return -1;
    size_t lo = 0, hi = e->nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->segs[mid].start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == e->nsegs) return -1;
    const ff__segref *g = &e->segs[lo];
    bool same = g->start == start && g->end == end && g->version == version;
    return same && !g->archived ? (ptrdiff_t)lo : -1;
}

/* Adopts the stub of live segment i, found by the tick. false: not (yet) usable. */
static bool adopt(ff_engine *e, size_t i)
{
    ff__segref *g = &e->segs[i];
    char name[FF_SEG_NAME_MAX], stub[FF_ARC_NAME_MAX], path[4096], err[FF_SEG_ERRLEN];
    ff_seg_name(name, g->start, g->end, g->version);
    ff_arc_stub_name(stub, name);
    snprintf(path, sizeof(path), "%s/%s", e->seg_dir, stub);
    ff_seg *s, *copy = NULL; /* the stub, then what replaces the mapping */
    if (ff_seg_open(path, &s, err, sizeof(err)) < 0) return false;
    ff_seg_info info;
    ff_seg_get_info(s, &info);
    if (!info.stub || !ff_seg_same(s, g->seg)) {
        ff_seg_close(s);
        return false;
    }
    ff_arc_settle(e->seg_dir, name); /* the tool's step 4, if it stopped before */
    if (e->o.archive_dir && open_copy(e, name, s, &copy, err, sizeof(err)) < 0)
        copy = NULL; /* keep reading the mapped original: still valid after the unlink */
    if (e->o.archive_dir) {
        ff_seg_close(s);
        s = copy;
    }
    if (s) {
        ff_seg_close(g->seg); /* no job in flight: nothing else reads it */
        g->seg = s;
    }
    g->archived = true;
    return true;
}

void ff__arc_tick(ff_engine *e, int64_t now)
{
    if (!e->seg_dir || e->job || now - e->last_arc_scan < SCAN_EVERY) return;
    e->last_arc_scan = now;
    struct stat st;
    if (stat(e->seg_dir, &st) != 0) return;
    if (st.st_mtim.tv_sec == e->arc_dir_mtime.tv_sec &&
        st.st_mtim.tv_nsec == e->arc_dir_mtime.tv_nsec)
        return; /* no file came or went since the last look */
    e->arc_dir_mtime = st.st_mtim;
    DIR *d = opendir(e->seg_dir);
    if (!d) return;
    ff_archive_news news = {0};
    size_t k = strlen(FF_ARC_SUFFIX);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n <= k || n - k >= FF_SEG_NAME_MAX || strcmp(de->d_name + n - k, FF_ARC_SUFFIX) != 0)
            continue;
        char name[FF_SEG_NAME_MAX];
        memcpy(name, de->d_name, n - k);
        name[n - k] = 0;
        ptrdiff_t i = live_unarchived(e, name);
        if (i < 0 || !adopt(e, (size_t)i)) continue;
        /* names sort as windows do (fixed-width hex start): first and last by strcmp */
        if (!news.segments++ || strcmp(name, news.first) < 0) strcpy(news.first, name);
        if (strcmp(name, news.last) > 0) strcpy(news.last, name);
    }
    closedir(d);
    if (!news.segments) return;
    ff__arc_recount(e);
    news.archived_upto = e->archived_upto;
    news.readable = e->stub_upto == FF_TS_MIN;
    if (e->o.on_archived) e->o.on_archived(e->o.on_archived_ctx, &news);
}

/* ---- the tool's side, offline ---- */

void ff_engine_archive_plan_free(ff_archive_plan *plan)
{
    free(plan->items);
    memset(plan, 0, sizeof(*plan));
}

static bool exists_in(const char *dir, const char *name)
{
    char path[PATH_MAX_];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

int ff_engine_archive_plan(const char *data_dir, int64_t older_than_us, int64_t max_lateness_us,
                           int64_t now, ff_archive_plan *plan, char *err, size_t errlen)
{
    memset(plan, 0, sizeof(*plan));
    ff_seg_entry *segs;
    size_t n;
    int64_t h;
    int rc = ff__ckpt_peek(data_dir, &h, &segs, &n, err, errlen);
    if (rc < 0) return rc;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/segments", data_dir);
    plan->horizon = h;
    plan->cutoff = now - older_than_us;
    if (h == FF_TS_MIN || h - max_lateness_us < plan->cutoff) {
        plan->cutoff = h == FF_TS_MIN ? FF_TS_MIN : h - max_lateness_us;
        plan->lateness_cut = true;
    }
    plan->items = ff_xcalloc(n + 1, sizeof(*plan->items));
    for (size_t i = 0; i < n && rc == 0; i++) {
        char stub[FF_ARC_NAME_MAX];
        ff_arc_stub_name(stub, segs[i].name);
        if (exists_in(dir, stub) && !exists_in(dir, segs[i].name)) {
            plan->already++;
            continue;
        }
        if (segs[i].end >= plan->cutoff) break;
        ff_archive_item *it = &plan->items[plan->n++];
        snprintf(it->name, sizeof(it->name), "%s", segs[i].name);
        it->start = segs[i].start;
        it->end = segs[i].end;
        char path[PATH_MAX_], e2[FF_SEG_ERRLEN];
        snprintf(path, sizeof(path), "%s/%s", dir, segs[i].name);
        ff_seg *seg;
        rc = ff_seg_open(path, &seg, e2, sizeof(e2));
        if (rc == -ENOENT) { /* merged by a running server since its checkpoint: stop here */
            plan->n--;
            rc = 0;
            break;
        }
        if (rc < 0) {
            snprintf(err, errlen, "%s", e2);
            break;
        }
        ff_seg_info info;
        ff_seg_get_info(seg, &info);
        it->rows = info.rows;
        it->bytes = info.file_bytes;
        ff_seg_close(seg);
    }
    free(segs);
    if (rc < 0) ff_engine_archive_plan_free(plan);
    return rc;
}

/* Whether the checkpoint of data_dir still names segment `name`. */
static int still_named(const char *data_dir, const char *name, char *err, size_t errlen)
{
    ff_seg_entry *segs;
    size_t n;
    int64_t h;
    int rc = ff__ckpt_peek(data_dir, &h, &segs, &n, err, errlen);
    if (rc < 0) return rc;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) found = strcmp(segs[i].name, name) == 0;
    free(segs);
    return found;
}

int ff_engine_archive_one(const char *data_dir, const char *to_dir, const ff_archive_item *item,
                          int64_t now, uint64_t *stub_bytes, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/segments", data_dir);
    ff_arc_stats st;
    int rc = ff_arc_segment(dir, item->name, to_dir, now, &st, err, errlen);
    if (rc == -ENOENT || rc == 0) {
        /* the server may have merged or rewritten it meanwhile (ENOENT: already) */
        int named = still_named(data_dir, item->name, err, errlen);
        if (named < 0) return named;
        if (!named) {
            char stub[FF_ARC_NAME_MAX], path[PATH_MAX_];
            ff_arc_stub_name(stub, item->name);
            snprintf(path, sizeof(path), "%s/%s", dir, stub);
            unlink(path); /* names no live segment: never adopted */
            return 1;
        }
    }
    if (rc == 0 && stub_bytes) *stub_bytes = st.stub_bytes;
    return rc;
}
