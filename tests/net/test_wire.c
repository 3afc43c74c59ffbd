/*
 * test_wire.c -- batch frames and acks (net/wire.c) against the byte layout of SPEC §3.
 */
#include "net/wire.h"

#include <criterion/criterion.h>
#include <string.h>

static uint8_t buf[FF_FRAME_MAX + 64];

static ff_event ev(uint32_t dpu, int dir, uint16_t seq, int64_t ts)
{
    return (ff_event){.dpu_id = dpu, .direction = (int8_t)dir, .seq = seq, .ts = ts};
}

Test(wire, frame_bytes_match_the_spec)
{
    ff_event e = ev(0x01020304, -1, 0x0506, 0x0708090a0b0c0d0eLL);
    size_t n = ff_frame_encode(buf, 0x1122334455667788ULL, true, &e, 1);
    cr_assert_eq(n, 32);
    static const uint8_t want[32] = {
        0x46, 0x46, 0x45, 0x31, 0x01, 0x00, 0x01, 0x00, 0x88, 0x77, 0x66,
        0x55, 0x44, 0x33, 0x22, 0x11, 0x04, 0x03, 0x02, 0x01, 0xff, 0x00,
        0x06, 0x05, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07,
    };
    cr_assert_arr_eq(buf, want, 32);
}

Test(wire, frame_round_trip)
{
    static ff_event in[FF_FRAME_MAX_COUNT], out[FF_FRAME_MAX_COUNT];
    for (size_t i = 0; i < FF_FRAME_MAX_COUNT; i++)
        in[i] = ev((uint32_t)(i * 2654435761u), (i & 1) ? 1 : -1, (uint16_t)(i * 7),
                   (int64_t)i * 1000003 - 5000000000LL);
    size_t counts[] = {1, 2, 17, 4095, 4096};
    for (size_t k = 0; k < FF_ARRAY_LEN(counts); k++) {
        size_t c = counts[k];
        size_t n = ff_frame_encode(buf, 1000 + k, k & 1, in, c);
        cr_assert_eq(n, 16 + 16 * c);
        ff_frame_header h;
        cr_assert_eq(ff_frame_parse_header(buf, n, &h), 0);
        cr_assert_eq(h.count, c);
        cr_assert_eq(h.flags, (k & 1) ? FF_FRAME_FLAG_ACK : 0);
        cr_assert_eq(h.batch_id, 1000 + k);
        cr_assert_eq(ff_frame_size(&h), n);
        memset(out, 0xaa, sizeof out);
        ff_frame_records(buf + FF_FRAME_HEADER, h.count, out);
        cr_assert_arr_eq(out, in, c * sizeof(ff_event));
    }
}

Test(wire, records_decode_from_unaligned_buffer)
{
    ff_event in[3] = {ev(1, 1, 2, 3), ev(4, -1, 5, -6), ev(UINT32_MAX, 1, UINT16_MAX, INT64_MAX)};
    ff_event out[3];
    size_t n = ff_frame_encode(buf + 1, 9, false, in, 3);
    ff_frame_header h;
    cr_assert_eq(ff_frame_parse_header(buf + 1, n, &h), 0);
    ff_frame_records(buf + 1 + FF_FRAME_HEADER, 3, out);
    cr_assert_arr_eq(out, in, sizeof in);
}

Test(wire, short_header_wants_more)
{
    ff_event e = ev(1, 1, 0, 0);
    ff_frame_encode(buf, 1, true, &e, 1);
    ff_frame_header h;
    for (size_t len = 0; len < FF_FRAME_HEADER; len++)
        cr_assert_eq(ff_frame_parse_header(buf, len, &h), -EAGAIN, "len %zu", len);
    cr_assert_eq(ff_frame_parse_header(buf, FF_FRAME_HEADER, &h), 0);
}

Test(wire, bad_magic_is_malformed)
{
    ff_event e = ev(1, 1, 0, 0);
    ff_frame_header h;
    for (int i = 0; i < 4; i++) {
        ff_frame_encode(buf, 1, true, &e, 1);
        buf[i] ^= 0x20;
        cr_assert_eq(ff_frame_parse_header(buf, 32, &h), FF_EFORMAT, "byte %d", i);
    }
    /* an ack is not a frame */
    ff_ack a = {.batch_id = 1};
    ff_ack_encode(buf, &a);
    cr_assert_eq(ff_frame_parse_header(buf, 24, &h), FF_EFORMAT);
}

