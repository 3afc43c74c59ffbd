/*
 * segment.c -- sealed segment files: the format, the reader and the verifier (contract in
 * storage/segment.h; the writer and the encoder are in segment_write.c, what both share in
 * segment_int.h).
 *
 * FILE. A segment is written once and never changed. All integers are little-endian:
 *
 *   header (32 bytes) | block | block | ... | footer | trailer (32 bytes)
 *
 * Header:
 *   0   8  magic "FFSEG\0\0\1"
 *   8   4  format version (1)
 *   12  4  header size (32)
 *   16  8  salt: random, seeds every checksum of this file
 *   24  8  XXH3_64bits of bytes 0..23
 *
 * Trailer, the last 32 bytes of the file:
 *   0   8  F: offset of the footer
 *   8   8  L: footer length; F + L + 32 = file size
 *   16  8  XXH3_64bits_withSeed(file bytes F .. size-17, salt): the footer and the first
 *          16 bytes of the trailer
 *   24  8  magic "FFSEGEND"
 *
 * Footer, L = 40 + 56 S + 40 K bytes:
 *   0   4  S: number of spaces          4   4  zero
 *   8   8  K: number of blocks          16  8  rows in all spaces
 *   24  8  first ts over all rows       32  8  last ts over all rows (both 0 when S = 0)
 *   40     S space entries, 56 bytes each, space ids strictly ascending:
 *          0 4 space id, 4 4 blocks b (>= 1), 8 8 index of its first block,
 *          16 8 rows, 24 8 first ts, 32 8 last ts, 40 8 first occupancy (after its first
 *          row), 48 8 last occupancy (after its last row)
 *   40+56S K block entries, 40 bytes each, in file order:
 *          0 8 offset, 8 4 stored length, 12 4 rows n (1..65536), 16 8 first ts,
 *          24 8 last ts, 32 8 occupancy before the block's first row
 *   Space j owns blocks [first, first + b), consecutive and in canonical order; the
 *   spaces' ranges follow each other from block 0 to K-1. Blocks lie back to back: block
 *   0 at offset 32, block i+1 where block i ends, block K-1 ending at F. The rows of a
 *   space are the sum of its blocks' rows, its first/last ts those of its first/last
 *   block, and block i+1 of a space starts at or after block i's last ts.
 *
 * Block i of stored length len at offset off:
 *   0   8  XXH3_64bits_withSeed(block bytes 8 .. len-1, salt ^ off)
 *   8   4  R: length of the decoded payload (1 .. 64 * 65536)
 *   12  1  codec: 0 stored (len - 13 = R, the payload follows) or 1 lz4 (an LZ4 block
 *          that decompresses to exactly R bytes)
 *   13     the payload, stored or compressed
 * The seed ties a block to its file and position: a block of another file or place
 * never validates.
 *
 * Payload of a block of n rows (n, first ts and occupancy before from its footer entry).
 * varint = unsigned LEB128 (at most 10 bytes); zigzag(v) = (v << 1) ^ (v >> 63).
 *   varint  n (must equal the footer's)
 *   varint  s >= 1: the timestamp scale; every gap between consecutive rows is a multiple
 *   u8      k <= 63: the Rice parameter of the gaps
 *   varint  D, 1 <= D <= n: dictionary size, then D entries, DPU ids strictly ascending:
 *             varint  id (the first entry) or id - previous id (>= 1)
 *             varint  seq of the entry's first row in the block (<= 65535)
 *             u8      mode: bit 0 = seq step t (0 or 1); bits 1-2 = delta rule
 *                     (0: delta = direction, 1: delta = -direction, 2: delta = 0);
 *                     other bits zero
 *   varint  B, then B bytes of bit stream, bits taken LSB first from each byte. Per row i:
 *             ceil(log2 D) bits  index of the row's DPU in the dictionary (< D)
 *             1 bit              direction: 0 is +1, 1 is -1
 *             1 bit              exception: the row has an entry in the exception list
 *             for i > 0, g = (ts[i] - ts[i-1]) / s Rice-coded: with q = g >> k, either
 *             q < 16: q one bits, a zero bit, the k low bits of g; or 16 one bits, 6 bits
 *             m - 1 where m (1..64) is the bit length of g, then the m bits of g.
 *           Padding bits are zero; B is exactly the bytes needed.
 *   exception list: for each row with the exception bit, in row order, u8 flags
 *           (non-zero, bits 4-7 zero) then the flagged fields in this order:
 *             1  u16 seq          2  i8 direction
 *             4  i8 delta         8  varint zigzag(c): occupancy correction
 *   nothing after the list.
 * Row i is rebuilt as: DPU = dictionary entry e; seq = e's first seq if this is e's first
 * row, else previous seq of e + t (mod 2^16), unless given; direction from its bit unless
 * given; delta from e's rule and the direction unless given; ts[0] = the footer's first
 * ts, ts[i] = ts[i-1] + g * s; occupancy = previous occupancy (the footer's occupancy
 * before, for row 0) + delta + c (mod 2^64, c = 0 unless given). The writer picks s as the
 * gcd of the gaps, k near the cheapest (a walk from the mean gap's bit length), step and
 * rule per DPU as the most frequent, and stores a block lz4-compressed only when that is
 * shorter (payloads under 64 bytes are stored without trying). Readers rely on none of
 * these choices.
 *
 * VALIDITY. A file is OPEN-VALID when the header has the magic (else FF_EFORMAT), the
 * version (else FF_EVERSION) and its checksum, the trailer its magic and checksum, and
 * the footer every structural rule above (else FF_ECORRUPT). A block is VALID when its
 * checksum matches, it decodes with no byte left over, to n rows in canonical order,
 * ending at the footer's last ts. Readers check both every time they read a block.
 *
 * READING. count-at-T: binary search of the space table, then of the space's blocks for
 * the last block with first ts <= T; T at or after a block's last ts is answered from
 * the next block's occupancy before (or the space's last occupancy) without a decode,
 * else that one block is decoded. Range scans and exact lookups start at the first block
 * whose last ts reaches the wanted ts.
 *
 * RESIDENCY. The mapping is read-only and shared. Validation reads the whole footer
 * (about 100 bytes per space), so ff_seg_open drops every page afterwards
 * (ff_seg_drop_pages, MADV_DONTNEED): an open segment holds no resident memory until it
 * is read, and a read faults in only the pages it touches, from the page cache.
 *
 * VERIFY (ff_seg_verify) decodes everything and checks, besides open-validity:
 *   1. every block is valid;
 *   2. consecutive blocks of a space are in canonical order across their boundary;
 *   3. each block's last occupancy is the next block's occupancy before, the first and
 *      last occupancy of each space are those of its first and last row.
 */
