/* The connection table: 64-bit id -> pointer, open addressing, so a lookup
 * by id never scans. Owned by one loop; no locking. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct table_slot {
        uint64_t key; /* 0: empty */
        void *value;
};

struct table {
        struct table_slot *slots;
        size_t mask; /* capacity - 1, capacity a power of two */
        size_t count;
};

void table_free(struct table *t);
/* Keys are never 0. -ENOMEM, -EEXIST, or 0. */
int table_put(struct table *t, uint64_t key, void *value);
void *table_get(const struct table *t, uint64_t key);
/* Returns the value removed, or NULL. */
void *table_remove(struct table *t, uint64_t key);
