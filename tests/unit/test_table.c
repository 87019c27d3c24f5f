/* Unit tests for daemon/table: the id -> connection hash table, above all
 * that backward-shift deletion never loses a key that probed past a hole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

/* Values are derived from keys so a lookup that returns the wrong slot shows. */
static void *val(uint64_t key) {
        return (void *) (uintptr_t) (key * 2 + 1);
}

/* xorshift64*: a fixed sequence, so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Every occupied slot's key is reachable from its home without crossing an
 * empty slot, and count matches the slots in use. */
static void check_invariants(const struct table *t) {
        size_t used = 0;

        if (!t->slots) {
                assert_int_equal(t->count, 0);
                return;
        }
        for (size_t i = 0; i <= t->mask; i++) {
                if (!t->slots[i].key)
                        continue;
                used++;
                assert_ptr_equal(table_get(t, t->slots[i].key), t->slots[i].value);
        }
        assert_int_equal(used, t->count);
        /* at most half full */
        assert_true(t->count * 2 <= t->mask + 1);
}

static void test_basic(void **state) {
        struct table t = { 0 };
        int a, b;

        assert_null(table_get(&t, 1));
        assert_null(table_remove(&t, 1));
        assert_int_equal(t.count, 0);

        assert_int_equal(table_put(&t, 1, &a), 0);
        assert_int_equal(table_put(&t, 2, &b), 0);
        assert_int_equal(t.count, 2);
        assert_ptr_equal(table_get(&t, 1), &a);
        assert_ptr_equal(table_get(&t, 2), &b);
        assert_null(table_get(&t, 3));

        /* duplicates are refused and do not replace */
        assert_int_equal(table_put(&t, 1, &b), -EEXIST);
        assert_ptr_equal(table_get(&t, 1), &a);
        assert_int_equal(t.count, 2);

        /* key 0 means "empty" and is refused everywhere */
        assert_int_equal(table_put(&t, 0, &a), -EINVAL);
        assert_null(table_get(&t, 0));
        assert_null(table_remove(&t, 0));
        assert_int_equal(t.count, 2);

        assert_ptr_equal(table_remove(&t, 1), &a);
        assert_int_equal(t.count, 1);
        assert_null(table_get(&t, 1));
        assert_null(table_remove(&t, 1));
        assert_int_equal(t.count, 1);
        assert_ptr_equal(table_get(&t, 2), &b);

        /* a removed key can come back */
        assert_int_equal(table_put(&t, 1, &b), 0);
        assert_ptr_equal(table_get(&t, 1), &b);
        assert_int_equal(t.count, 2);

        /* the largest key is an ordinary key */
        assert_int_equal(table_put(&t, UINT64_MAX, &a), 0);
        assert_ptr_equal(table_get(&t, UINT64_MAX), &a);
        assert_ptr_equal(table_remove(&t, UINT64_MAX), &a);
        check_invariants(&t);

        table_free(&t);
        assert_null(t.slots);
        assert_int_equal(t.count, 0);
        assert_null(table_get(&t, 2));
        table_free(&t); /* twice is harmless */

        /* usable again after table_free */
        assert_int_equal(table_put(&t, 5, &a), 0);
        assert_ptr_equal(table_get(&t, 5), &a);
        table_free(&t);
}

static void test_null_value(void **state) {
        struct table t = { 0 };

        /* Regression (fixed): table_put detects duplicates with table_get(), which cannot tell a
         * stored NULL from a missing key, so a key whose value is NULL is inserted
         * twice (count 2, two slots) instead of failing with -EEXIST. */
        assert_int_equal(table_put(&t, 7, NULL), 0);
        assert_int_equal(table_put(&t, 7, NULL), -EEXIST);
        assert_int_equal(t.count, 1);
        table_free(&t);
}

