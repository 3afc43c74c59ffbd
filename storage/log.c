/*
 * log.c -- footfall's write-ahead log: preallocated, memory-mapped, append-only files of
 * checksummed records (contract in storage/log.h).
 *
 * FILES. A log directory holds files named "log-%016llx.ffl", the hex number being the
 * file's BASE: the LSN of the file's byte 0. Files are ordered by base; other names are
 * ignored, except leftovers "log-*.ffl.tmp" of an interrupted creation, which are removed.
 * Each file is created at its full size (posix_fallocate, opts.file_bytes rounded up to
 * a page, default 64 MiB; larger if one record needs it), so appends never change file
 * metadata, and is mapped MAP_SHARED read/write while it is the last (current) file.
 *
 * LSN. The LSN of a byte is its position in the concatenation of all log files, whole
 * files including headers and unused tails: LSN = base + file offset. A record's LSN is
 * the LSN of its end. The first file of a new log has base 0; a file created by rotation
 * has base = previous base + previous size. LSNs are therefore strictly increasing and a
 * record's LSN is never 0.
 *
 * All integers are little-endian. The file header is 64 bytes:
 *
 *   0   8  magic "FFLOG\0\0\1"
 *   8   4  format version (1)
 *   12  4  header size (64)
 *   16  8  sequence number: 1 for the first file ever, previous + 1 after that
 *   24  8  base LSN (must equal the number in the file name)
 *   32  8  prev_end: LSN of the last record before this file (the log's written LSN
 *          when this file was created; 0 in the first file)
 *   40  8  salt: random, seeds every record checksum of this file
 *   48  8  file size in bytes (multiple of 8, >= 128)
 *   56  8  XXH3_64bits of bytes 0..55
 *
 * Records follow from offset 64, each 8-byte aligned, back to back:
 *
 *   0   8  checksum = XXH3_64bits_withSeed(record bytes 8 .. 24+pad8(len)-1, salt),
 *          i.e. over the rest of the header, the payload and its zero padding
 *   8   4  len: payload length, 1 .. FF_LOG_MAX_PAYLOAD
 *   12  2  type (ff_log_type), non-zero
 *   14  2  flags, 0
 *   16  8  LSN of this record = base + offset of the record's end
 *   24  len payload, then zero padding to the next multiple of 8
 *
 * A record at offset `off` is VALID iff off + 24 + pad8(len) <= file size, len and
 * flags are in range, type != 0, the LSN field equals base + off + 24 + pad8(len) and the
 * checksum matches. The LSN field and the per-file salt mean that bytes of an earlier
 * life (a stale record, another file) never validate at another position or file.
 *
 * RELEASE. ff_log_release(upto) unlinks, oldest first, every file before the current one
 * whose last record has LSN <= upto, then fsyncs the directory. Oldest first means a
 * crash in the middle leaves a log that still starts at a file boundary and chains from
 * there. The current file is never released. The owner decides what is safe to drop
 * (footfall's engine: what its checkpoint covers); the log only keeps the order.
 *
 * RECOVERY (ff_log_open) scans the files in order of base. The first file present may
 * have any seq (earlier ones were released): its prev_end becomes ff_log_start(), and
 * the owner checks that nothing it needs lies at or before it. Each later header must
 * be valid and follow its predecessor (base = prev base + prev size, seq = prev seq + 1, prev_end =
 * LSN of the predecessor's last valid record), so a missing or truncated file is seen.
 * In each file, records are read from offset 64: a 24-byte all-zero header (or no room
 * for a header) is the clean end of the file; any other invalid record ends it too:
 *   - in a file that is not the last one, that is corruption: FF_ECORRUPT, naming file
 *     and offset. (Bytes after a clean end of such a file are not read.)
 *   - in the last file, when a record further on still validates at its own position
 *     (checked at every 8-byte offset up to the last non-zero byte), the damage is in
 *     the middle of acknowledged data, not a tail: FF_ECORRUPT naming file and offset,
 *     and nothing is changed on disk.
 *   - otherwise, in the last file it is a torn or corrupt tail: every byte from the end
 *     of the last valid record up to the last non-zero byte of the file is zeroed and
 *     msync'd, and reported (cut_offset = end of the last valid record, cut_bytes = length of that
 *     region). Non-zero bytes after a clean end are cut the same way, so no stale bytes
 *     can ever be revived by later appends. A last file shorter than its header says is
 *     extended back with zeros and reported as cut ("file truncated").
 * A last file whose header is all zero (a crash while it was being created without our
 * temp-file protocol) is re-initialised. A header with a bad magic gives FF_EFORMAT, an
 * unknown version FF_EVERSION, a bad header checksum FF_ECORRUPT.
 *
 * APPEND. ff_log_reserve() returns the payload address of the next record in the mapping;
 * ff_log_commit() zeroes the unused reserved bytes, writes len/type/flags/LSN and then
 * the checksum. Until the checksum is in place (and synced) recovery sees the end or a
 * torn tail. A record that does not fit rotates: the current file is msync'd in full,
 * then the next file is created as "<name>.tmp", fallocated, given its header, fsync'd,
 * renamed into place and the directory fsync'd; only then does the log switch to it.
 * The pages ahead of the appends are mapped for writing a MiB at a time (populate), so
 * that an append does not take a page fault; they hold zeros, as the file did.
 *
 * DURABILITY. ff_log_sync() msyncs (MS_SYNC) the range written since the last sync, from
 * its page-aligned start, and then reports durable = written; with nothing new it returns
 * at once. Whole pages behind the synced point then leave the process's resident set
 * (MADV_DONTNEED; they stay in the page cache), so the log costs no memory of ours. A failed
 * msync/fsync makes the log fail permanently (sticky error): after a failed sync the kernel may
 * have dropped the dirty pages, so nothing written afterwards could honestly be called durable.
 *
 * DATASYNC JOBS (ff_log_datasync_begin/run/end) make every committed record durable with
 * one fdatasync of the current file from another thread (older files were synced when
 * the log rotated away from them): a commit of footfall's engine needs that, and does
 * not wait for the owner's next sync. Linux reports a writeback error (errseq) once to
 * each open file description of the file, and only if the error came after the
 * description was opened, or was not yet seen by anyone when it was. A description
 * opened for the job at its begin could therefore miss an error that struck after the
 * last sync and was reported meanwhile (to a sync job whose end has not run yet, or to
 * another process): the job would call lost records durable. So the log opens a second
 * description of each current file, `syncfd`, when it creates or recovers the file,
 * before writing to it; every datasync job fdatasyncs a dup of it, so its error cursor
 * predates every write. Jobs share that description: the first job told of an error
 * takes it, so its end makes the log fail (sticky, as a failed sync does). The owner's
 * msyncs go through the mapping's own description (fd) and see the error separately.
 * Rotation and close close syncfd; a job in flight keeps its dup.
 *
 * ASYNCHRONOUS SYNC (ff_log_sync_begin/run/end). begin captures [synced, off) of the
 * current file -- from its page-aligned start -- and the target LSN = written, and marks
 * a job in flight; run (any thread) only msyncs that range of that mapping; end, back on
 * the owner's thread, advances durable to the target (never backwards) and `synced` to
 * the range's end if the file is still current. Records committed after begin may share
 * the range's last page: msync writes the page as it is then, and a page dirtied again
 * is written again by the next job, whose range starts at that page. If the file is
 * rotated while a job is in flight, rotation syncs the whole file itself (as always;
 * durable = written), but its mapping and fd are RETIRED instead of unmapped -- the job
 * still holds addresses in it -- and end unmaps them. One job at a time, so at most one
 * retired file. ff_log_sync() during a job syncs [synced, off) itself, a superset.
 */
