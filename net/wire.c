/*
 * wire.c -- batch frames and acks of SPEC §3, encoded and decoded on byte arrays.
 *
 * Layout (all integers little-endian):
 *
 *   frame   0  4  magic "FFE1" (46 46 45 31)
 *           4  2  count, 1..4096
 *           6  2  flags: bit 0 = ack requested, other bits 0
 *           8  8  batch_id
 *          16 16n records: u32 dpu_id | i8 direction | u8 reserved | u16 seq | i64 ts
 *
 *   ack     0  4  magic "FFA1" (46 46 41 31)
 *           4  2  status (enum ff_ack_status)
 *           6  2  reserved, 0
 *           8  8  batch_id
 *          16  2  accepted | 18 2 duplicates | 20 2 late | 22 2 refused
 *
 * Every multi-byte field goes through memcpy and an explicit little-endian conversion,
 * so unaligned buffers and big-endian hosts both work. On a little-endian host the
 * record layout equals ff_event's, so ff_frame_records() and ff_frame_encode() copy the
 * records in one memcpy.
 */
#include "net/wire.h"

#include <string.h>

_Static_assert(FF_FRAME_HEADER == 16, "frame header is 16 bytes");
_Static_assert(FF_FRAME_RECORD == sizeof(ff_event), "a record is one ff_event");
_Static_assert(FF_ACK_SIZE == 24, "an ack is 24 bytes");

static const uint8_t frame_magic[4] = {0x46, 0x46, 0x45, 0x31}; /* "FFE1" */
static const uint8_t ack_magic[4] = {0x46, 0x46, 0x41, 0x31};   /* "FFA1" */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WIRE_LE_HOST 1
#else
#define WIRE_LE_HOST 0
#endif

static inline uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static inline void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

int ff_frame_parse_header(const uint8_t *buf, size_t len, ff_frame_header *h)
{
    if (len < FF_FRAME_HEADER) return -EAGAIN;
    h->count = get16(buf + 4);
    h->flags = get16(buf + 6);
    h->batch_id = get64(buf + 8);
    if (memcmp(buf, frame_magic, 4) != 0) return FF_EFORMAT;
    if (h->count < 1 || h->count > FF_FRAME_MAX_COUNT) return FF_EFORMAT;
    if (h->flags & ~FF_FRAME_FLAG_ACK) return FF_EFORMAT;
    return 0;
}

void ff_frame_records(const uint8_t *rec, size_t count, ff_event *out)
{
#if WIRE_LE_HOST
    memcpy(out, rec, count * FF_FRAME_RECORD);
#else
    for (size_t i = 0; i < count; i++, rec += FF_FRAME_RECORD) {
        out[i].dpu_id = get32(rec);
        out[i].direction = (int8_t)rec[4];
        out[i].reserved = rec[5];
        out[i].seq = get16(rec + 6);
        out[i].ts = (int64_t)get64(rec + 8);
    }
#endif
}

void ff_frame_encode_header(uint8_t out[FF_FRAME_HEADER], uint64_t batch_id, bool ack, size_t n)
{
    FF_ASSERT(n >= 1 && n <= FF_FRAME_MAX_COUNT);
    memcpy(out, frame_magic, 4);
    put16(out + 4, (uint16_t)n);
    put16(out + 6, ack ? FF_FRAME_FLAG_ACK : 0);
    put64(out + 8, batch_id);
}

size_t ff_frame_encode(uint8_t *buf, uint64_t batch_id, bool ack, const ff_event *ev, size_t n)
{
    ff_frame_encode_header(buf, batch_id, ack, n);
    uint8_t *rec = buf + FF_FRAME_HEADER;
#if WIRE_LE_HOST
    memcpy(rec, ev, n * FF_FRAME_RECORD);
#else
    for (size_t i = 0; i < n; i++, rec += FF_FRAME_RECORD) {
        put32(rec, ev[i].dpu_id);
        rec[4] = (uint8_t)ev[i].direction;
        rec[5] = ev[i].reserved;
        put16(rec + 6, ev[i].seq);
        put64(rec + 8, (uint64_t)ev[i].ts);
    }
#endif
    return FF_FRAME_HEADER + n * FF_FRAME_RECORD;
}

void ff_ack_encode(uint8_t out[FF_ACK_SIZE], const ff_ack *a)
{
    memcpy(out, ack_magic, 4);
    put16(out + 4, a->status);
    put16(out + 6, 0);
    put64(out + 8, a->batch_id);
    put16(out + 16, a->accepted);
    put16(out + 18, a->duplicates);
    put16(out + 20, a->late);
    put16(out + 22, a->refused);
}

int ff_ack_decode(const uint8_t in[FF_ACK_SIZE], ff_ack *a)
{
    if (memcmp(in, ack_magic, 4) != 0) return FF_EFORMAT;
    a->status = get16(in + 4);
    a->batch_id = get64(in + 8);
    a->accepted = get16(in + 16);
    a->duplicates = get16(in + 18);
    a->late = get16(in + 20);
    a->refused = get16(in + 22);
    return 0;
}