static void test_growth(void **state) {
        struct table t = { 0 };
        const uint64_t n = 50000;

        for (uint64_t k = 1; k <= n; k++) {
                assert_int_equal(table_put(&t, k, val(k)), 0);
                assert_int_equal(t.count, k);
                /* the table never fills past half, so probes stay short */
                assert_true(t.count * 2 <= t.mask + 1);
        }
        for (uint64_t k = 1; k <= n; k++)
                assert_ptr_equal(table_get(&t, k), val(k));
        assert_null(table_get(&t, n + 1));
        for (uint64_t k = 1; k <= n; k++)
                assert_int_equal(table_put(&t, k, val(k)), -EEXIST);
        assert_int_equal(t.count, n);
        check_invariants(&t);

        for (uint64_t k = 1; k <= n; k++) {
                assert_ptr_equal(table_remove(&t, k), val(k));
                assert_int_equal(t.count, n - k);
        }
        for (size_t i = 0; i <= t.mask; i++)
                assert_int_equal(t.slots[i].key, 0);
        table_free(&t);
}

/* The brief's case: 10000 keys, every third removed, the rest all found. */
static void test_remove_every_third(void **state) {
        struct table t = { 0 };
        const size_t n = 10000;
        uint64_t *keys = malloc(n * sizeof(*keys));

        assert_non_null(keys);
        for (size_t i = 0; i < n; i++) {
                uint64_t k;
                do
                        k = rng();
                while (k == 0 || table_get(&t, k));
                keys[i] = k;
                assert_int_equal(table_put(&t, k, val(k)), 0);
        }
        assert_int_equal(t.count, n);

        for (size_t i = 0; i < n; i += 3)
                assert_ptr_equal(table_remove(&t, keys[i]), val(keys[i]));
        assert_int_equal(t.count, n - (n + 2) / 3);
        for (size_t i = 0; i < n; i++) {
                if (i % 3 == 0)
                        assert_null(table_get(&t, keys[i]));
                else
                        assert_ptr_equal(table_get(&t, keys[i]), val(keys[i]));
        }
        check_invariants(&t);

        /* and the same with sequential ids, as tcpd hands them out */
        table_free(&t);
        for (size_t i = 1; i <= n; i++)
                assert_int_equal(table_put(&t, i, val(i)), 0);
        for (size_t i = 1; i <= n; i += 3)
                assert_ptr_equal(table_remove(&t, i), val(i));
        for (size_t i = 1; i <= n; i++) {
                if ((i - 1) % 3 == 0)
                        assert_null(table_get(&t, i));
                else
                        assert_ptr_equal(table_get(&t, i), val(i));
        }
        assert_int_equal(t.count, n - (n + 2) / 3);
        check_invariants(&t);
        table_free(&t);
        free(keys);
}

/* Removal in random order, checking everything else after each step. */
static void test_remove_random_order(void **state) {
        struct table t = { 0 };
        const size_t n = 3000;
        uint64_t *keys = malloc(n * sizeof(*keys));

        assert_non_null(keys);
        for (size_t i = 0; i < n; i++) {
                keys[i] = i + 1000;
                assert_int_equal(table_put(&t, keys[i], val(keys[i])), 0);
        }
        /* Fisher-Yates */
        for (size_t i = n - 1; i > 0; i--) {
                size_t j = (size_t) (rng() % (i + 1));
                uint64_t tmp = keys[i];
                keys[i] = keys[j];
                keys[j] = tmp;
        }
        for (size_t i = 0; i < n; i++) {
                assert_ptr_equal(table_remove(&t, keys[i]), val(keys[i]));
                assert_int_equal(t.count, n - i - 1);
                assert_null(table_get(&t, keys[i]));
                if (i % 97 == 0 || n - i < 50) {
                        for (size_t j = i + 1; j < n; j++)
                                assert_ptr_equal(table_get(&t, keys[j]), val(keys[j]));
                        check_invariants(&t);
                }
        }
        assert_int_equal(t.count, 0);
        table_free(&t);
        free(keys);
}

/* Where a key lands in an empty table of 64 slots: its home slot. Found by
 * probing the table itself, so the test does not copy the hash. */
static size_t home64(uint64_t key) {
        struct table t = { 0 };
        size_t home = SIZE_MAX;

        assert_int_equal(table_put(&t, key, val(key)), 0);
        assert_int_equal(t.mask, 63);
        for (size_t i = 0; i <= t.mask; i++)
                if (t.slots[i].key == key)
                        home = i;
        table_free(&t);
        assert_true(home != SIZE_MAX);
        return home;
}

/* A probe run that wraps from the last slot to the first, with members whose
 * homes are on both sides of the wrap; then removals in every position. */