#include "storage/log.h"
#include "storage/bytes.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the log format is little-endian; add byte swapping for this host"
#endif

#define FILE_MAGIC     "FFLOG\0\0\1"
#define FILE_VERSION   1u
#define FILE_HDR       64u
#define REC_HDR        24u
#define DEFAULT_BYTES  ((uint64_t)64 << 20)
#define MIN_FILE_BYTES ((uint64_t)4096)
#define NAME_LEN       24 /* "log-" + 16 hex + ".ffl" */

struct fhdr {
    uint32_t version;
    uint64_t seq, base, prev_end, salt, size;
};

/* A file before the current one: what release needs to know of it. */
struct older {
    uint64_t base, size;
    uint64_t last; /* LSN of its last record (its prev_end when it holds none) */
};

struct ff_log {
    int dirfd;
    int fd;              /* current (last) file */
    int syncfd;          /* it again, opened before its first write: DATASYNC JOBS */
    uint8_t *map;        /* its mapping, `size` bytes */
    struct fhdr h;       /* its header */
    uint64_t off;        /* end of its last committed record */
    uint64_t synced;     /* bytes [0, synced) of it are durable */
    uint64_t written;    /* LSN of the last committed record */
    uint64_t durable;    /* everything <= durable is on stable storage */
    uint64_t file_bytes; /* size of new files */
    uint64_t disk_bytes;
    uint32_t files;
    uint32_t resv_len; /* payload length of the open reservation, 0 if none */
    int resv_type;
    int failed; /* sticky error after a failed sync, 0 if none */
    size_t page;
    bool job;          /* a sync job is between begin and end */
    uint64_t job_base; /* base of the file its range is in */
    uint8_t *retired;  /* mapping of a file rotated away during the job, or NULL */
    uint64_t retired_size;
    int retired_fd;
    uint64_t dropped;    /* pages [0, dropped) of the current file left our mapping */
    uint64_t populated;  /* pages [.., populated) of it are mapped for writing ahead */
    struct older *older; /* the files before the current one, oldest first */
    size_t nolder, capolder;
    uint64_t start; /* prev_end of the first file: every record <= it was released */
    /* Tests: writeback errors injected into the current file (ff__log_test_wb_error),
     * as errseq counts them; how many the description of fd and syncfd reported. */
    uint32_t t_err, t_fd_seen, t_sync_seen;
};

static inline uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

static inline uint64_t rec_size(uint32_t len)
{
    return REC_HDR + pad8(len);
}

static uint64_t rec_hash(uint64_t salt, const uint8_t *rec, uint32_t len)
{
    return XXH3_64bits_withSeed(rec + 8, REC_HDR - 8 + pad8(len), salt);
}

static uint64_t new_salt(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s) return s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return XXH64(&ts, sizeof ts, (uint64_t)getpid());
}

static void fhdr_encode(uint8_t b[FILE_HDR], const struct fhdr *h)
{
    memset(b, 0, FILE_HDR);
    memcpy(b, FILE_MAGIC, 8);
    put32(b + 8, h->version);
    put32(b + 12, FILE_HDR);
    put64(b + 16, h->seq);
    put64(b + 24, h->base);
    put64(b + 32, h->prev_end);
    put64(b + 40, h->salt);
    put64(b + 48, h->size);
    put64(b + 56, XXH3_64bits(b, 56));
}

