/*
 * idmap.h -- engine-internal hash maps: u32 id -> slot index, and name -> slot index.
 *
 * Both are open-addressing tables with linear probing, a power-of-two number of slots
 * and backward-shift deletion (no tombstones), so lookups stay short after deletes. A
 * map owns only its slot array; it grows by doubling at 3/4 load. 10 million ids take
 * 16 Mi slots of 8 bytes (128 MiB).
 */
#ifndef FF_ENGINE_IDMAP_H
#define FF_ENGINE_IDMAP_H

#include "engine/ff.h"

#include <stdbool.h>

#define FF__NOIX UINT32_MAX /* "no slot" */

typedef struct ff__idslot {
    uint32_t key;
    uint32_t val1; /* slot index + 1; 0 = empty */
} ff__idslot;

typedef struct ff__idmap {
    ff__idslot *s;
    uint32_t mask; /* slots - 1; 0 with s == NULL when empty */
    uint32_t n;
} ff__idmap;

/* The slot index of key, or FF__NOIX. */
uint32_t ff__idmap_get(const ff__idmap *m, uint32_t key);
/* Hints the CPU to fetch the home slot of key (batch lookups overlap their misses). */
static inline void ff__idmap_prefetch(const ff__idmap *m, uint32_t key)
{
    if (m->s)
        __builtin_prefetch(
            &m->s[(uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 32) & m->mask]);
}
/* Sets key -> ix (insert or overwrite). ix < FF__NOIX. */
void ff__idmap_put(ff__idmap *m, uint32_t key, uint32_t ix);
/* Removes key; no-op when absent. */
void ff__idmap_del(ff__idmap *m, uint32_t key);
/* Frees the slots; the map is empty and reusable afterwards. */
void ff__idmap_free(ff__idmap *m);

/*
 * The name map stores (hash, index) pairs; the names themselves live with the caller,
 * which passes name_of(ctx, ix) to resolve an index to its name on a hash match.
 */
typedef const char *(*ff__name_of_fn)(const void *ctx, uint32_t ix);

typedef struct ff__namemap {
    ff__idslot *s; /* key = hash of the name */
    uint32_t mask;
    uint32_t n;
} ff__namemap;

/* The index whose name equals name, or FF__NOIX. */
uint32_t ff__namemap_get(const ff__namemap *m, const char *name, ff__name_of_fn name_of,
                         const void *ctx);
/* Adds name -> ix; the name must not be present. */
void ff__namemap_put(ff__namemap *m, const char *name, uint32_t ix);
/* Removes the entry name -> ix; no-op when absent. */
void ff__namemap_del(ff__namemap *m, const char *name, uint32_t ix);
void ff__namemap_free(ff__namemap *m);

#endif /* FF_ENGINE_IDMAP_H */