#include "storage/segment_int.h"

#include <fcntl.h>
#include <lz4.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- payload bytes and bits ---------------------------------------------------------- */

/* A cursor over payload bytes; `bad` is sticky. */
typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd;

static uint64_t rd_varint(rd *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) break;
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

static uint8_t rd_u8(rd *r)
{
    if (r->p >= r->end) return r->bad = true, 0;
    return *r->p++;
}

typedef struct bitr {
    const uint8_t *p, *end;
    uint64_t acc;
    unsigned nacc;
    bool bad;
} bitr;

/* Loads bytes until at least 57 bits are buffered or the stream ends. Bytes are OR'ed in
 * at their final position, so loading one twice (the 8-byte fast path) is harmless. */
static inline void br_fill(bitr *r)
{
    if (r->end - r->p >= 8) {
        uint64_t v;
        memcpy(&v, r->p, 8);
        r->acc |= v << r->nacc;
        r->p += (63 - r->nacc) >> 3;
        r->nacc |= 56;
        return;
    }
    while (r->nacc <= 56 && r->p < r->end) {
        r->acc |= (uint64_t)*r->p++ << r->nacc;
        r->nacc += 8;
    }
}

/* Takes n (<= 32) bits. */
static inline uint64_t br_get(bitr *r, unsigned n)
{
    if (r->nacc < n) {
        br_fill(r);
        if (r->nacc < n) return r->bad = true, 0;
    }
    uint64_t v = n ? r->acc & (((uint64_t)1 << n) - 1) : 0;
    r->acc >>= n;
    r->nacc -= n;
    return v;
}

static uint64_t br_get_wide(bitr *r, unsigned n)
{
    if (n <= 32) return br_get(r, n);
    uint64_t lo = br_get(r, 32);
    return lo | br_get(r, n - 32) << 32;
}

