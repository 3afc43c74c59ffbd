/*
 * wire.h -- the binary ingest protocol of SPEC §3: batch frames and acks.
 *
 * Pure functions on byte arrays; no I/O. All integers are little-endian on the wire.
 *
 *   frame  = magic "FFE1" | u16 count (1..4096) | u16 flags (bit 0: ack) | u64 batch_id
 *            | count * 16-byte records
 *   record = u32 dpu_id | i8 direction | u8 reserved (0) | u16 seq | i64 ts (µs, UTC)
 *   ack    = magic "FFA1" | u16 status | u16 reserved | u64 batch_id | u16 accepted
 *            | u16 duplicates | u16 late | u16 refused                    (24 bytes)
 */
#ifndef FF_NET_WIRE_H
#define FF_NET_WIRE_H

#include "engine/ff.h"

#include <stdbool.h>

#define FF_FRAME_HEADER    16
#define FF_FRAME_RECORD    16
#define FF_FRAME_MAX_COUNT 4096
#define FF_FRAME_MAX       (FF_FRAME_HEADER + FF_FRAME_RECORD * FF_FRAME_MAX_COUNT)
#define FF_FRAME_FLAG_ACK  0x0001
#define FF_ACK_SIZE        24

enum ff_ack_status {
    FF_ACK_OK = 0,        /* all taken */
    FF_ACK_PARTIAL = 1,   /* some records refused */
    FF_ACK_MALFORMED = 2, /* malformed frame, nothing taken */
    FF_ACK_OVERLOAD = 3,  /* overloaded, nothing taken, retry later */
};

typedef struct ff_frame_header {
    uint16_t count;
    uint16_t flags;
    uint64_t batch_id;
} ff_frame_header;

typedef struct ff_ack {
    uint16_t status;
    uint64_t batch_id;
    uint16_t accepted, duplicates, late, refused;
} ff_ack;

/*
 * Parses the 16-byte header at buf (len bytes available). Returns 0, or FF_EFORMAT
 * for a bad magic, a count outside 1..4096 or unknown flag bits, or -EAGAIN when len
 * is under 16. Does not look at the records. For a frame that is malformed only in
 * its flags or count, h->batch_id is still filled (so the ack can echo it).
 */
int ff_frame_parse_header(const uint8_t *buf, size_t len, ff_frame_header *h);
/* Total bytes of the frame described by h: 16 + 16 * count. */
static inline size_t ff_frame_size(const ff_frame_header *h)
{
    return FF_FRAME_HEADER + (size_t)FF_FRAME_RECORD * h->count;
}
/*
 * Decodes `count` records starting at rec (the byte after the header) into out. Does not
 * validate field values (the engine's admission does: direction, reserved, ts).
 */
void ff_frame_records(const uint8_t *rec, size_t count, ff_event *out);
/* Encodes a frame of n (1..4096) events into buf (FF_FRAME_HEADER + 16 n bytes);
 * returns its size. */
size_t ff_frame_encode(uint8_t *buf, uint64_t batch_id, bool ack, const ff_event *ev, size_t n);

/* Encodes only the 16-byte header of a frame of n (1..4096) records, for a sender that
 * writes the records from elsewhere (on a little-endian host an ff_event array is
 * already in wire order). */
void ff_frame_encode_header(uint8_t out[FF_FRAME_HEADER], uint64_t batch_id, bool ack, size_t n);

void ff_ack_encode(uint8_t out[FF_ACK_SIZE], const ff_ack *a);
/* Returns 0, or FF_EFORMAT for a bad magic. */
int ff_ack_decode(const uint8_t in[FF_ACK_SIZE], ff_ack *a);

#endif /* FF_NET_WIRE_H */