/* Decodes a file header; on failure returns FF_E* and sets *why. */
static int fhdr_decode(const uint8_t b[FILE_HDR], struct fhdr *h, const char **why)
{
    if (memcmp(b, FILE_MAGIC, 8) != 0) {
        *why = "not a footfall log file (bad magic)";
        return FF_EFORMAT;
    }
    h->version = get32(b + 8);
    if (h->version != FILE_VERSION) {
        *why = "unsupported log format version";
        return FF_EVERSION;
    }
    if (get64(b + 56) != XXH3_64bits(b, 56)) {
        *why = "file header checksum mismatch";
        return FF_ECORRUPT;
    }
    h->seq = get64(b + 16);
    h->base = get64(b + 24);
    h->prev_end = get64(b + 32);
    h->salt = get64(b + 40);
    h->size = get64(b + 48);
    if (get32(b + 12) != FILE_HDR || h->size % 8 || h->size < FILE_HDR + REC_HDR + 8 ||
        h->prev_end > h->base + FILE_HDR) {
        *why = "file header fields out of range";
        return FF_ECORRUPT;
    }
    return 0;
}

/*
 * Checks the record at `off`. Returns its size, 0 at a clean end (all-zero header or no
 * room for one), or -1 with *why set if it is invalid.
 */
static int64_t rec_check(const uint8_t *map, const struct fhdr *h, uint64_t off, const char **why)
{
    static const uint8_t zero[REC_HDR];
    const uint8_t *r = map + off;

    if (off + REC_HDR > h->size) return 0;
    if (memcmp(r, zero, REC_HDR) == 0) return 0;
    uint32_t len = get32(r + 8);
    if (len == 0 || len > FF_LOG_MAX_PAYLOAD || off + rec_size(len) > h->size) {
        *why = "bad length";
        return -1;
    }
    if (get16(r + 12) == 0 || get16(r + 14) != 0) {
        *why = "bad type or flags";
        return -1;
    }
    if (get64(r + 16) != h->base + off + rec_size(len)) {
        *why = "LSN does not match position";
        return -1;
    }
    if (get64(r) != rec_hash(h->salt, r, len)) {
        *why = "checksum mismatch";
        return -1;
    }
    return (int64_t)rec_size(len);
}

/* Offset just after the last non-zero byte in [from, to), or `from` if all are zero. */
static uint64_t nonzero_end(const uint8_t *map, uint64_t from, uint64_t to)
{
    while (to > from && (to & 7)) {
        if (map[to - 1]) return to;
        to--;
    }
    while (to >= from + 8 && get64(map + to - 8) == 0) to -= 8;
    while (to > from && map[to - 1] == 0) to--;
    return to;
}

/* msync [from, to) of the current file, the start rounded down to a page. */
static int sync_range(ff_log *log, uint64_t from, uint64_t to)
{
    if (to <= from) return 0;
    uint64_t start = from & ~(uint64_t)(log->page - 1);
    if (msync(log->map + start, to - start, MS_SYNC) != 0) return -errno;
    if (log->t_fd_seen != log->t_err) { /* tests: ff__log_test_wb_error */
        log->t_fd_seen = log->t_err;
        return -EIO;
    }
    return 0;
}

/*
 * Pages behind the durable point are never touched again (appends go forward, recovery
 * reads the file afresh), so they leave the process's mapping: MADV_DONTNEED on a
 * shared file mapping keeps them in the page cache (dirty ones stay dirty there) and
 * only drops them from our resident set. The page holding `off` stays.
 */
static void drop_behind(ff_log *log)
{
    uint64_t lim = (log->synced < log->off ? log->synced : log->off) & ~(uint64_t)(log->page - 1);
    if (log->job || lim <= log->dropped) return; /* a job's msync may be on those pages */
    if (madvise(log->map + log->dropped, lim - log->dropped, MADV_DONTNEED) == 0)
        log->dropped = lim;
}

static void log_name(char out[NAME_LEN + 1], uint64_t base)
{
    snprintf(out, NAME_LEN + 1, "log-%016llx.ffl", (unsigned long long)base);
}

/*
 * Invariants of an open log, checked in debug builds:
 *  1. 64 <= off <= size, off % 8 == 0; synced <= off.
 *  2. durable <= written <= base + off, and written > prev_end-file-start implies the
 *     current file ends its records at written (written == base + off or no record).
 *  3. Without an open reservation, the 24 bytes at off (if they fit) are zero.
 *  4. files == older files + 1; older files are contiguous, end where the current file
 *     begins, and their last LSNs ascend from start.
 */
static void __attribute__((unused)) log_check(const ff_log *log)
{
    FF_ASSERT(log->off >= FILE_HDR && log->off <= log->h.size && log->off % 8 == 0);
    FF_ASSERT(log->synced <= log->off);
    FF_ASSERT(log->durable <= log->written && log->written <= log->h.base + log->off);
    FF_ASSERT(log->off == FILE_HDR ? log->written == log->h.prev_end
                                   : log->written == log->h.base + log->off);
    if (log->resv_len == 0 && log->off + REC_HDR <= log->h.size) {
        for (unsigned i = 0; i < REC_HDR; i++) FF_ASSERT(log->map[log->off + i] == 0);
    }
    FF_ASSERT(log->files == log->nolder + 1);
    uint64_t last = log->start;
    for (size_t i = 0; i < log->nolder; i++) {
        const struct older *f = &log->older[i];
        FF_ASSERT(f->last >= last);
        FF_ASSERT(f->base + f->size == (i + 1 < log->nolder ? f[1].base : log->h.base));
        last = f->last;
    }
    FF_ASSERT(log->nolder == 0 || last == log->h.prev_end);
}

#ifdef NDEBUG
#define LOG_CHECK(log) ((void)0)
#else
#define LOG_CHECK(log) log_check(log)
#endif

