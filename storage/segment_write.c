/*
 * segment_write.c -- the writing half of sealed segments: names, directory listing, the
 * block encoder and the writer (contract in storage/segment.h, format in the opening
 * comment of storage/segment.c).
 *
 * A writer streams blocks to "<name>.tmp" through a 1 MiB buffer and keeps the footer
 * tables in memory (56 bytes per space, 40 per block); finish appends them, fsyncs,
 * renames and fsyncs the directory.
 The file goes out through an ff_wfile (storage/file.h), a
 * MiB at a time, so that a segment of 70 MB does not queue the log's syncs behind it. Encoding is
 pure (block_encode) and off the hot path:
 * the engine seals in the background of its loop.
 */
#include "storage/file.h"
#include "storage/segment_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <lz4.h>
#include <lz4hc.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- bytes ------------------------------------------------------------------------- */

/* A growable byte buffer. */
typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;

static uint8_t *bb_room(bbuf *b, size_t k)
{
    if (b->n + k > b->cap) b->p = ff_xgrow(b->p, &b->cap, b->n + k, 1);
    return b->p + b->n;
}

static void bb_put(bbuf *b, const void *src, size_t k)
{
    if (!k) return;
    memcpy(bb_room(b, k), src, k);
    b->n += k;
}

static void bb_u8(bbuf *b, uint8_t v)
{
    bb_put(b, &v, 1);
}

static void bb_varint(bbuf *b, uint64_t v)
{
    uint8_t *p = bb_room(b, 10);
    size_t k = 0;
    while (v >= 0x80) p[k++] = (uint8_t)(v | 0x80), v >>= 7;
    p[k++] = (uint8_t)v;
    b->n += k;
}

/* ---- bit streams ------------------------------------------------------------------- */

typedef struct bitw {
    bbuf b;
    uint64_t acc;
    unsigned nacc;
} bitw;

/* Appends the n (<= 32) low bits of v. */
static void bw_put(bitw *w, uint64_t v, unsigned n)
{
    if (n < 64) v &= ((uint64_t)1 << n) - 1;
    w->acc |= v << w->nacc;
    w->nacc += n;
    while (w->nacc >= 8) {
        bb_u8(&w->b, (uint8_t)w->acc);
        w->acc >>= 8;
        w->nacc -= 8;
    }
}

static void bw_put_wide(bitw *w, uint64_t v, unsigned n)
{
    if (n > 32) {
        bw_put(w, v, 32);
        v >>= 32, n -= 32;
    }
    bw_put(w, v, n);
}

static void bw_flush(bitw *w)
{
    if (w->nacc) bb_u8(&w->b, (uint8_t)w->acc);
    w->acc = w->nacc = 0;
}

static unsigned rice_cost(uint64_t g, unsigned k)
{
    uint64_t q = g >> k;
    return q < RICE_LIMIT ? (unsigned)q + 1 + k : RICE_LIMIT + 6 + (g ? bitlen(g) : 1);
}

static void rice_put(bitw *w, uint64_t g, unsigned k)
{
    uint64_t q = g >> k;
    if (q < RICE_LIMIT) {
        bw_put(w, ((uint64_t)1 << q) - 1, (unsigned)q + 1); /* q ones, then a zero */
        bw_put_wide(w, g, k);
        return;
    }
    unsigned m = g ? bitlen(g) : 1;
    bw_put(w, ((uint64_t)1 << RICE_LIMIT) - 1, RICE_LIMIT);
    bw_put(w, m - 1, 6);
    bw_put_wide(w, g, m);
}

/* ---- names ------------------------------------------------------------------------- */

#define TS_BIAS ((uint64_t)1 << 63)

size_t ff_seg_name(char out[FF_SEG_NAME_MAX], int64_t start, int64_t end, uint32_t version)
{
    return (size_t)snprintf(out, FF_SEG_NAME_MAX, "seg-%016llx-%016llx-%08x.ffs",
                            (unsigned long long)((uint64_t)start ^ TS_BIAS),
                            (unsigned long long)((uint64_t)end ^ TS_BIAS), version);
}

static bool parse_hex(const char *s, unsigned digits, uint64_t *v)
{
    *v = 0;
    for (unsigned i = 0; i < digits; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        *v = *v << 4 | d;
    }
    return true;
}