static uint64_t rice_get(bitr *r, unsigned k)
{
    if (r->nacc <= RICE_LIMIT) br_fill(r);
    uint64_t ones = ~r->acc;
    unsigned q = ones ? (unsigned)__builtin_ctzll(ones) : 64;
    q = q > RICE_LIMIT ? RICE_LIMIT : q;
    if (q < RICE_LIMIT && q + 1 + k <= 32) { /* the common case: one take */
        uint64_t v = br_get(r, q + 1 + k);
        return ((uint64_t)q << k) | v >> (q + 1);
    }
    br_get(r, q < RICE_LIMIT ? q + 1 : q); /* sets bad when the stream ends early */
    if (q < RICE_LIMIT) return ((uint64_t)q << k) | br_get_wide(r, k);
    unsigned m = (unsigned)br_get(r, 6) + 1;
    return br_get_wide(r, m);
}

/* ---- keys -------------------------------------------------------------------------- */

int ff_seg_key_cmp(const ff_seg_row *row, const ff_seg_key *k)
{
    if (row->ts != k->ts) return row->ts < k->ts ? -1 : 1;
    if (row->dpu_id != k->dpu_id) return row->dpu_id < k->dpu_id ? -1 : 1;
    if (row->seq != k->seq) return row->seq < k->seq ? -1 : 1;
    if (row->direction != k->direction) return row->direction < k->direction ? -1 : 1;
    return 0;
}

/* ---- block decoding ---------------------------------------------------------------- */

/* A footer block entry. */
typedef struct bent {
    uint64_t off;
    uint32_t len, rows;
    int64_t first_ts, last_ts, occ_before;
} bent;

/* Rebuilds one row from the bit stream and exception list; see the format. */
static bool decode_row(bitr *br, rd *x, const dent *d, uint32_t nd, unsigned ibits,
                       int32_t *prevseq, ff_seg_row *r)
{
    uint64_t v = br_get(br, ibits + 2);
    uint32_t j = (uint32_t)(v & (((uint64_t)1 << ibits) - 1));
    int dir = (v >> ibits) & 1 ? -1 : 1;
    bool exc = (v >> (ibits + 1)) & 1;
    if (br->bad || j >= nd) return false;
    const dent *e = &d[j];
    r->dpu_id = e->id;
    r->seq = prevseq[j] < 0 ? e->first_seq : (uint16_t)(prevseq[j] + e->step);
    r->direction = (int8_t)dir;
    unsigned flags = exc ? rd_u8(x) : 0;
    if (exc && (flags == 0 || flags > 15)) return false;
    if (flags & 1) {
        uint8_t lo = rd_u8(x), hi = rd_u8(x);
        r->seq = (uint16_t)(lo | hi << 8);
    }
    if (flags & 2) r->direction = (int8_t)rd_u8(x);
    r->delta = (int8_t)rule_delta(e->rule, r->direction);
    if (flags & 4) r->delta = (int8_t)rd_u8(x);
    r->occupancy = (flags & 8) ? unzigzag(rd_varint(x)) : 0; /* the correction, for now */
    prevseq[j] = r->seq;
    return !x->bad;
}

/* Parses the dictionary; NULL on malformed input. */
static dent *dict_parse(rd *p, uint32_t n, uint32_t *nd)
{
    uint64_t k = rd_varint(p);
    if (p->bad || k == 0 || k > n) return NULL;
    dent *d = ff_xcalloc(k, sizeof *d);
    uint64_t id = 0;
    for (uint64_t j = 0; j < k; j++) {
        uint64_t v = rd_varint(p), seq = rd_varint(p);
        unsigned mode = rd_u8(p);
        id += v;
        if (p->bad || (j && v == 0) || id > UINT32_MAX || seq > UINT16_MAX || mode > 5) {
            free(d);
            return NULL;
        }
        d[j].id = (uint32_t)id;
        d[j].first_seq = (uint16_t)seq;
        d[j].step = mode & 1;
        d[j].rule = (uint8_t)(mode >> 1);
    }
    *nd = (uint32_t)k;
    return d;
}

/* A cursor decoding the rows of one block in order. */
typedef struct dec {
    const bent *b;
    bitr br;
    rd x;
    dent *d;
    int32_t *prevseq;
    uint32_t nd, i;
    unsigned ibits, k;
    uint64_t scale, occ;
    ff_seg_row last;
} dec;

static void dec_free(dec *dc)
{
    free(dc->d);
    free(dc->prevseq);
}