/* ---- file creation --------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n, off_t at)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -errno;
        p += w, n -= (size_t)w, at += w;
    }
    return 0;
}

/* Gives fd its full size and header h, durably (not the directory entry). */
static int file_init(int fd, const struct fhdr *h)
{
    uint8_t b[FILE_HDR];
    int rc = posix_fallocate(fd, 0, (off_t)h->size);
    if (rc) return -rc;
    fhdr_encode(b, h);
    rc = write_all(fd, b, FILE_HDR, 0);
    if (rc) return rc;
    if (fsync(fd) != 0) return -errno;
    return 0;
}

/*
 * Creates the file of header h durably: temp file, size, header, fsync, rename, fsync of
 * the directory. Returns the fd (>= 0) or a negative error; *renamed tells whether the
 * file is in place (a failure after that leaves it in the directory). *syncfd gets a
 * second description of the file, opened before anything is written to it (DATASYNC
 * JOBS).
 */
static int file_create(int dirfd, const struct fhdr *h, int *renamed, int *syncfd)
{
    char name[NAME_LEN + 1], tmp[NAME_LEN + 5];
    int fd, rc;

    *renamed = 0;
    log_name(name, h->base);
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    *syncfd = openat(dirfd, tmp, O_RDONLY | O_CLOEXEC);
    if (*syncfd < 0) {
        rc = -errno;
        goto out_unlink;
    }
    rc = file_init(fd, h);
    if (rc) goto out_unlink;
    if (renameat(dirfd, tmp, dirfd, name) != 0) {
        rc = -errno;
        goto out_unlink;
    }
    *renamed = 1;
    if (fsync(dirfd) != 0) {
        rc = -errno;
        goto out_close;
    }
    return fd;

out_unlink:
    unlinkat(dirfd, tmp, 0);
out_close:
    if (*syncfd >= 0) close(*syncfd);
    close(fd);
    return rc;
}

static int map_file(int fd, uint64_t size, int writable, uint8_t **out)
{
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -errno;
    /* 4 KiB mapping entries only: with 2 MiB ones (the page cache's large folios) every
     * sync write-protected a whole entry (a TLB shootdown on every core) and the next
     * append split it again (another). A hint: ignored where unsupported. */
    if (writable) (void)madvise(p, size, MADV_NOHUGEPAGE);
    *out = p;
    return 0;
}

/*
 * Readies the current file's mapping for appends after `end`: 4 KiB pages in the page
 * cache too. With large folios (ext4 since Linux 6.16) a fault on the log reads ahead
 * into folios of up to 2 MiB, growing as the file is appended to; an append then dirties
 * a whole folio, so each sync wrote up to 2 MiB for a few hundred bytes appended (1 GB/s
 * of writeback at 58 k events/s, syncs of 1-5 ms instead of 0.3) and the next append
 * waited for that writeback. MADV_RANDOM stops the read-ahead, so every fault brings one
 * 4 KiB page; what recovery's scan already brought in after `end` (zeros, clean) leaves
 * the page cache. Hints: ignored where unsupported.
 */
static void for_appends(ff_log *log, uint64_t end)
{
    (void)madvise(log->map, log->h.size, MADV_RANDOM);
    uint64_t from = end & ~(uint64_t)(log->page - 1);
    if (from < log->h.size)
        (void)posix_fadvise(log->fd, (off_t)from, (off_t)(log->h.size - from), POSIX_FADV_DONTNEED);
}

/*
 * Switches to a new file able to hold a record of `need` bytes. The current file is made
 * durable first, so a file is only ever followed by a complete predecessor.
 */
static void push_older(ff_log *log, const struct fhdr *h, uint64_t last)
{
    log->older = ff_xgrow(log->older, &log->capolder, log->nolder + 1, sizeof(*log->older));
    log->older[log->nolder++] = (struct older){h->base, h->size, last};
}

static int rotate(ff_log *log, uint64_t need)
{
    struct fhdr h;
    uint8_t *map = NULL;
    int renamed, fd, syncfd, rc;

    rc = sync_range(log, log->synced, log->off);
    if (rc) return log->failed = rc;
    log->synced = log->off;
    log->durable = log->written;

    h.version = FILE_VERSION;
    h.seq = log->h.seq + 1;
    h.base = log->h.base + log->h.size;
    h.prev_end = log->written;
    h.salt = new_salt();
    h.size = log->file_bytes;
    if (h.size < FILE_HDR + need) h.size = (FILE_HDR + need + log->page - 1) & ~(log->page - 1);

    fd = file_create(log->dirfd, &h, &renamed, &syncfd);
    if (fd < 0) return renamed ? (log->failed = fd) : fd;
    rc = map_file(fd, h.size, 1, &map);
    if (rc) {
        close(syncfd);
        close(fd);
        return log->failed = rc; /* the new file is in place: the old one is closed */
    }
    if (log->job && log->job_base == log->h.base) { /* the job's msync uses the mapping */
        FF_ASSERT(log->retired == NULL);
        log->retired = log->map;
        log->retired_size = log->h.size;
        log->retired_fd = log->fd;
    } else {
        munmap(log->map, log->h.size);
        close(log->fd);
    }
    close(log->syncfd); /* a datasync job in flight has a dup of its own */
    push_older(log, &log->h, log->written);
    log->fd = fd;
    log->syncfd = syncfd;
    log->t_err = log->t_fd_seen = log->t_sync_seen = 0;
    log->map = map;
    log->h = h;
    log->off = log->synced = FILE_HDR;
    log->dropped = 0;
    log->populated = 0;
    for_appends(log, FILE_HDR);
    log->files++;
    log->disk_bytes += h.size;
    LOG_CHECK(log);
    return 0;
}

/* ---- recovery -------------------------------------------------------------------- */

