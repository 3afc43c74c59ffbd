/*
 * test_idmap.c -- the id and name maps of engine/idmap.c against a brute-force model.
 */
#include "engine/idmap.h"

#include <criterion/criterion.h>
#include <string.h>

Test(idmap, empty_map_finds_nothing)
{
    ff__idmap m = {0};
    cr_assert_eq(ff__idmap_get(&m, 0), FF__NOIX);
    ff__idmap_del(&m, 7);
    ff__idmap_free(&m);
}

Test(idmap, put_get_overwrite_and_id_zero)
{
    ff__idmap m = {0};
    ff__idmap_put(&m, 0, 5);
    ff__idmap_put(&m, 42, 6);
    cr_assert_eq(ff__idmap_get(&m, 0), 5);
    cr_assert_eq(ff__idmap_get(&m, 42), 6);
    ff__idmap_put(&m, 42, 9);
    cr_assert_eq(ff__idmap_get(&m, 42), 9);
    cr_assert_eq(m.n, 2);
    ff__idmap_free(&m);
}

/* Random puts and deletes over a small key range (many collisions and wrapped runs)
 * must agree with a plain array at every step. */
Test(idmap, random_puts_and_deletes_match_a_model)
{
    enum { KEYS = 4096, STEPS = 200000 };
    uint32_t *model = malloc(KEYS * sizeof(*model));
    for (int i = 0; i < KEYS; i++) model[i] = FF__NOIX;
    ff__idmap m = {0};
    uint64_t x = 88172645463325252ull;
    uint32_t n = 0;
    for (int s = 0; s < STEPS; s++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t k = (uint32_t)(x % KEYS) * 2654435761u; /* spread over u32 */
        uint32_t slot = (uint32_t)(x % KEYS);
        if ((x >> 20) % 3 == 0) {
            if (model[slot] != FF__NOIX) n--;
            ff__idmap_del(&m, k);
            model[slot] = FF__NOIX;
        } else {
            if (model[slot] == FF__NOIX) n++;
            ff__idmap_put(&m, k, (uint32_t)s);
            model[slot] = (uint32_t)s;
        }
        if (s % 997 == 0)
            for (uint32_t i = 0; i < KEYS; i++)
                cr_assert_eq(ff__idmap_get(&m, i * 2654435761u), model[i]);
    }
    cr_assert_eq(m.n, n);
    ff__idmap_free(&m);
    free(model);
}

Test(idmap, scales_to_a_million_ids)
{
    ff__idmap m = {0};
    for (uint32_t i = 0; i < 1000000; i++) ff__idmap_put(&m, i * 7 + 1, i);
    for (uint32_t i = 0; i < 1000000; i += 1013) cr_assert_eq(ff__idmap_get(&m, i * 7 + 1), i);
    cr_assert_eq(ff__idmap_get(&m, 3), FF__NOIX);
    ff__idmap_free(&m);
}

static char names[64][16];
static const char *name_of(const void *ctx, uint32_t ix)
{
    (void)ctx;
    return names[ix];
}

Test(namemap, finds_renames_and_forgets_names)
{
    ff__namemap m = {0};
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof(names[i]), "space %d", i);
        ff__namemap_put(&m, names[i], (uint32_t)i);
    }
    for (int i = 0; i < 64; i++) cr_assert_eq(ff__namemap_get(&m, names[i], name_of, NULL), i);
    cr_assert_eq(ff__namemap_get(&m, "nope", name_of, NULL), FF__NOIX);
    ff__namemap_del(&m, names[10], 10);
    cr_assert_eq(ff__namemap_get(&m, "space 10", name_of, NULL), FF__NOIX);
    snprintf(names[10], sizeof(names[10]), "renamed");
    ff__namemap_put(&m, names[10], 10);
    cr_assert_eq(ff__namemap_get(&m, "renamed", name_of, NULL), 10);
    for (int i = 11; i < 64; i++) cr_assert_eq(ff__namemap_get(&m, names[i], name_of, NULL), i);
    cr_assert_eq(m.n, 64);
    ff__namemap_free(&m);
}