int ff_seg_name_parse(const char *name, int64_t *start, int64_t *end, uint32_t *version)
{
    uint64_t a, b, v;
    if (strlen(name) != 50 || memcmp(name, "seg-", 4) != 0 || name[20] != '-' || name[37] != '-' ||
        strcmp(name + 46, ".ffs") != 0)
        return FF_EFORMAT;
    if (!parse_hex(name + 4, 16, &a) || !parse_hex(name + 21, 16, &b) ||
        !parse_hex(name + 38, 8, &v))
        return FF_EFORMAT;
    *start = (int64_t)(a ^ TS_BIAS);
    *end = (int64_t)(b ^ TS_BIAS);
    *version = (uint32_t)v;
    return 0;
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static int entry_cmp(const void *pa, const void *pb)
{
    const ff_seg_entry *a = pa, *b = pb;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return a->version < b->version ? -1 : a->version > b->version;
}

int ff_seg_list(const char *dir, int flags, ff_seg_entry **out, size_t *n)
{
    ff_seg_entry *v = NULL;
    size_t nv = 0, cap = 0, live = 0;
    bool removed = false;
    DIR *d = opendir(dir);
    if (!d) return -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        ff_seg_entry e;
        if ((flags & FF_SEG_LIST_CLEAN) && has_suffix(de->d_name, ".ffs.tmp")) {
            removed |= unlinkat(dirfd(d), de->d_name, 0) == 0;
            continue;
        }
        if (ff_seg_name_parse(de->d_name, &e.start, &e.end, &e.version) != 0) continue;
        memcpy(e.name, de->d_name, strlen(de->d_name) + 1); /* 50 chars, checked */
        v = ff_xgrow(v, &cap, nv + 1, sizeof *v);
        v[nv++] = e;
    }
    if (nv) qsort(v, nv, sizeof *v, entry_cmp);
    for (size_t i = 0; i < nv; i++) {
        bool superseded = i + 1 < nv && v[i + 1].start == v[i].start && v[i + 1].end == v[i].end;
        if (!superseded)
            v[live++] = v[i];
        else if (flags & FF_SEG_LIST_CLEAN)
            removed |= unlinkat(dirfd(d), v[i].name, 0) == 0;
    }
    int rc = 0;
    if (removed && fsync(dirfd(d)) != 0) rc = -errno;
    closedir(d);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = live;
    return 0;
}

/* ---- block encoding ---------------------------------------------------------------- */

/*
 * The block encoder's working memory, kept by a writer from one block to the next: a
 * seal of 50,000 spaces took about seven allocations per block and as many reallocs of
 * their growth (0.5 M malloc and 0.6 M realloc per 2 M events in bench/ingest, in the
 * malloc arenas the engine's thread uses too). The arrays hold `cap` rows, grown to the
 * largest block so far (at most block_rows); nothing in them is read before it is
 * written for the block at hand, so a block's bytes do not depend on the blocks
 * before it.
 */
typedef struct scratch {
    bbuf raw, bits, exc; /* the payload; its bit stream and exception list */
    uint64_t *keys;      /* 2 cap: (DPU, row) pairs and the radix sort's buffer */
    uint64_t *gap;
    uint32_t *ix;
    dent *d;
    uint32_t cap;
} scratch;

/* Readies s for a block of n rows. */
static void scratch_room(scratch *s, uint32_t n)
{
    if (n <= s->cap) return;
    free(s->keys), free(s->gap), free(s->ix), free(s->d);
    s->keys = ff_xmalloc(2 * (size_t)n * sizeof *s->keys);
    s->gap = ff_xmalloc(n * sizeof *s->gap);
    s->ix = ff_xmalloc(n * sizeof *s->ix);
    s->d = ff_xmalloc(n * sizeof *s->d);
    s->cap = n;
}

static void scratch_free(scratch *s)
{
    free(s->raw.p), free(s->bits.p), free(s->exc.p);
    free(s->keys), free(s->gap), free(s->ix), free(s->d);
}

/* Sorts v[0..n) by its upper 32 bits, stably: LSD radix, one pass per byte that varies
 * (qsort with a comparison callback was a third of the writer's time). */