/* Starts decoding payload[0..len) of block b. Returns NULL or what is wrong. */
static const char *dec_open(dec *dc, const uint8_t *payload, size_t len, const bent *b)
{
    memset(dc, 0, sizeof *dc);
    rd p = {payload, payload + len, false};
    uint64_t nn = rd_varint(&p);
    dc->scale = rd_varint(&p);
    dc->k = rd_u8(&p);
    if (p.bad || nn != b->rows || dc->scale == 0 || dc->k > 63) return "bad block header";
    dc->d = dict_parse(&p, b->rows, &dc->nd);
    if (!dc->d) return "bad dictionary";
    uint64_t nbits = rd_varint(&p);
    if (p.bad || nbits > (uint64_t)(p.end - p.p)) return "bad bit stream length";
    dc->br = (bitr){p.p, p.p + nbits, 0, 0, false};
    dc->x = (rd){p.p + nbits, p.end, false};
    dc->prevseq = ff_xmalloc(dc->nd * sizeof *dc->prevseq);
    for (uint32_t j = 0; j < dc->nd; j++) dc->prevseq[j] = -1;
    dc->ibits = bitlen(dc->nd - 1);
    dc->occ = (uint64_t)b->occ_before;
    dc->b = b;
    return NULL;
}

/* Decodes the next row (there must be one) into *r. Returns NULL or what is wrong. */
static const char *dec_next(dec *dc, ff_seg_row *r)
{
    uint32_t i = dc->i++;
    bool ok = decode_row(&dc->br, &dc->x, dc->d, dc->nd, dc->ibits, dc->prevseq, r);
    uint64_t g = i ? rice_get(&dc->br, dc->k) : 0, step;
    if (!ok || dc->br.bad) return "bad row encoding";
    r->ts = dc->b->first_ts;
    if (i && (__builtin_mul_overflow(g, dc->scale, &step) || step > INT64_MAX ||
              __builtin_add_overflow(dc->last.ts, (int64_t)step, &r->ts)))
        return "timestamp out of range";
    dc->occ += (uint64_t)(int64_t)r->delta + (uint64_t)r->occupancy; /* + correction */
    r->occupancy = (int64_t)dc->occ;
    if (i && row_cmp(&dc->last, r) > 0) return "rows out of canonical order";
    dc->last = *r;
    return NULL;
}

/* After the last row: checks that nothing is left and the block ends where it should. */
static const char *dec_finish(const dec *dc)
{
    if (dc->br.p != dc->br.end || dc->br.acc != 0 || dc->x.p != dc->x.end)
        return "bytes left over after the last row";
    if (dc->last.ts != dc->b->last_ts) return "last timestamp differs from the footer";
    return NULL;
}

/* ---- reader ------------------------------------------------------------------------ */

static bent block_at(const ff_seg *seg, uint64_t i)
{
    const uint8_t *e = seg->blocks + i * BLOCK_ENT;
    return (bent){get64(e),
                  get32(e + 8),
                  get32(e + 12),
                  (int64_t)get64(e + 16),
                  (int64_t)get64(e + 24),
                  (int64_t)get64(e + 32)};
}

/* Space i with its first block index in *first. */
static void space_at(const ff_seg *seg, uint32_t i, ff_seg_space *s, uint64_t *first)
{
    const uint8_t *e = seg->spaces + (uint64_t)i * SPACE_ENT;
    s->space_id = get32(e);
    s->blocks = get32(e + 4);
    *first = get64(e + 8);
    s->rows = get64(e + 16);
    s->first_ts = (int64_t)get64(e + 24);
    s->last_ts = (int64_t)get64(e + 32);
    s->first_occ = (int64_t)get64(e + 40);
    s->last_occ = (int64_t)get64(e + 48);
    s->occ_before = *first < seg->nblocks ? block_at(seg, *first).occ_before : 0;
}

void ff__seg_errf(char *err, size_t errlen, const char *f, ...)
{
    if (!errlen) return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(err, errlen, f, ap);
    va_end(ap);
}

