/* Linear-probing hash table with backward-shift deletion: no tombstones, so
 * lookups stay short however many connections come and go. */
#include <errno.h>
#include <stdlib.h>

#include "table.h"

static inline size_t table_hash(uint64_t key) {
        /* ids are sequential; mix them so neighbours spread (splitmix64) */
        key ^= key >> 30;
        key *= 0xbf58476d1ce4e5b9ULL;
        key ^= key >> 27;
        key *= 0x94d049bb133111ebULL;
        key ^= key >> 31;
        return (size_t) key;
}

void table_free(struct table *t) {
        free(t->slots);
        t->slots = NULL;
        t->mask = 0;
        t->count = 0;
}

static void table_insert_slot(struct table_slot *slots, size_t mask, uint64_t key, void *value) {
        size_t i = table_hash(key) & mask;

        while (slots[i].key)
                i = (i + 1) & mask;
        slots[i].key = key;
        slots[i].value = value;
}

static int table_grow(struct table *t) {
        size_t cap = t->slots ? (t->mask + 1) * 2 : 64;
        struct table_slot *slots = calloc(cap, sizeof(*slots));

        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; t->slots && i <= t->mask; i++)
                if (t->slots[i].key)
                        table_insert_slot(slots, cap - 1, t->slots[i].key, t->slots[i].value);
        free(t->slots);
        t->slots = slots;
        t->mask = cap - 1;
        return 0;
}

static struct table_slot *table_find(const struct table *t, uint64_t key) {
        size_t i;

        if (!t->slots || key == 0)
                return NULL;
        for (i = table_hash(key) & t->mask; t->slots[i].key; i = (i + 1) & t->mask)
                if (t->slots[i].key == key)
                        return &t->slots[i];
        return NULL;
}

int table_put(struct table *t, uint64_t key, void *value) {
        if (key == 0)
                return -EINVAL;
        /* keep the load under 1/2 so probes stay short */
        if (!t->slots || (t->count + 1) * 2 > t->mask + 1) {
                int r = table_grow(t);
                if (r < 0)
                        return r;
        }
        if (table_find(t, key))
                return -EEXIST;
        table_insert_slot(t->slots, t->mask, key, value);
        t->count++;
        return 0;
}

void *table_get(const struct table *t, uint64_t key) {
        struct table_slot *s = table_find(t, key);
        return s ? s->value : NULL;
}

void *table_remove(struct table *t, uint64_t key) {
        struct table_slot *s = table_find(t, key);
        size_t hole, i;
        void *value;

        if (!s)
                return NULL;
        value = s->value;
        hole = (size_t) (s - t->slots);
        /* Shift later members of the probe run back into the hole, so no
         * lookup ever stops early at it. */
        for (i = (hole + 1) & t->mask; t->slots[i].key; i = (i + 1) & t->mask) {
                size_t home = table_hash(t->slots[i].key) & t->mask;
                /* move i to hole if home is not cyclically in (hole, i] */
                if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
                        t->slots[hole] = t->slots[i];
                        hole = i;
                }
        }
        t->slots[hole].key = 0;
        t->slots[hole].value = NULL;
        t->count--;
        return value;
}