static void sort_hi32(uint64_t *v, uint64_t *tmp, uint32_t n)
{
    if (n <= 32) { /* most blocks of a seal hold a space's few rows: insertion sort */
        for (uint32_t i = 1; i < n; i++) {
            uint64_t x = v[i];
            uint32_t j = i;
            for (; j > 0 && v[j - 1] >> 32 > x >> 32; j--) v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    for (unsigned shift = 32; shift < 64; shift += 8) {
        uint32_t cnt[257] = {0};
        for (uint32_t i = 0; i < n; i++) cnt[(v[i] >> shift & 0xff) + 1]++;
        if (cnt[(v[0] >> shift & 0xff) + 1] == n) continue; /* one value: nothing moves */
        for (unsigned b = 0; b < 256; b++) cnt[b + 1] += cnt[b];
        for (uint32_t i = 0; i < n; i++) tmp[cnt[v[i] >> shift & 0xff]++] = v[i];
        memcpy(v, tmp, n * sizeof *v);
    }
}

/*
 * The sorted dictionary of rows[0..n) (n >= 1, n <= s->cap) in s->d, with each entry's
 * most frequent step and rule; s->ix[i] is set to the entry of row i. Returns its size.
 */
static uint32_t dict_build(scratch *s, const ff_seg_row *rows, uint32_t n)
{
    uint64_t *v = s->keys;
    uint32_t *ix = s->ix;
    dent *d = s->d;
    for (uint32_t i = 0; i < n; i++) v[i] = (uint64_t)rows[i].dpu_id << 32 | i;
    sort_hi32(v, v + n, n);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id = (uint32_t)(v[i] >> 32);
        if (k == 0 || id != d[k - 1].id) d[k++] = (dent){.id = id, .prev = -1};
        ix[(uint32_t)v[i]] = k - 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        dent *e = &d[ix[i]];
        if (e->prev < 0)
            e->first_seq = rows[i].seq;
        else if ((uint16_t)(rows[i].seq - e->prev) <= 1)
            e->nstep[(uint16_t)(rows[i].seq - e->prev)]++;
        e->prev = rows[i].seq;
        int dir = rows[i].direction;
        if (dir == 1 || dir == -1)
            for (unsigned r = 0; r < 3; r++) e->nrule[r] += rows[i].delta == rule_delta(r, dir);
    }
    for (uint32_t j = 0; j < k; j++) {
        dent *e = &d[j];
        e->step = e->nstep[1] >= e->nstep[0];
        e->rule = e->nrule[0] >= e->nrule[1] ? (e->nrule[0] >= e->nrule[2] ? 0 : 2)
                                             : (e->nrule[1] >= e->nrule[2] ? 1 : 2);
        e->prev = -1;
    }
    return k;
}

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

/* Bits that gap[1..n) take with Rice parameter k. */
static uint64_t rice_total(const uint64_t *gap, uint32_t n, unsigned k)
{
    uint64_t cost = 0;
    for (uint32_t i = 1; i < n; i++) cost += rice_cost(gap[i], k);
    return cost;
}

/*
 * The timestamp scale and Rice parameter for rows[0..n). Each step up in k adds a bit to
 * every gap and halves every quotient, so the cost falls while k is below the typical
 * gap and rises after it: a walk from the mean gap's bit length reaches the minimum in
 * two to four passes over the gaps (trying every k took up to 40 and was two thirds of
 * the writer's time). Escaped gaps can leave a flat stretch the walk stops on; any k
 * is valid (the block stores it), so that costs at most a few bits per row.
 */
static void gaps_params(uint64_t *gap, const ff_seg_row *rows, uint32_t n, uint64_t *scale,
                        unsigned *k)
{
    uint64_t g = 0, sum = 0, max = 0;
    for (uint32_t i = 1; i < n; i++) {
        gap[i] = (uint64_t)rows[i].ts - (uint64_t)rows[i - 1].ts;
        if (g != 1) g = gcd64(g, gap[i]);
    }
    *scale = g ? g : 1;
    for (uint32_t i = 1; i < n; i++) {
        if (*scale > 1) gap[i] /= *scale;
        max = gap[i] > max ? gap[i] : max;
        sum += gap[i];
    }
    unsigned top = bitlen(max) < 63 ? bitlen(max) : 63;
    unsigned kk = n > 1 ? bitlen(sum / (n - 1)) : 0;
    kk = kk > top ? top : kk;
    uint64_t best = rice_total(gap, n, kk);
    bool up = false;
    for (uint64_t c; kk < top && (c = rice_total(gap, n, kk + 1)) < best; up = true) best = c, kk++;
    for (uint64_t c; !up && kk > 0 && (c = rice_total(gap, n, kk - 1)) < best;) best = c, kk--;
    *k = kk;
}

/* Writes the exception entry of a row (flags already known non-zero). */
static void put_exception(bbuf *x, unsigned flags, const ff_seg_row *r, int64_t corr)
{
    bb_u8(x, (uint8_t)flags);
    if (flags & 1) bb_put(x, &r->seq, 2);
    if (flags & 2) bb_u8(x, (uint8_t)r->direction);
    if (flags & 4) bb_u8(x, (uint8_t)r->delta);
    if (flags & 8) bb_varint(x, zigzag(corr));
}

/* Encodes the payload of rows[0..n) (n >= 1) whose predecessor's occupancy is occ0 into
 * s->raw, which it empties first. */
static void block_encode(scratch *s, const ff_seg_row *rows, uint32_t n, int64_t occ0)
{
    scratch_room(s, n);
    bbuf *out = &s->raw;
    uint32_t nd = dict_build(s, rows, n), *ix = s->ix;
    dent *d = s->d;
    uint64_t scale;
    unsigned k, ibits = bitlen(nd - 1);
    gaps_params(s->gap, rows, n, &scale, &k);
    out->n = 0;

    bb_varint(out, n);
    bb_varint(out, scale);
    bb_u8(out, (uint8_t)k);
    bb_varint(out, nd);
    for (uint32_t j = 0; j < nd; j++) {
        bb_varint(out, j ? d[j].id - d[j - 1].id : d[j].id);
        bb_varint(out, d[j].first_seq);
        bb_u8(out, (uint8_t)(d[j].step | d[j].rule << 1));
    }
    bitw w = {.b = s->bits};
    bbuf *x = &s->exc;
    w.b.n = x->n = 0;
    int64_t prev = occ0;
    for (uint32_t i = 0; i < n; i++) {
        const ff_seg_row *r = &rows[i];
        uint32_t j = ix[i];
        dent *e = &d[j];
        unsigned flags = 0;
        uint16_t want_seq = e->prev < 0 ? e->first_seq : (uint16_t)(e->prev + e->step);
        int dir = r->direction == -1 ? -1 : 1;
        flags |= r->seq != want_seq ? 1 : 0;
        flags |= r->direction != dir ? 2 : 0;
        flags |= r->delta != rule_delta(e->rule, r->direction) ? 4 : 0;
        int64_t corr = (int64_t)((uint64_t)r->occupancy - (uint64_t)prev - (uint64_t)r->delta);
        flags |= corr ? 8 : 0;
        bw_put(&w, j, ibits);
        bw_put(&w, dir < 0, 1);
        bw_put(&w, flags != 0, 1);
        if (i) rice_put(&w, ((uint64_t)r->ts - (uint64_t)rows[i - 1].ts) / scale, k);
        if (flags) put_exception(x, flags, r, corr);
        e->prev = r->seq;
        prev = r->occupancy;
    }
    bw_flush(&w);
    bb_varint(out, w.b.n);
    bb_put(out, w.b.p, w.b.n);
    bb_put(out, x->p, x->n);
    s->bits = w.b;
}

/* ---- writer ------------------------------------------------------------------------ */

struct ff_seg_writer {
    int dirfd, fd;
    char name[FF_SEG_NAME_MAX + 8], tmp[FF_SEG_NAME_MAX + 16];
    uint64_t salt, off;
    ff_wfile wf; /* fd, written through */
    uint32_t block_rows;
    int lz4_level;
    bool have_space, failed;
    uint32_t last_space;
    bbuf out;    /* bytes not yet written, ending at off */
    bbuf spaces; /* footer space entries */
    bbuf blocks; /* footer block entries */
    scratch enc; /* the block encoder's */
    ff_seg_stats st;
    int64_t first_ts, last_ts;
};

static int w_flush(ff_seg_writer *w)
{
    int rc = ff_wfile_write(&w->wf, w->out.p, w->out.n);
    w->out.n = 0;
    if (rc) w->failed = true;
    return rc;
}

static uint64_t new_salt(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) == (ssize_t)sizeof s) return s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return XXH64(&ts, sizeof ts, (uint64_t)getpid());
}