/* Checks the footer's structural rules (see the format); NULL or what is wrong. */
static const char *footer_check(const ff_seg *seg)
{
    uint64_t next_block = 0, off = HDR, rows = 0;
    for (uint32_t i = 0; i < seg->nspaces; i++) {
        ff_seg_space s;
        uint64_t first, srows = 0;
        space_at(seg, i, &s, &first);
        if (i && s.space_id <= get32(seg->spaces + (uint64_t)(i - 1) * SPACE_ENT))
            return "space ids not ascending";
        if (s.blocks == 0 || first != next_block || s.blocks > seg->nblocks - first)
            return "bad block range of a space";
        for (uint64_t j = first; j < first + s.blocks; j++) {
            bent b = block_at(seg, j);
            if (b.off != off || b.len <= BLOCK_HDR || b.len > seg->blocks_end - off)
                return "bad block offset or length";
            if (b.rows == 0 || b.rows > FF_SEG_MAX_BLOCK || b.first_ts > b.last_ts)
                return "bad block rows or time range";
            if (j > first && b.first_ts < block_at(seg, j - 1).last_ts)
                return "blocks of a space out of order";
            off += b.len;
            srows += b.rows;
        }
        if (srows != s.rows || s.first_ts != block_at(seg, first).first_ts ||
            s.last_ts != block_at(seg, first + s.blocks - 1).last_ts)
            return "space totals differ from its blocks";
        if (s.first_ts < seg->first_ts || s.last_ts > seg->last_ts)
            return "space time range outside the segment's";
        next_block += s.blocks;
        rows += s.rows;
    }
    if (next_block != seg->nblocks || off != seg->blocks_end || rows != seg->rows)
        return "footer totals differ from the tables";
    return NULL;
}

/* Validates header, trailer and footer of a mapped file; fills seg. */
static int seg_validate(ff_seg *seg, char *err, size_t errlen)
{
    const uint8_t *m = seg->map;
    const char *path = seg->path;
    seg->stub = seg->size >= 8 && memcmp(m, STUB_MAGIC, 8) == 0;
    uint32_t hdr = seg->stub ? STUB_HDR : HDR;
    if (seg->size < 8 || (!seg->stub && memcmp(m, MAGIC, 8) != 0)) {
        ff__seg_errf(err, errlen, "%s: not a segment (bad magic)", path);
        return FF_EFORMAT;
    }
    if (seg->size >= 12 && get32(m + 8) != FF_SEG_VERSION) {
        ff__seg_errf(err, errlen, "%s: version %u, expected %u", path, get32(m + 8),
                     FF_SEG_VERSION);
        return FF_EVERSION;
    }
    if (seg->size < hdr + FOOT_HDR + TRAILER) {
        ff__seg_errf(err, errlen, "corrupt at offset %llu in %s: file truncated",
                     (unsigned long long)seg->size, path);
        return FF_ECORRUPT;
    }
    if (get32(m + 12) != hdr || get64(m + hdr - 8) != XXH3_64bits(m, hdr - 8)) {
        ff__seg_errf(err, errlen, "corrupt at offset 0 in %s: header checksum mismatch", path);
        return FF_ECORRUPT;
    }
    seg->salt = get64(m + 16);
    const uint8_t *t = m + seg->size - TRAILER;
    uint64_t toff = seg->size - TRAILER, foot = get64(t), len = get64(t + 8);
    if (memcmp(t + 24, END_MAGIC, 8) != 0 || foot < hdr || len < FOOT_HDR || foot + len != toff) {
        ff__seg_errf(err, errlen, "corrupt at offset %llu in %s: bad trailer (file truncated?)",
                     (unsigned long long)toff, path);
        return FF_ECORRUPT;
    }
    if (get64(t + 16) != XXH3_64bits_withSeed(m + foot, len + 16, seg->salt)) {
        ff__seg_errf(err, errlen, "corrupt at offset %llu in %s: footer checksum mismatch",
                     (unsigned long long)foot, path);
        return FF_ECORRUPT;
    }
    const uint8_t *f = m + foot;
    seg->foot = foot;
    seg->footsum = get64(t + 16);
    seg->blocks_end = foot;
    seg->orig_size = seg->size;
    if (seg->stub) { /* the original's numbers (storage/archive.c) */
        seg->blocks_end = get64(m + 32);
        seg->orig_size = get64(m + 24);
        seg->footsum = get64(m + 40);
        seg->archived_at = (int64_t)get64(m + 48);
        if (seg->blocks_end < HDR || seg->orig_size != seg->blocks_end + len + TRAILER) {
            ff__seg_errf(err, errlen,
                         "corrupt at offset 24 in %s: stub sizes do not match its footer", path);
            return FF_ECORRUPT;
        }
    }
    seg->nspaces = get32(f);
    seg->nblocks = get64(f + 8);
    seg->rows = get64(f + 16);
    seg->first_ts = (int64_t)get64(f + 24);
    seg->last_ts = (int64_t)get64(f + 32);
    seg->spaces = f + FOOT_HDR;
    seg->blocks = seg->spaces + (uint64_t)seg->nspaces * SPACE_ENT;
    const char *why = NULL;
    if (get32(f + 4) != 0 || seg->nblocks > len / BLOCK_ENT ||
        len != FOOT_HDR + (uint64_t)seg->nspaces * SPACE_ENT + seg->nblocks * BLOCK_ENT)
        why = "footer size does not match its tables";
    else
        why = footer_check(seg);
    if (why) {
        ff__seg_errf(err, errlen, "corrupt at offset %llu in %s: %s", (unsigned long long)foot,
                     path, why);
        return FF_ECORRUPT;
    }
    return 0;
}