struct recover {
    ff_log *log;
    ff_log_replay_cb cb;
    void *ctx;
    ff_log_recovery *rep;
    int have_prev;
    struct fhdr prev;  /* header of the previous file */
    uint64_t prev_end; /* LSN of the previous file's last record (or its prev_end) */
};

static void say(ff_log_recovery *rep, const char *file, int64_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(ff_log_recovery *rep, const char *file, int64_t off, const char *fmt, ...)
{
    va_list ap;
    snprintf(rep->cut_file, sizeof rep->cut_file, "%s", file);
    rep->cut_offset = off;
    va_start(ap, fmt);
    vsnprintf(rep->cut_reason, sizeof rep->cut_reason, fmt, ap);
    va_end(ap);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int parse_name(const char *s, uint64_t *base)
{
    if (strlen(s) != NAME_LEN || strncmp(s, "log-", 4) != 0 || strcmp(s + 20, ".ffl") != 0)
        return 0;
    uint64_t v = 0;
    for (int i = 4; i < 20; i++) {
        int c = s[i];
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return 0;
    }
    *base = v;
    return 1;
}

/* Lists the bases of the log files in dirfd, sorted; removes leftover temp files. */
static int list_files(int dirfd, uint64_t **bases, size_t *n)
{
    size_t cap = 0;
    int fd = dup(dirfd);
    if (fd < 0) return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    rewinddir(d);
    *bases = NULL;
    *n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        uint64_t base;
        size_t l = strlen(e->d_name);
        if (l == NAME_LEN + 4 && strcmp(e->d_name + NAME_LEN, ".tmp") == 0) {
            char nm[NAME_LEN + 1];
            memcpy(nm, e->d_name, NAME_LEN);
            nm[NAME_LEN] = 0;
            if (parse_name(nm, &base)) unlinkat(dirfd, e->d_name, 0);
            continue;
        }
        if (!parse_name(e->d_name, &base)) continue;
        *bases = ff_xgrow(*bases, &cap, *n + 1, sizeof **bases);
        (*bases)[(*n)++] = base;
    }
    closedir(d);
    if (*n > 1) qsort(*bases, *n, sizeof **bases, cmp_u64);
    return 0;
}

/*
 * Replays the records of one mapped file. *end = offset after its last valid record;
 * *why = NULL at a clean end, else what is wrong at *end. Returns the callback's stop.
 */
static int scan_records(struct recover *r, const uint8_t *map, const struct fhdr *h, uint64_t *end,
                        const char **why)
{
    uint64_t off = FILE_HDR;
    int64_t sz;

    *why = NULL;
    while ((sz = rec_check(map, h, off, why)) > 0) {
        const uint8_t *rec = map + off;
        off += (uint64_t)sz;
        r->rep->records++;
        r->rep->bytes += (uint64_t)sz;
        if (r->cb) {
            int rc = r->cb(r->ctx, get16(rec + 12), rec + REC_HDR, get32(rec + 8), h->base + off);
            if (rc) {
                *end = off;
                return rc;
            }
        }
    }
    *end = off;
    return 0;
}

/* Gives an all-zero last file (interrupted creation) the header it should have had. */
static int reinit_header(struct recover *r, int fd, uint64_t base, struct fhdr *h)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    h->version = FILE_VERSION;
    h->seq = r->have_prev ? r->prev.seq + 1 : 1;
    h->base = base;
    h->prev_end = r->have_prev ? r->prev_end : base;
    h->salt = new_salt();
    h->size = r->log->file_bytes;
    if ((uint64_t)st.st_size > h->size) h->size = pad8((uint64_t)st.st_size);
    return file_init(fd, h);
}

/* Reads and checks the header of file `name`, re-initialising an all-zero last one. */
static int read_header(struct recover *r, int fd, const char *name, uint64_t base, int last,
                       struct fhdr *h)
{
    static const uint8_t zero[FILE_HDR];
    uint8_t b[FILE_HDR] = {0};
    const char *why = NULL;
    ssize_t got = pread(fd, b, FILE_HDR, 0);
    int rc;

    if (got < 0) return -errno;
    if (last && memcmp(b, zero, FILE_HDR) == 0) return reinit_header(r, fd, base, h);
    rc = fhdr_decode(b, h, &why);
    if (rc == FF_EVERSION) {
        say(r->rep, name, 0, "%s: log format version %u, expected %u", name, h->version,
            FILE_VERSION);
        return rc;
    }
    if (rc == FF_ECORRUPT && got < FILE_HDR) why = "file shorter than its header";
    if (rc) say(r->rep, name, 0, "%s: %s", name, why);
    return rc;
}

/* Checks that h continues the previous file. */
static int check_chain(struct recover *r, const char *name, uint64_t base, const struct fhdr *h)
{
    if (h->base != base) {
        say(r->rep, name, 0, "%s: header says base %llx", name, (unsigned long long)h->base);
        return FF_ECORRUPT;
    }
    if (!r->have_prev) return 0;
    if (h->base != r->prev.base + r->prev.size || h->seq != r->prev.seq + 1) {
        say(r->rep, name, 0, "%s: does not follow the previous file (missing file?)", name);
        return FF_ECORRUPT;
    }
    if (h->prev_end != r->prev_end) {
        say(r->rep, name, 0, "%s: previous file ends at LSN %llu, expected %llu", name,
            (unsigned long long)r->prev_end, (unsigned long long)h->prev_end);
        return FF_ECORRUPT;
    }
    return 0;
}

/*
 * A damaged record followed, further on, by a record that validates at its own position
 * is not a torn tail: the damage is in the middle of acknowledged data. Returns the
 * offset of the first such record after `end`, or 0.
 */