int ff_seg_writer_open(ff_seg_writer **out, const char *dir, const char *name,
                       const ff_seg_writer_opts *opts)
{
    if (strchr(name, '/') || strlen(name) + 1 > FF_SEG_NAME_MAX || !name[0]) return FF_EINVAL;
    uint32_t br = opts && opts->block_rows ? opts->block_rows : FF_SEG_BLOCK_ROWS;
    if (br > FF_SEG_MAX_BLOCK || (opts && (opts->lz4_level < 0 || opts->lz4_level > 12)))
        return FF_EINVAL;
    ff_seg_writer *w = ff_xcalloc(1, sizeof *w);
    w->block_rows = br;
    w->lz4_level = opts ? opts->lz4_level : 0;
    snprintf(w->name, sizeof w->name, "%s", name);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", name);
    w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        int rc = -errno;
        free(w);
        return rc;
    }
    w->fd = openat(w->dirfd, w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int rc = -errno;
        close(w->dirfd);
        free(w);
        return rc;
    }
    ff_wfile_init(&w->wf, w->fd, 0);
    w->salt = new_salt();
    uint8_t *h = bb_room(&w->out, HDR);
    memset(h, 0, HDR);
    memcpy(h, MAGIC, 8);
    put32(h + 8, FF_SEG_VERSION);
    put32(h + 12, HDR);
    put64(h + 16, w->salt);
    put64(h + 24, XXH3_64bits(h, 24));
    w->out.n = w->off = HDR;
    *out = w;
    return 0;
}