int ff_seg_open(const char *path, ff_seg **out, char *err, size_t errlen)
{
    ff__seg_errf(err, errlen, "%s", "");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        ff__seg_errf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = -errno;
        close(fd);
        ff__seg_errf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    ff_seg *seg = ff_xcalloc(1, sizeof *seg);
    seg->path = ff_xstrdup(path);
    seg->size = (uint64_t)st.st_size;
    int rc = 0;
    if (seg->size == 0) {
        ff__seg_errf(err, errlen, "%s: not a segment (empty file)", path);
        rc = FF_EFORMAT;
        goto out_free;
    }
    void *p = mmap(NULL, seg->size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = -errno;
        ff__seg_errf(err, errlen, "%s: mmap: %s", path, strerror(-rc));
        goto out_free;
    }
    seg->map = p;
    rc = seg_validate(seg, err, errlen);
    if (rc) goto out_unmap;
    ff_seg_drop_pages(seg); /* the footer, read whole by the validation */
    close(fd);
    *out = seg;
    return 0;

out_unmap:
    munmap((void *)seg->map, seg->size);
out_free:
    close(fd);
    free(seg->path);
    free(seg);
    return rc;
}

void ff_seg_close(ff_seg *seg)
{
    if (!seg) return;
    munmap((void *)seg->map, seg->size);
    free(seg->path);
    free(seg);
}

void ff_seg_drop_pages(const ff_seg *seg)
{
    (void)madvise((void *)seg->map, seg->size, MADV_DONTNEED);
}

const char *ff_seg_path(const ff_seg *seg)
{
    return seg->path;
}

void ff_seg_get_info(const ff_seg *seg, ff_seg_info *out)
{
    out->version = FF_SEG_VERSION;
    out->spaces = seg->nspaces;
    out->blocks = seg->nblocks;
    out->rows = seg->rows;
    out->first_ts = seg->first_ts;
    out->last_ts = seg->last_ts;
    out->file_bytes = seg->size;
    out->stub = seg->stub;
    out->segment_bytes = seg->orig_size;
    out->archived_at = seg->archived_at;
}

bool ff_seg_same(const ff_seg *a, const ff_seg *b)
{
    return a->salt == b->salt && a->orig_size == b->orig_size && a->footsum == b->footsum &&
           a->blocks_end == b->blocks_end;
}

void ff_seg_space_at(const ff_seg *seg, uint32_t i, ff_seg_space *out)
{
    uint64_t first;
    FF_ASSERT(i < seg->nspaces);
    space_at(seg, i, out, &first);
}