static uint64_t valid_record_after(const uint8_t *map, const struct fhdr *h, uint64_t end,
                                   uint64_t nz)
{
    const char *why;
    for (uint64_t off = end + 8; off + REC_HDR <= nz; off += 8)
        if (rec_check(map, h, off, &why) > 0) return off;
    return 0;
}

/* Cuts the tail of the last file after `end`; `trunc` >= 0 if the file had been cut short.
 * Refuses (FF_ECORRUPT) when valid records follow the damage. */
static int cut_tail(struct recover *r, const char *name, uint8_t *map, const struct fhdr *h,
                    uint64_t end, const char *why, int64_t trunc)
{
    uint64_t nz = nonzero_end(map, end, h->size);
    if (nz == end && !why && trunc < 0) return 0;
    uint64_t next = why ? valid_record_after(map, h, end, nz) : 0;
    if (next) {
        say(r->rep, name, (int64_t)end,
            "%s: corrupt at offset %llu (%s) but valid records follow at %llu: "
            "not a torn tail, nothing cut; restore or move the file aside",
            name, (unsigned long long)end, why, (unsigned long long)next);
        return FF_ECORRUPT;
    }
    r->rep->cut_bytes = nz - end;
    if (trunc >= 0)
        say(r->rep, name, (int64_t)end, "file truncated to %lld bytes", (long long)trunc);
    else
        say(r->rep, name, (int64_t)end, "%s", why ? why : "non-zero bytes after the end");
    if (nz == end) return 0;
    memset(map + end, 0, nz - end);
    uint64_t start = end & ~(uint64_t)(r->log->page - 1);
    if (msync(map + start, nz - start, MS_SYNC) != 0) return -errno;
    return 0;
}

/* Makes the scanned last file the current file of the log. */
static void install_last(struct recover *r, int fd, int syncfd, uint8_t *map, const struct fhdr *h,
                         uint64_t end)
{
    ff_log *log = r->log;
    log->fd = fd;
    log->syncfd = syncfd;
    log->map = map;
    log->h = *h;
    log->off = log->synced = end;
    log->written = log->durable = end > FILE_HDR ? h->base + end : h->prev_end;
    drop_behind(log); /* what the replay read */
    for_appends(log, end);
}

/*
 * Checks the file's length against its header. The last file may have lost its end
 * (*trunc = its length; it is extended back with zeros), an earlier one may not.
 */
static int check_length(struct recover *r, int fd, const char *name, const struct fhdr *h, int last,
                        int64_t *trunc)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return -errno;
    *trunc = -1;
    if ((uint64_t)st.st_size >= h->size) return 0;
    if (!last) {
        say(r->rep, name, st.st_size, "%s: truncated to %lld bytes", name, (long long)st.st_size);
        return FF_ECORRUPT;
    }
    *trunc = st.st_size;
    return -posix_fallocate(fd, 0, (off_t)h->size);
}

/* Ends the scan of a file that is not the last: it must end cleanly. */
static int finish_earlier(struct recover *r, const char *name, const struct fhdr *h, uint64_t end,
                          const char *why)
{
    if (why) {
        say(r->rep, name, (int64_t)end, "%s: corrupt at offset %llu: %s", name,
            (unsigned long long)end, why);
        return FF_ECORRUPT;
    }
    r->have_prev = 1;
    r->prev = *h;
    r->prev_end = end > FILE_HDR ? h->base + end : h->prev_end;
    push_older(r->log, h, r->prev_end);
    return 0;
}