/*
 * Payloads shorter than this are stored raw without trying lz4: each LZ4_compress_*
 * call clears a 16 KiB hash table first, which cost more than the whole encoding of the
 * one-to-three-row blocks a seal writes for most spaces of a large fleet. In
 * bench/seg_codec no file got larger with 64; with 128, blocks of 20 rows did (+0.3 %).
 */
#define LZ4_MIN_RAW 64

/* Appends one block of rows[0..n) to the file and its entry to the footer. */
static int w_block(ff_seg_writer *w, const ff_seg_row *rows, uint32_t n, int64_t occ0)
{
    block_encode(&w->enc, rows, n, occ0);
    const bbuf raw = w->enc.raw;
    int bound = LZ4_compressBound((int)raw.n);
    uint8_t *blk = bb_room(&w->out, BLOCK_HDR + (size_t)bound + raw.n);
    int z = raw.n < LZ4_MIN_RAW ? 0
            : w->lz4_level
                ? LZ4_compress_HC((char *)raw.p, (char *)blk + BLOCK_HDR, (int)raw.n, bound,
                                  w->lz4_level)
                : LZ4_compress_default((char *)raw.p, (char *)blk + BLOCK_HDR, (int)raw.n, bound);
    bool lz = z > 0 && (size_t)z < raw.n;
    if (!lz) memcpy(blk + BLOCK_HDR, raw.p, raw.n);
    uint32_t len = BLOCK_HDR + (lz ? (uint32_t)z : (uint32_t)raw.n);
    put32(blk + 8, (uint32_t)raw.n);
    blk[12] = lz ? CODEC_LZ4 : CODEC_RAW;
    put64(blk, XXH3_64bits_withSeed(blk + 8, len - 8, w->salt ^ w->off));
    w->out.n += len;

    uint8_t *e = bb_room(&w->blocks, BLOCK_ENT);
    put64(e, w->off);
    put32(e + 8, len);
    put32(e + 12, n);
    put64(e + 16, (uint64_t)rows[0].ts);
    put64(e + 24, (uint64_t)rows[n - 1].ts);
    put64(e + 32, (uint64_t)occ0);
    w->blocks.n += BLOCK_ENT;
    w->off += len;
    w->st.blocks++;
    w->st.raw_bytes += raw.n;
    w->st.stored_bytes += len - BLOCK_HDR;
    return w->out.n >= (1u << 20) ? w_flush(w) : 0;
}