/* Index of space_id in the space table, or -1. */
static int64_t space_find(const ff_seg *seg, uint32_t space_id)
{
    uint32_t lo = 0, hi = seg->nspaces;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2, id = get32(seg->spaces + (uint64_t)mid * SPACE_ENT);
        if (id == space_id) return mid;
        if (id < space_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int ff_seg_space_info(const ff_seg *seg, uint32_t space_id, ff_seg_space *out)
{
    int64_t i = space_find(seg, space_id);
    if (i < 0) return FF_ENOTFOUND;
    ff_seg_space_at(seg, (uint32_t)i, out);
    return 0;
}

const char *ff_seg_error(const ff_seg *seg)
{
    return atomic_load(&seg->err_state) == 2 ? seg->err : "";
}

const char *ff_seg_error_news(const ff_seg *cseg)
{
    ff_seg *seg = (ff_seg *)cseg; /* the flag is the one thing a reader may change */
    if (atomic_load(&seg->err_state) != 2 || atomic_exchange(&seg->err_told, true)) return NULL;
    return seg->err;
}

/* Records the first read error of seg (the segment is immutable otherwise). */
static int seg_corrupt(const ff_seg *cseg, uint64_t off, const char *why)
{
    ff_seg *seg = (ff_seg *)cseg;
    int zero = 0;
    if (atomic_compare_exchange_strong(&seg->err_state, &zero, 1)) {
        snprintf(seg->err, sizeof seg->err, "corrupt at offset %llu in %s: %s",
                 (unsigned long long)off, seg->path, why);
        atomic_store(&seg->err_state, 2);
    }
    return FF_ECORRUPT;
}

/*
 * Checks block i and starts a cursor over it (with its footer entry in *b, which must
 * outlive the cursor); *buf receives the lz4 output to free() after dec_free().
 */
static int block_open(const ff_seg *seg, uint64_t i, bent *b, dec *dc, uint8_t **buf)
{
    *b = block_at(seg, i);
    *buf = NULL;
    if (seg->stub) return FF_EARCHIVED; /* the blocks are in the archive */
    const uint8_t *p = seg->map + b->off;
    if (get64(p) != XXH3_64bits_withSeed(p + 8, b->len - 8, seg->salt ^ b->off))
        return seg_corrupt(seg, b->off, "block checksum mismatch");
    uint32_t raw = get32(p + 8), zlen = b->len - BLOCK_HDR;
    const uint8_t *payload = p + BLOCK_HDR;
    if (raw == 0 || raw > MAX_RAW || p[12] > CODEC_LZ4 || (p[12] == CODEC_RAW && zlen != raw))
        return seg_corrupt(seg, b->off, "bad block header");
    if (p[12] == CODEC_LZ4) {
        *buf = ff_xmalloc(raw);
        if (LZ4_decompress_safe((const char *)payload, (char *)*buf, (int)zlen, (int)raw) !=
            (int)raw) {
            free(*buf);
            return seg_corrupt(seg, b->off, "lz4 data does not decompress");
        }
        payload = *buf;
    }
    const char *why = dec_open(dc, payload, raw, b);
    if (why) {
        dec_free(dc);
        free(*buf);
        return seg_corrupt(seg, b->off, why);
    }
    return 0;
}

/* Checks and decodes all of block i into a new array (free() it) of its rows. */
static int block_read(const ff_seg *seg, uint64_t i, ff_seg_row **out)
{
    bent b;
    dec dc;
    uint8_t *buf;
    int rc = block_open(seg, i, &b, &dc, &buf);
    if (rc) return rc;
    ff_seg_row *rows = ff_xmalloc((size_t)b.rows * sizeof *rows);
    const char *why = NULL;
    for (uint32_t j = 0; j < b.rows && !why; j++) why = dec_next(&dc, &rows[j]);
    if (!why) why = dec_finish(&dc);
    dec_free(&dc);
    free(buf);
    if (why) {
        free(rows);
        return seg_corrupt(seg, b.off, why);
    }
    *out = rows;
    return 0;
}

int ff_seg_count_at(const ff_seg *seg, uint32_t space_id, int64_t t, int64_t *occ, bool *found)
{
    int64_t si = space_find(seg, space_id);
    if (si < 0) return FF_ENOTFOUND;
    ff_seg_space s;
    uint64_t first;
    space_at(seg, (uint32_t)si, &s, &first);
    *found = t >= s.first_ts;
    if (t < s.first_ts) return *occ = s.occ_before, 0;
    if (t >= s.last_ts) return *occ = s.last_occ, 0;
    uint64_t lo = first, hi = first + s.blocks; /* last block with first_ts <= t */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (block_at(seg, mid).first_ts <= t)
            lo = mid;
        else
            hi = mid;
    }
    bent b = block_at(seg, lo);
    if (t >= b.last_ts) {
        *occ = lo + 1 < first + s.blocks ? block_at(seg, lo + 1).occ_before : s.last_occ;
        return 0;
    }
    /* The block is checksummed: decoding stops at the first row after t. */
    dec dc;
    uint8_t *buf;
    int rc = block_open(seg, lo, &b, &dc, &buf);
    if (rc) return rc;
    ff_seg_row r;
    const char *why = NULL;
    *occ = b.occ_before;
    for (uint32_t j = 0; j < b.rows && !why; j++) {
        if ((why = dec_next(&dc, &r)) || r.ts > t) break;
        *occ = r.occupancy;
    }
    dec_free(&dc);
    free(buf);
    return why ? seg_corrupt(seg, b.off, why) : 0;
}

/* First block of space (blocks [first, end)) whose last ts is >= ts. */
static uint64_t block_reaching(const ff_seg *seg, uint64_t first, uint64_t end, int64_t ts)
{
    while (first < end) {
        uint64_t mid = first + (end - first) / 2;
        if (block_at(seg, mid).last_ts < ts)
            first = mid + 1;
        else
            end = mid;
    }
    return first;
}

int ff_seg_rows(const ff_seg *seg, uint32_t space_id, int64_t start, int64_t end,
                const ff_seg_key *after, ff_seg_row_cb cb, void *ctx)
{
    int64_t si = space_find(seg, space_id);
    if (si < 0) return FF_ENOTFOUND;
    ff_seg_space s;
    uint64_t first;
    space_at(seg, (uint32_t)si, &s, &first);
    int64_t from = after && after->ts > start ? after->ts : start;
    for (uint64_t i = block_reaching(seg, first, first + s.blocks, from);
         i < first + s.blocks && block_at(seg, i).first_ts < end; i++) {
        ff_seg_row *rows;
        int rc = block_read(seg, i, &rows);
        if (rc) return rc;
        uint32_t n = block_at(seg, i).rows;
        for (uint32_t j = 0; j < n && rows[j].ts < end && !rc; j++) {
            if (rows[j].ts < start || (after && ff_seg_key_cmp(&rows[j], after) <= 0)) continue;
            rc = cb(ctx, &rows[j]);
        }
        free(rows);
        if (rc) return rc;
    }
    return 0;
}

int ff_seg_find(const ff_seg *seg, uint32_t space_id, const ff_seg_key *key, ff_seg_row *row)
{
    int64_t si = space_find(seg, space_id);
    if (si < 0) return 0;
    ff_seg_space s;
    uint64_t first;
    space_at(seg, (uint32_t)si, &s, &first);
    for (uint64_t i = block_reaching(seg, first, first + s.blocks, key->ts);
         i < first + s.blocks && block_at(seg, i).first_ts <= key->ts; i++) {
        ff_seg_row *rows;
        int rc = block_read(seg, i, &rows);
        if (rc) return rc;
        uint32_t n = block_at(seg, i).rows, a = 0, z = n; /* first row >= key */
        while (a < z) {
            uint32_t mid = a + (z - a) / 2;
            if (ff_seg_key_cmp(&rows[mid], key) < 0)
                a = mid + 1;
            else
                z = mid;
        }
        int hit = a < n && ff_seg_key_cmp(&rows[a], key) == 0;
        if (hit && row) *row = rows[a];
        free(rows);
        if (hit) return 1;
        if (a < n) return 0; /* a greater key is in this block: no later block has it */
    }
    return 0;
}

/* ---- verify ------------------------------------------------------------------------ */

/* Checks the blocks of space i (invariants 1-3); rows counted into rep. */
static int verify_space(const ff_seg *seg, uint32_t i, ff_seg_report *rep)
{
    ff_seg_space s;
    uint64_t first;
    ff_seg_row last = {0};
    space_at(seg, i, &s, &first);
    for (uint64_t j = first; j < first + s.blocks; j++) {
        bent b = block_at(seg, j);
        ff_seg_row *rows;
        int rc = block_read(seg, j, &rows);
        if (rc) return rc;
        const char *why = NULL;
        if (j > first && row_cmp(&last, &rows[0]) > 0)
            why = "rows out of canonical order across blocks";
        else if (j > first && last.occupancy != b.occ_before)
            why = "occupancy chain broken between blocks";
        else if (j == first && rows[0].occupancy != s.first_occ)
            why = "first occupancy differs from the footer";
        last = rows[b.rows - 1];
        free(rows);
        if (why) return seg_corrupt(seg, b.off, why);
        rep->rows_checked += b.rows;
    }
    if (last.occupancy != s.last_occ)
        return seg_corrupt(seg, block_at(seg, first + s.blocks - 1).off,
                           "last occupancy differs from the footer");
    return 0;
}

int ff_seg_verify(const char *path, ff_seg_report *rep)
{
    ff_seg *seg;
    memset(rep, 0, sizeof *rep);
    int rc = ff_seg_open(path, &seg, rep->error, sizeof rep->error);
    if (rc) return rc;
    ff_seg_get_info(seg, &rep->info);
    for (uint32_t i = 0; i < seg->nspaces && !rc && !seg->stub; i++) rc = verify_space(seg, i, rep);
    if (rc) snprintf(rep->error, sizeof rep->error, "%s", ff_seg_error(seg));
    ff_seg_close(seg);
    return rc;
}