/* Opens, checks and replays one file; the last one becomes the current file. */
static int recover_file(struct recover *r, uint64_t base, int last)
{
    char name[NAME_LEN + 1];
    struct fhdr h;
    uint8_t *map = NULL;
    uint64_t end;
    int64_t trunc = -1;
    const char *why;
    int fd, syncfd = -1, rc;

    log_name(name, base);
    fd = openat(r->log->dirfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return -errno;
    if (last && (syncfd = openat(r->log->dirfd, name, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = -errno; /* before any write: DATASYNC JOBS */
        goto out_close;
    }
    rc = read_header(r, fd, name, base, last, &h);
    if (!rc) rc = check_chain(r, name, base, &h);
    if (!rc && !r->have_prev) /* earlier files were released */
        r->log->start = r->rep->start = h.prev_end;
    if (!rc) rc = check_length(r, fd, name, &h, last, &trunc);
    if (!rc) rc = map_file(fd, h.size, last, &map);
    if (rc) goto out_close;
    rc = scan_records(r, map, &h, &end, &why);
    if (rc) goto out_unmap;
    r->rep->files++;
    r->log->files++;
    r->log->disk_bytes += h.size;
    if (!last) {
        rc = finish_earlier(r, name, &h, end, why);
        goto out_unmap; /* done with this file either way */
    }
    rc = cut_tail(r, name, map, &h, end, why, trunc);
    if (rc) goto out_unmap;
    if (fdatasync(fd) != 0) { /* what we replayed may only have been in the page cache */
        rc = -errno;
        goto out_unmap;
    }
    install_last(r, fd, syncfd, map, &h, end);
    return 0;

out_unmap:
    munmap(map, h.size);
out_close:
    if (syncfd >= 0) close(syncfd);
    close(fd);
    return rc;
}

static int open_dir(const char *dir, int *out)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return -errno;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

/* Starts a new, empty log. */
static int create_first(ff_log *log)
{
    struct fhdr h = {.version = FILE_VERSION, .seq = 1, .salt = new_salt()};
    int renamed, rc;

    h.size = log->file_bytes;
    log->fd = file_create(log->dirfd, &h, &renamed, &log->syncfd);
    if (log->fd < 0) return log->fd;
    rc = map_file(log->fd, h.size, 1, &log->map);
    if (rc) {
        close(log->syncfd);
        close(log->fd);
        return rc;
    }
    log->h = h;
    log->off = log->synced = FILE_HDR;
    for_appends(log, FILE_HDR);
    log->files = 1;
    log->disk_bytes = h.size;
    return 0;
}

int ff_log_open(ff_log **out, const char *dir, const ff_log_opts *opts, ff_log_replay_cb cb,
                void *ctx, ff_log_recovery *rep)
{
    ff_log_recovery dummy;
    struct recover r = {.cb = cb, .ctx = ctx, .rep = rep ? rep : &dummy};
    uint64_t *bases = NULL;
    size_t n = 0;
    ff_log *log = ff_xcalloc(1, sizeof *log);
    int rc;

    memset(r.rep, 0, sizeof *r.rep);
    r.rep->cut_offset = -1;
    r.log = log;
    log->fd = log->syncfd = -1;
    log->page = (size_t)sysconf(_SC_PAGESIZE);
    log->file_bytes = opts && opts->file_bytes ? opts->file_bytes : DEFAULT_BYTES;
    if (log->file_bytes < MIN_FILE_BYTES) log->file_bytes = MIN_FILE_BYTES;
    log->file_bytes = (log->file_bytes + log->page - 1) & ~(uint64_t)(log->page - 1);

    rc = open_dir(dir, &log->dirfd);
    if (rc) goto out_free;
    rc = list_files(log->dirfd, &bases, &n);
    if (rc) goto out_dir;
    if (n == 0) rc = create_first(log);
    for (size_t i = 0; i < n && rc == 0; i++) rc = recover_file(&r, bases[i], i + 1 == n);
    if (rc) goto out_dir;
    free(bases);
    LOG_CHECK(log);
    *out = log;
    return 0;

out_dir:
    free(bases);
    close(log->dirfd);
out_free:
    free(log->older);
    free(log);
    return rc;
}

/* ---- append ---------------------------------------------------------------------- */

/*
 * Maps the pages up to `need` and POPULATE_AHEAD bytes beyond it for writing, in one
 * madvise, instead of a write fault on each 4 KiB page as the appends reach it. In this
 * VM a fault is dear, and the log's were 12-17 % of the loop thread at 1.3 M events/s
 * over UDP (BENCHMARKS). A hint: where unsupported or failing, the faults come as before
 * (for the rest of that file). At a low rate the kernel may write the zeroed pages out
 * before the appends reach them; those then fault again, as without this.
 */
#define POPULATE_AHEAD ((uint64_t)1 << 20)
static void populate(ff_log *log, uint64_t need)
{
    uint64_t from = log->off & ~(uint64_t)(log->page - 1);
    if (from < log->populated) from = log->populated;
    uint64_t to = (need + POPULATE_AHEAD + log->page - 1) & ~(uint64_t)(log->page - 1);
    if (to > log->h.size) to = log->h.size;
    if (from >= to || !ff_populate(log->map + from, to - from)) to = log->h.size; /* gave up */
    log->populated = to;
}

void *ff_log_reserve(ff_log *log, int type, uint32_t len, int *err)
{
    int dummy, rc;

    if (!err) err = &dummy;
    FF_ASSERT(log->resv_len == 0);
    if (len > FF_LOG_MAX_PAYLOAD) {
        *err = FF_ETOOBIG;
        return NULL;
    }
    if (len == 0 || type <= 0 || type > UINT16_MAX) {
        *err = FF_EINVALID;
        return NULL;
    }
    if (log->failed) {
        *err = log->failed;
        return NULL;
    }
    if (log->off + rec_size(len) > log->h.size) {
        rc = rotate(log, rec_size(len));
        if (rc) {
            *err = rc;
            return NULL;
        }
    }
    if (log->off + rec_size(len) > log->populated) populate(log, log->off + rec_size(len));
    log->resv_len = len;
    log->resv_type = type;
    return log->map + log->off + REC_HDR;
}

uint64_t ff_log_commit(ff_log *log, uint32_t len)
{
    uint8_t *rec = log->map + log->off;
    uint32_t rlen = log->resv_len;

    FF_ASSERT(rlen > 0 && len <= rlen);
    log->resv_len = 0;
    if (len < rlen) memset(rec + REC_HDR + len, 0, rlen - len);
    if (len == 0) return log->written;

    uint64_t lsn = log->h.base + log->off + rec_size(len);
    put32(rec + 8, len);
    put16(rec + 12, (uint16_t)log->resv_type);
    put16(rec + 14, 0);
    put64(rec + 16, lsn);
    put64(rec, rec_hash(log->h.salt, rec, len)); /* last: seals the record */
    log->off += rec_size(len);
    log->written = lsn;
    LOG_CHECK(log);
    return lsn;
}

int ff_log_append(ff_log *log, int type, const void *payload, uint32_t len, uint64_t *lsn)
{
    int err = 0;
    void *p = ff_log_reserve(log, type, len, &err);
    if (!p) return err;
    memcpy(p, payload, len);
    uint64_t at = ff_log_commit(log, len);
    if (lsn) *lsn = at;
    return 0;
}

/*
 * The durability policy is enforced by the caller (net/server.c runs the asynchronous
 * form below off its loop thread and releases acks up to the job's LSN; shutdown and
 * tests call this). Here it costs one msync of the pages written since the previous
 * sync, or nothing at all when no record was committed.
 */
int ff_log_sync(ff_log *log)
{
    if (log->failed) return log->failed;
    if (log->durable == log->written) return 0;
    int rc = sync_range(log, log->synced, log->off);
    if (rc) return log->failed = rc;
    log->synced = log->off;
    log->durable = log->written;
    drop_behind(log);
    LOG_CHECK(log);
    return 0;
}

/*
 * The asynchronous form of ff_log_sync() (design in the opening comment). The policy
 * that decides when to sync and what to release stays with the caller (net/server.c).
 */
int ff_log_sync_begin(ff_log *log, ff_log_sync_job *job)
{
    if (log->failed) return log->failed;
    if (log->job || log->durable == log->written) return 0;
    uint64_t start = log->synced & ~(uint64_t)(log->page - 1);
    job->addr = log->map + start;
    job->len = log->off - start;
    job->base = log->h.base;
    job->end_off = log->off;
    job->lsn = log->written;
    log->job = true;
    log->job_base = log->h.base;
    return 1;
}

int ff_log_sync_run(const ff_log_sync_job *job)
{
    if (job->len == 0) return 0;
    if (msync(job->addr, job->len, MS_SYNC) != 0) return -errno;
    return 0;
}

int ff_log_sync_end(ff_log *log, const ff_log_sync_job *job, int rc)
{
    FF_ASSERT(log->job && job->base == log->job_base);
    log->job = false;
    if (log->retired) {
        munmap(log->retired, log->retired_size);
        close(log->retired_fd);
        log->retired = NULL;
    }
    if (rc) {
        if (!log->failed) log->failed = rc;
        return rc;
    }
    if (log->failed) return log->failed; /* a later sync failed meanwhile: stay failed */
    if (log->durable < job->lsn) log->durable = job->lsn;
    if (job->base == log->h.base && log->synced < job->end_off) log->synced = job->end_off;
    drop_behind(log);
    LOG_CHECK(log);
    return 0;
}

bool ff_log_sync_busy(const ff_log *log)
{
    return log->job;
}

uint64_t ff_log_written(const ff_log *log)
{
    return log->written;
}

uint64_t ff_log_durable(const ff_log *log)
{
    return log->durable;
}

uint64_t ff_log_disk_bytes(const ff_log *log)
{
    return log->disk_bytes;
}

uint32_t ff_log_files(const ff_log *log)
{
    return log->files;
}

uint64_t ff_log_start(const ff_log *log)
{
    return log->start;
}

int ff_log_release(ff_log *log, uint64_t upto)
{
    ff_log_release_job job;
    ff_log_release_begin(log, upto, &job);
    ff_log_release_run(&job);
    return ff_log_release_end(log, &job);
}

void ff_log_release_begin(ff_log *log, uint64_t upto, ff_log_release_job *job)
{
    _Static_assert(NAME_LEN + 1 <= sizeof(job->names[0]), "a log file's name fits");
    *job = (ff_log_release_job){.dirfd = log->dirfd};
    while (job->n < log->nolder && log->older[job->n].last <= upto) job->n++;
    if (!job->n) return;
    job->names = ff_xmalloc(job->n * sizeof(*job->names));
    for (uint32_t i = 0; i < job->n; i++) log_name(job->names[i], log->older[i].base);
}

void ff_log_release_run(ff_log_release_job *job)
{
    while (job->done < job->n) {
        if (unlinkat(job->dirfd, job->names[job->done], 0) != 0 && errno != ENOENT) {
            job->rc = -errno;
            break;
        }
        job->done++;
    }
    if (job->done && fsync(job->dirfd) != 0 && job->rc == 0) job->rc = -errno;
}

int ff_log_release_end(ff_log *log, ff_log_release_job *job)
{
    FF_ASSERT(job->done <= log->nolder);
    for (uint32_t i = 0; i < job->done; i++) {
        const struct older *f = &log->older[i];
        log->start = f->last;
        log->disk_bytes -= f->size;
        log->files--;
    }
    if (job->done) {
        memmove(log->older, log->older + job->done,
                (log->nolder - job->done) * sizeof(*log->older));
        log->nolder -= job->done;
    }
    LOG_CHECK(log);
    free(job->names);
    int rc = job->rc ? job->rc : (int)job->done;
    *job = (ff_log_release_job){.dirfd = -1};
    return rc;
}

int ff_log_datasync_begin(ff_log *log, ff_log_datasync_job *job)
{
    *job = (ff_log_datasync_job){.fd = -1, .lsn = log->written, .rc = log->failed};
    if (!job->rc && (job->fd = dup(log->syncfd)) < 0) job->rc = -errno;
    if (!job->rc && log->t_sync_seen != log->t_err) { /* tests: ff__log_test_wb_error */
        log->t_sync_seen = log->t_err;
        job->t_eio = true;
    }
    return job->rc;
}

int ff_log_datasync_run(ff_log_datasync_job *job)
{
    if (job->rc) return job->rc;
    if (fdatasync(job->fd) != 0)
        job->rc = -errno;
    else if (job->t_eio)
        job->rc = -EIO;
    job->ran = true;
    return job->rc;
}

int ff_log_datasync_end(ff_log *log, ff_log_datasync_job *job)
{
    int rc = job->rc;
    if (job->fd >= 0) close(job->fd);
    if (rc && job->ran && !log->failed) log->failed = rc; /* see DATASYNC JOBS */
    *job = (ff_log_datasync_job){.fd = -1};
    return rc;
}

void ff__log_test_wb_error(ff_log *log, bool told)
{
    log->t_err++;
    if (told) log->t_fd_seen = log->t_err;
}

int ff_log_close(ff_log *log)
{
    if (!log) return 0;
    FF_ASSERT(!log->job); /* the caller waits for its job's end first */
    if (log->resv_len) ff_log_commit(log, 0);
    int rc = ff_log_sync(log);
    munmap(log->map, log->h.size);
    close(log->syncfd);
    if (close(log->fd) != 0 && rc == 0) rc = -errno;
    close(log->dirfd);
    free(log->older);
    free(log);
    return rc;
}