int ff_seg_writer_add_space(ff_seg_writer *w, uint32_t space_id, int64_t occ_before,
                            const ff_seg_row *rows, size_t n)
{
    if (w->failed) return -EIO;
    if (n == 0) return 0;
    if (w->have_space && space_id <= w->last_space) return FF_EINVAL;
    for (size_t i = 1; i < n; i++)
        if (row_cmp(&rows[i - 1], &rows[i]) > 0) return FF_EINVAL;
    uint64_t first_block = w->st.blocks;
    size_t nb = (n + w->block_rows - 1) / w->block_rows, per = (n + nb - 1) / nb;
    for (size_t i = 0; i < n; i += per) {
        uint32_t k = (uint32_t)(n - i < per ? n - i : per);
        int rc = w_block(w, rows + i, k, i ? rows[i - 1].occupancy : occ_before);
        if (rc) return rc;
    }
    uint8_t *e = bb_room(&w->spaces, SPACE_ENT);
    put32(e, space_id);
    put32(e + 4, (uint32_t)(w->st.blocks - first_block));
    put64(e + 8, first_block);
    put64(e + 16, n);
    put64(e + 24, (uint64_t)rows[0].ts);
    put64(e + 32, (uint64_t)rows[n - 1].ts);
    put64(e + 40, (uint64_t)rows[0].occupancy);
    put64(e + 48, (uint64_t)rows[n - 1].occupancy);
    w->spaces.n += SPACE_ENT;
    if (!w->st.spaces || rows[0].ts < w->first_ts) w->first_ts = rows[0].ts;
    if (!w->st.spaces || rows[n - 1].ts > w->last_ts) w->last_ts = rows[n - 1].ts;
    w->st.spaces++;
    w->st.rows += n;
    w->have_space = true;
    w->last_space = space_id;
    return 0;
}

/* Appends footer and trailer and writes everything out. */
static int w_footer(ff_seg_writer *w)
{
    uint64_t foot = w->off;
    uint8_t *h = bb_room(&w->out, FOOT_HDR);
    memset(h, 0, FOOT_HDR);
    put32(h, (uint32_t)w->st.spaces);
    put64(h + 8, w->st.blocks);
    put64(h + 16, w->st.rows);
    put64(h + 24, (uint64_t)w->first_ts);
    put64(h + 32, (uint64_t)w->last_ts);
    size_t start = w->out.n;
    w->out.n += FOOT_HDR;
    bb_put(&w->out, w->spaces.p, w->spaces.n);
    bb_put(&w->out, w->blocks.p, w->blocks.n);
    uint64_t len = w->out.n - start;
    uint8_t *t = bb_room(&w->out, TRAILER);
    put64(t, foot);
    put64(t + 8, len);
    put64(t + 16, XXH3_64bits_withSeed(w->out.p + start, len + 16, w->salt));
    memcpy(t + 24, END_MAGIC, 8);
    w->out.n += TRAILER;
    w->off += len + TRAILER;
    w->st.file_bytes = w->off;
    return w_flush(w);
}

static void w_free(ff_seg_writer *w)
{
    if (w->fd >= 0) close(w->fd);
    close(w->dirfd);
    free(w->out.p);
    free(w->spaces.p);
    free(w->blocks.p);
    scratch_free(&w->enc);
    free(w);
}

int ff_seg_writer_finish(ff_seg_writer *w, const char *replaces, ff_seg_stats *st)
{
    int rc = w->failed ? -EIO : w_footer(w);
    if (!rc && fsync(w->fd) != 0) rc = -errno;
    if (!rc && renameat(w->dirfd, w->tmp, w->dirfd, w->name) != 0) rc = -errno;
    if (rc) {
        unlinkat(w->dirfd, w->tmp, 0);
        w_free(w);
        return rc;
    }
    if (fsync(w->dirfd) != 0) rc = -errno;
    if (!rc && replaces && strcmp(replaces, w->name) != 0) {
        if (unlinkat(w->dirfd, replaces, 0) != 0 && errno != ENOENT) rc = -errno;
        if (!rc && fsync(w->dirfd) != 0) rc = -errno;
    }
    if (st) *st = w->st;
    w_free(w);
    return rc;
}

void ff_seg_writer_abort(ff_seg_writer *w)
{
    unlinkat(w->dirfd, w->tmp, 0);
    w_free(w);
}
