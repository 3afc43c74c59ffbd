/*
 * idmap.c -- open-addressing maps from u32 ids and from names to slot indexes
 * (contract in engine/idmap.h).
 *
 * Layout. One array of 2^k (key, val1) pairs; val1 = 0 marks an empty slot, so the key
 * space is the whole u32 range (DPU id 0 is legal). A key's home slot is the top k bits
 * of key * 2^64/phi (Fibonacci hashing); a collision probes the next slots, wrapping.
 * The table doubles when it would pass 3/4 full, so an unsuccessful probe is short on
 * average even for 10 million keys.
 *
 * Deletion shifts the following entries of the probe run back into the hole when their
 * home slot allows it (Knuth 6.4 algorithm R), so no tombstones accumulate.
 *
 * Both maps share the table code: the id map compares keys, the name map compares the
 * 32-bit hash of the name and then asks the caller for the name of the candidate index.
 */
#include "engine/idmap.h"

#include <string.h>

static uint32_t home(uint32_t key, uint32_t mask)
{
    uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & mask;
}

/* FNV-1a, folded through home() so similar names spread. */
static uint32_t name_hash(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    return h;
}

/* Inserts (key, val1) into a table known to have room and not to hold the pair. */
static void raw_insert(ff__idslot *s, uint32_t mask, uint32_t key, uint32_t val1)
{
    uint32_t i = home(key, mask);
    while (s[i].val1) i = (i + 1) & mask;
    s[i].key = key;
    s[i].val1 = val1;
}

static void grow_if_needed(ff__idslot **ps, uint32_t *pmask, uint32_t n)
{
    uint32_t slots = *ps ? *pmask + 1 : 0;
    if ((uint64_t)(n + 1) * 4 <= (uint64_t)slots * 3) return;
    uint32_t nslots = slots ? slots * 2 : 16;
    FF_ASSERT(nslots > slots);
    ff__idslot *ns = ff_xcalloc(nslots, sizeof(*ns));
    for (uint32_t i = 0; i < slots; i++)
        if ((*ps)[i].val1) raw_insert(ns, nslots - 1, (*ps)[i].key, (*ps)[i].val1);
    free(*ps);
    *ps = ns;
    *pmask = nslots - 1;
}

/* Empties slot i and shifts later entries of its run back (algorithm R). */
static void delete_at(ff__idslot *s, uint32_t mask, uint32_t i)
{
    uint32_t j = i;
    for (;;) {
        s[i].val1 = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (!s[j].val1) return;
            uint32_t h = home(s[j].key, mask);
            /* s[j] may move to i unless its home lies cyclically in (i, j]. */
            bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
            if (!stays) break;
        }
        s[i] = s[j];
        i = j;
    }
}

uint32_t ff__idmap_get(const ff__idmap *m, uint32_t key)
{
    if (!m->s) return FF__NOIX;
    for (uint32_t i = home(key, m->mask);; i = (i + 1) & m->mask) {
        if (!m->s[i].val1) return FF__NOIX;
        if (m->s[i].key == key) return m->s[i].val1 - 1;
    }
}

void ff__idmap_put(ff__idmap *m, uint32_t key, uint32_t ix)
{
    FF_ASSERT(ix < FF__NOIX);
    if (m->s) {
        for (uint32_t i = home(key, m->mask); m->s[i].val1; i = (i + 1) & m->mask) {
            if (m->s[i].key == key) {
                m->s[i].val1 = ix + 1;
                return;
            }
        }
    }
    grow_if_needed(&m->s, &m->mask, m->n);
    raw_insert(m->s, m->mask, key, ix + 1);
    m->n++;
}

void ff__idmap_del(ff__idmap *m, uint32_t key)
{
    if (!m->s) return;
    for (uint32_t i = home(key, m->mask); m->s[i].val1; i = (i + 1) & m->mask) {
        if (m->s[i].key == key) {
            delete_at(m->s, m->mask, i);
            m->n--;
            return;
        }
    }
}

void ff__idmap_free(ff__idmap *m)
{
    free(m->s);
    memset(m, 0, sizeof(*m));
}

uint32_t ff__namemap_get(const ff__namemap *m, const char *name, ff__name_of_fn name_of,
                         const void *ctx)
{
    if (!m->s) return FF__NOIX;
    uint32_t h = name_hash(name);
    for (uint32_t i = home(h, m->mask);; i = (i + 1) & m->mask) {
        if (!m->s[i].val1) return FF__NOIX;
        uint32_t ix = m->s[i].val1 - 1;
        if (m->s[i].key == h && strcmp(name_of(ctx, ix), name) == 0) return ix;
    }
}

void ff__namemap_put(ff__namemap *m, const char *name, uint32_t ix)
{
    FF_ASSERT(ix < FF__NOIX);
    grow_if_needed(&m->s, &m->mask, m->n);
    raw_insert(m->s, m->mask, name_hash(name), ix + 1);
    m->n++;
}

void ff__namemap_del(ff__namemap *m, const char *name, uint32_t ix)
{
    if (!m->s) return;
    uint32_t h = name_hash(name);
    for (uint32_t i = home(h, m->mask); m->s[i].val1; i = (i + 1) & m->mask) {
        if (m->s[i].key == h && m->s[i].val1 == ix + 1) {
            delete_at(m->s, m->mask, i);
            m->n--;
            return;
        }
    }
}

void ff__namemap_free(ff__namemap *m)
{
    free(m->s);
    memset(m, 0, sizeof(*m));
}
