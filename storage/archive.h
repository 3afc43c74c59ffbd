/*
 * archive.h -- moving sealed segment files out of a data directory, safely, while a
 * server runs or not (`footfall archive`, SPEC §6).
 *
 * Archiving segment NAME of directory SEGS into directory TO:
 *   1. NAME is verified whole (every block: a damaged segment is never archived);
 *   2. copied to TO/NAME (temp file, fsync, rename, fsync of TO) and the copy verified
 *      whole and checked to be the same file (ff_seg_same);
 *   3. the stub SEGS/NAME.archived is written (temp, fsync, rename, fsync of SEGS): the
 *      segment's footer without its blocks, a few hundred bytes per space. Its rename
 *      is the commit point;
 *   4. SEGS/NAME is unlinked (fsync of SEGS).
 * A crash before 3 leaves NAME in place (and maybe a complete copy in TO, which the
 * next run reuses); after 3, the stub and the verified copy. A stub next to its
 * segment means 4 did not happen: ff_arc_settle() (and footfalld at start) completes
 * it. So every row is always in NAME, or in TO/NAME with a stub naming it.
 *
 * The stub's format is in the opening comment of storage/archive.c; ff_seg_open()
 * opens a stub like a segment whose blocks read FF_EARCHIVED (storage/segment.h).
 * Which segments may be archived (old enough, not being merged) is the engine's rule
 * (engine/archive.c); this layer only moves files.
 */
#ifndef FF_STORAGE_ARCHIVE_H
#define FF_STORAGE_ARCHIVE_H

#include "storage/segment.h"

#define FF_ARC_SUFFIX   ".archived" /* a stub is "<segment name>.archived" */
#define FF_ARC_NAME_MAX (FF_SEG_NAME_MAX + 16)

/* What archiving one segment moved. */
typedef struct ff_arc_stats {
    uint64_t rows;       /* rows of the segment */
    uint64_t bytes;      /* the segment file's size (now in the archive) */
    uint64_t stub_bytes; /* the stub left in its place */
} ff_arc_stats;

/*
 * Archives segment file `name` of directory seg_dir into directory to_dir (steps 1-4
 * above), stamping the stub with `now` (ff_ts). An existing to_dir/name is reused only
 * when it is the same segment and sound (a re-run after a crash), else FF_EEXIST.
 * Returns 0, FF_ECORRUPT (the segment or the copy failed verification), FF_EEXIST or
 * -errno, with a message naming the file in err; st may be NULL.
 */
int ff_arc_segment(const char *seg_dir, const char *name, const char *to_dir, int64_t now,
                   ff_arc_stats *st, char *err, size_t errlen);

/*
 * Writes the stub of open segment seg as "<dir>/<name>.archived": temp file, fsync,
 * rename, fsync of dir. *bytes (may be NULL) receives its size. 0 or -errno.
 */
int ff_arc_stub_write(const ff_seg *seg, const char *dir, const char *name, int64_t now,
                      uint64_t *bytes);

/*
 * Completes an archive interrupted after its commit: when "<seg_dir>/<name>.archived"
 * is a valid stub of segment file "<seg_dir>/<name>", the latter is unlinked. Returns
 * 1 when it removed the segment, 0 when there was nothing to do (no stub, or no
 * segment), FF_ECONFLICT when stub and segment differ (left alone), or -errno.
 */
int ff_arc_settle(const char *seg_dir, const char *name);

/* "<name>.archived" into out (FF_ARC_NAME_MAX bytes). */
void ff_arc_stub_name(char out[FF_ARC_NAME_MAX], const char *name);

/* Crash points for tests: ff_arc_segment stops (as a crash would) once it reaches the
 * step set here, and sets it to FF_ARC_STOP_HIT. FF_ARC_STOP_NONE outside tests. */
enum {
    FF_ARC_STOP_NONE,
    FF_ARC_STOP_COPY_TMP, /* the copy is written, not renamed */
    FF_ARC_STOP_COPY,     /* the copy is durable, no stub */
    FF_ARC_STOP_STUB_TMP, /* the stub is written, not renamed */
    FF_ARC_STOP_STUB,     /* the stub is durable, the segment not unlinked */
    FF_ARC_STOP_HIT
};
extern int ff_arc_test_stop;

#endif /* FF_STORAGE_ARCHIVE_H */