static void test_wraparound_cluster(void **state) {
        enum { N_HIGH = 10, N_LOW = 6, N_OTHER = 8 };
        uint64_t keys[N_HIGH + N_LOW + N_OTHER];
        size_t n_high = 0, n_low = 0, n_other = 0;

        for (uint64_t k = 1; n_high < N_HIGH || n_low < N_LOW || n_other < N_OTHER; k++) {
                size_t h = home64(k);

                assert_true(k < 1000000);
                if (h >= 61 && n_high < N_HIGH)
                        keys[n_high++] = k;
                else if (h <= 2 && n_low < N_LOW)
                        keys[N_HIGH + n_low++] = k;
                else if (h > 2 && h < 61 && n_other < N_OTHER)
                        keys[N_HIGH + N_LOW + n_other++] = k;
        }

        /* Remove each key in turn from a fresh table holding all of them,
         * then pairs, so every position in the run (before, at and after the
         * wrap) is a hole once. */
        for (size_t first = 0; first < sizeof(keys) / sizeof(keys[0]); first++) {
                for (size_t second = first; second < sizeof(keys) / sizeof(keys[0]); second++) {
                        struct table t = { 0 };

                        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                                assert_int_equal(table_put(&t, keys[i], val(keys[i])), 0);
                        /* still the 64-slot table, and the run wraps */
                        assert_int_equal(t.mask, 63);
                        assert_true(t.slots[63].key != 0 && t.slots[0].key != 0);

                        assert_ptr_equal(table_remove(&t, keys[first]), val(keys[first]));
                        if (second != first)
                                assert_ptr_equal(table_remove(&t, keys[second]), val(keys[second]));
                        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                                if (i == first || i == second)
                                        assert_null(table_get(&t, keys[i]));
                                else
                                        assert_ptr_equal(table_get(&t, keys[i]), val(keys[i]));
                        }
                        assert_int_equal(t.count, sizeof(keys) / sizeof(keys[0]) - (second != first ? 2 : 1));
                        check_invariants(&t);
                        table_free(&t);
                }
        }
}

/* Ids handed out in sequence while old ones close: a sliding window, as a
 * busy server sees. */
static void test_sliding_window(void **state) {
        struct table t = { 0 };
        const uint64_t window = 700;

        for (uint64_t k = 1; k <= 40000; k++) {
                assert_int_equal(table_put(&t, k, val(k)), 0);
                if (k > window) {
                        assert_ptr_equal(table_remove(&t, k - window), val(k - window));
                        assert_int_equal(t.count, window);
                }
                if (k % 5000 == 0) {
                        for (uint64_t j = k > window ? k - window + 1 : 1; j <= k; j++)
                                assert_ptr_equal(table_get(&t, j), val(j));
                        check_invariants(&t);
                }
        }
        assert_null(table_get(&t, 40000 - window));
        table_free(&t);
}

/* Random puts and removes against a plain array of flags. */
static void test_random_model(void **state) {
        enum { RANGE = 4096 };
        struct table t = { 0 };
        static uint8_t present[RANGE + 1];
        size_t count = 0;

        memset(present, 0, sizeof(present));
        for (unsigned step = 0; step < 200000; step++) {
                uint64_t k = 1 + rng() % RANGE;

                if (rng() % 2) {
                        int r = table_put(&t, k, val(k));
                        assert_int_equal(r, present[k] ? -EEXIST : 0);
                        if (!present[k])
                                count++;
                        present[k] = 1;
                } else {
                        void *v = table_remove(&t, k);
                        if (present[k]) {
                                assert_ptr_equal(v, val(k));
                                count--;
                        } else
                                assert_null(v);
                        present[k] = 0;
                }
                assert_int_equal(t.count, count);
                if (step % 20000 == 0) {
                        for (uint64_t j = 1; j <= RANGE; j++)
                                if (present[j])
                                        assert_ptr_equal(table_get(&t, j), val(j));
                                else
                                        assert_null(table_get(&t, j));
                        check_invariants(&t);
                }
        }
        table_free(&t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_basic),
                cmocka_unit_test(test_null_value),
                cmocka_unit_test(test_growth),
                cmocka_unit_test(test_remove_every_third),
                cmocka_unit_test(test_remove_random_order),
                cmocka_unit_test(test_wraparound_cluster),
                cmocka_unit_test(test_sliding_window),
                cmocka_unit_test(test_random_model),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