Test(wire, count_out_of_range_is_malformed_but_keeps_batch_id)
{
    ff_event e = ev(1, 1, 0, 0);
    ff_frame_header h;
    ff_frame_encode(buf, 77, true, &e, 1);
    buf[4] = 0, buf[5] = 0; /* count 0 */
    cr_assert_eq(ff_frame_parse_header(buf, 32, &h), FF_EFORMAT);
    cr_assert_eq(h.batch_id, 77);
    buf[4] = 0x01, buf[5] = 0x10; /* count 4097 */
    cr_assert_eq(ff_frame_parse_header(buf, 32, &h), FF_EFORMAT);
    cr_assert_eq(h.batch_id, 77);
    cr_assert_eq(h.count, 4097);
    buf[4] = 0x00, buf[5] = 0x10; /* count 4096 is fine */
    cr_assert_eq(ff_frame_parse_header(buf, 32, &h), 0);
    cr_assert_eq(h.count, 4096);
    buf[4] = 0xff, buf[5] = 0xff;
    cr_assert_eq(ff_frame_parse_header(buf, 32, &h), FF_EFORMAT);
}

Test(wire, unknown_flags_are_malformed_but_keep_batch_id)
{
    ff_event e = ev(1, 1, 0, 0);
    ff_frame_header h;
    for (int bit = 1; bit < 16; bit++) {
        ff_frame_encode(buf, 42, false, &e, 1);
        uint16_t f = (uint16_t)(1u << bit);
        buf[6] = (uint8_t)f, buf[7] = (uint8_t)(f >> 8);
        cr_assert_eq(ff_frame_parse_header(buf, 32, &h), FF_EFORMAT, "bit %d", bit);
        cr_assert_eq(h.batch_id, 42);
    }
    buf[6] = 1, buf[7] = 0;
    cr_assert_eq(ff_frame_parse_header(buf, 32, &h), 0);
    cr_assert_eq(h.flags, FF_FRAME_FLAG_ACK);
}

Test(wire, ack_bytes_match_the_spec)
{
    ff_ack a = {.status = FF_ACK_PARTIAL,
                .batch_id = 0x0102030405060708ULL,
                .accepted = 0x1011,
                .duplicates = 0x2021,
                .late = 0x3031,
                .refused = 0x4041};
    uint8_t out[FF_ACK_SIZE];
    memset(out, 0xee, sizeof out);
    ff_ack_encode(out, &a);
    static const uint8_t want[24] = {0x46, 0x46, 0x41, 0x31, 0x01, 0x00, 0x00, 0x00,
                                     0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
                                     0x11, 0x10, 0x21, 0x20, 0x31, 0x30, 0x41, 0x40};
    cr_assert_arr_eq(out, want, 24);
}

Test(wire, ack_round_trip)
{
    uint16_t statuses[] = {FF_ACK_OK, FF_ACK_PARTIAL, FF_ACK_MALFORMED, FF_ACK_OVERLOAD};
    for (size_t i = 0; i < FF_ARRAY_LEN(statuses); i++) {
        ff_ack a = {statuses[i], UINT64_MAX - i, 4096, (uint16_t)i, 3, UINT16_MAX}, b;
        uint8_t out[FF_ACK_SIZE];
        ff_ack_encode(out, &a);
        memset(&b, 0, sizeof b);
        cr_assert_eq(ff_ack_decode(out, &b), 0);
        cr_assert_eq(b.status, a.status);
        cr_assert_eq(b.batch_id, a.batch_id);
        cr_assert_eq(b.accepted, a.accepted);
        cr_assert_eq(b.duplicates, a.duplicates);
        cr_assert_eq(b.late, a.late);
        cr_assert_eq(b.refused, a.refused);
    }
}

Test(wire, ack_bad_magic)
{
    ff_ack a = {.batch_id = 5}, b;
    uint8_t out[FF_ACK_SIZE];
    ff_ack_encode(out, &a);
    out[3] = '2';
    cr_assert_eq(ff_ack_decode(out, &b), FF_EFORMAT);
    ff_event e = ev(1, 1, 0, 0);
    ff_frame_encode(buf, 1, true, &e, 1); /* a frame is not an ack */
    cr_assert_eq(ff_ack_decode(buf, &b), FF_EFORMAT);
}

Test(wire, header_alone_matches_full_encoding)
{
    ff_event e[2] = {ev(1, 1, 2, 3), ev(4, -1, 5, 6)};
    uint8_t h[FF_FRAME_HEADER];
    ff_frame_encode(buf, 0xabcdef, true, e, 2);
    ff_frame_encode_header(h, 0xabcdef, true, 2);
    cr_assert_arr_eq(h, buf, FF_FRAME_HEADER);
    ff_frame_encode(buf, 7, false, e, 1);
    ff_frame_encode_header(h, 7, false, 1);
    cr_assert_arr_eq(h, buf, FF_FRAME_HEADER);
}
