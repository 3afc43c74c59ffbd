/*
 * bytes.h -- little-endian fixed-width loads and stores for storage/'s file formats.
 * Internal to storage/. Unaligned access through memcpy; footfall's formats are
 * little-endian and so is every host it builds for (static assert below).
 */
#ifndef FF_STORAGE_BYTES_H
#define FF_STORAGE_BYTES_H

#include <stdint.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "storage formats assume little-endian");

static inline uint64_t get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

#endif /* FF_STORAGE_BYTES_H */
