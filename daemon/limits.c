/* Admission: allow/deny, max_connections, and per-source limits. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "limits.h"
#include "loop.h"

static const char *const refusal_names[_REFUSE_MAX] = {
        [ADMIT] = "admitted",
        [REFUSE_DENY] = "deny",
        [REFUSE_NOT_ALLOWED] = "allow",
        [REFUSE_MAX] = "max_connections",
        [REFUSE_PER_SOURCE] = "max_connections_per_source",
        [REFUSE_RATE] = "max_connection_rate",
        [REFUSE_NO_MEMORY] = "no_memory",
        [REFUSE_SETTINGS] = "settings",
        [REFUSE_SPAWN] = "spawn",
        [REFUSE_NO_BACKEND] = "no_backend",
        [REFUSE_PROXY] = "proxy",
        [REFUSE_FD_LIMIT] = "fd_limit",
};

const char *refusal_name(enum refusal r) {
        return r < _REFUSE_MAX ? refusal_names[r] : "?";
}

static bool cidr_list_match(const struct cidr *list, size_t n, const union sockaddr_in46 *a) {
        for (size_t i = 0; i < n; i++)
                if (cidr_match(&list[i], a))
                        return true;
        return false;
}

static uint64_t source_key(const union sockaddr_in46 *a, unsigned prefix6) {
        uint64_t h = 1469598103934665603ULL; /* FNV-1a over family and prefix */
        uint8_t b[17] = { 0 };
        size_t n;

        if (a->sa.sa_family == AF_INET) {
                b[0] = 4;
                memcpy(b + 1, &a->in.sin_addr, 4);
                n = 5;
        } else {
                b[0] = 6;
                memcpy(b + 1, &a->in6.sin6_addr, 16);
                for (unsigned bit = prefix6; bit < 128; bit++)
                        b[1 + bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
                n = 17;
        }
        for (size_t i = 0; i < n; i++)
                h = (h ^ b[i]) * 1099511628211ULL;
        return h | 1;
}

/* A service with its own per-source limits counts its clients apart: the
 * key of (address, service) for it, the address alone for the others. */
static uint64_t source_key_for(const struct loop_settings *st, const union sockaddr_in46 *a, unsigned svc) {
        uint64_t h = source_key(a, st->source_prefix_ipv6);
        const struct service_limits *sl = &st->svc_limits[svc];

        if (sl->has_per_source || sl->has_rate)
                h = ((h ^ (svc + 1)) * 1099511628211ULL) | 1;
        return h;
}

/* Token bucket: the source's rate per minute, with its burst (set by the
 * service that admitted it last: its own, or [tcpd]'s). */
static void refill(const struct loop *l, struct source *s) {
        uint64_t rate = s->rate, cap = (uint64_t) s->burst * 1000, add;

        if (!rate)
                return;
        /* Sources are shared by every worker, and each worker's clock is
         * the one it read at its last wake-up: another worker may have
         * refilled at a later instant than this one's l->now. Such an older
         * clock adds nothing (unsigned, it would have filled the bucket). */
        if (l->now <= s->refilled)
                return;
        add = (l->now - s->refilled) * rate / 60000; /* usec * per-min -> milli */
        if (add == 0)
                return;
        s->tokens_milli = s->tokens_milli + add >= cap ? (uint32_t) cap : (uint32_t) (s->tokens_milli + add);
        s->refilled = l->now;
}

/* max_connections across every worker: reserve a place before admitting,
 * so two workers accepting at once cannot both take the last one. */
static bool open_reserve(struct loop *l, unsigned max) {
        uint64_t n = __atomic_load_n(&l->shared->open, __ATOMIC_RELAXED);

        do {
                if (max && n >= max)
                        return false;
        } while (!__atomic_compare_exchange_n(&l->shared->open, &n, n + 1, false, __ATOMIC_RELAXED,
                                              __ATOMIC_RELAXED));
        return true;
}

/* A service's own max_connections: the same reservation, on its count. */
static bool svc_reserve(struct loop *l, unsigned svc, unsigned max) {
        uint64_t *open = &l->shared->svc_open[svc], n = __atomic_load_n(open, __ATOMIC_RELAXED);

        do {
                if (max && n >= max)
                        return false;
        } while (!__atomic_compare_exchange_n(open, &n, n + 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
        return true;
}

void limits_open_add(struct loop *l, unsigned svc) {
        __atomic_add_fetch(&l->shared->open, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&l->shared->svc_open[svc], 1, __ATOMIC_RELAXED);
}

void limits_open_sub(struct loop *l, unsigned svc) {
        __atomic_sub_fetch(&l->shared->open, 1, __ATOMIC_RELAXED);
        __atomic_sub_fetch(&l->shared->svc_open[svc], 1, __ATOMIC_RELAXED);
}

static struct source *source_get(struct loop *l, uint64_t key, unsigned svc) {
        struct table *t = &l->shared->sources;
        struct source *s = table_get(t, key);

        if (s)
                return s;
        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->key = key;
        s->rate = svc_rate(&l->settings, svc);
        s->burst = svc_burst(&l->settings, svc);
        s->tokens_milli = s->burst * 1000;
        s->refilled = l->now;
        if (table_put(t, key, s) < 0) {
                free(s);
                return NULL;
        }
        return s;
}

static enum refusal source_admit(struct loop *l, const union sockaddr_in46 *peer, unsigned svc,
                                 struct source **src) {
        const struct loop_settings *st = &l->settings;
        struct source *s = source_get(l, source_key_for(st, peer, svc), svc);
        unsigned per_source = svc_per_source(st, svc);

        if (!s)
                return REFUSE_NO_MEMORY;
        if (per_source && s->open >= per_source)
                return REFUSE_PER_SOURCE;
        /* the limits in force now (a reload may have changed them) */
        s->rate = svc_rate(st, svc);
        s->burst = svc_burst(st, svc);
        if (s->rate) {
                refill(l, s);
                if (s->tokens_milli < 1000)
                        return REFUSE_RATE;
                s->tokens_milli -= 1000;
        }
        s->open++;
        *src = s;
        return ADMIT;
}

enum refusal limits_admit(struct loop *l, const union sockaddr_in46 *peer, unsigned svc, struct source **src) {
        const struct loop_settings *st = &l->settings;
        const struct service_limits *sl = &st->svc_limits[svc];
        const struct cidr *allow = sl->has_allow ? sl->allow : st->allow, *deny = sl->has_deny ? sl->deny : st->deny;
        size_t n_allow = sl->has_allow ? sl->n_allow : st->n_allow, n_deny = sl->has_deny ? sl->n_deny : st->n_deny;
        enum refusal why;

        *src = NULL;
        if (st->refuse_all)
                return REFUSE_SETTINGS;
        /* deny wins over allow: a denied address is refused even if an
         * allow= prefix also matches it; a service's own lists replace
         * [tcpd]'s for it */
        if (n_deny && cidr_list_match(deny, n_deny, peer))
                return REFUSE_DENY;
        if (n_allow && !cidr_list_match(allow, n_allow, peer))
                return REFUSE_NOT_ALLOWED;
        if (!open_reserve(l, st->max_connections))
                return REFUSE_MAX;
        /* the service's own maximum, besides the whole daemon's */
        if (!svc_reserve(l, svc, sl->has_max ? sl->max_connections : 0)) {
                __atomic_sub_fetch(&l->shared->open, 1, __ATOMIC_RELAXED);
                return REFUSE_MAX;
        }
        if (!svc_per_source(st, svc) && !svc_rate(st, svc))
                return ADMIT;

        /* Sources are shared by the workers (one client's connections land
         * on any of them); the lock is taken only while a per-source limit
         * is set, and only at accept and close. */
        pthread_mutex_lock(&l->shared->sources_lock);
        why = source_admit(l, peer, svc, src);
        pthread_mutex_unlock(&l->shared->sources_lock);
        if (why != ADMIT)
                limits_open_sub(l, svc);
        return why;
}

void limits_release(struct loop *l, struct source *src) {
        if (!src)
                return;
        pthread_mutex_lock(&l->shared->sources_lock);
        if (src->open)
                src->open--;
        pthread_mutex_unlock(&l->shared->sources_lock);
}

void limits_sweep(struct loop *l) {
        struct table *t = &l->shared->sources;

        /* O(sources), once every few seconds: entries with no connection and
         * a full bucket carry no information */
        pthread_mutex_lock(&l->shared->sources_lock);
        for (size_t i = 0; t->slots && i <= t->mask; i++) {
                struct source *s = t->slots[i].value;

                if (!t->slots[i].key || s->open)
                        continue;
                refill(l, s);
                if (!s->rate || s->tokens_milli >= s->burst * 1000) {
                        table_remove(t, s->key);
                        free(s);
                        i--; /* backward shift may have moved another entry here */
                }
        }
        pthread_mutex_unlock(&l->shared->sources_lock);
}

void limits_rebuild(struct loop *l) {
        const struct loop_settings *st = &l->settings;

        /* Per-source limits (or their grouping) changed: move each of this
         * loop's connections from the source it counted for to the one it
         * counts for now. Each loop does this for its own connections, in
         * any order; entries left with none are swept later. */
        pthread_mutex_lock(&l->shared->sources_lock);
        for (struct conn *c = l->head; c; c = c->next) {
                bool track = svc_per_source(st, c->service) || svc_rate(st, c->service);

                if (c->src && c->src->open)
                        c->src->open--;
                c->src = track ? source_get(l, source_key_for(st, &c->peer, c->service), c->service) : NULL;
                if (c->src)
                        c->src->open++;
        }
        pthread_mutex_unlock(&l->shared->sources_lock);
}

void limits_shared_done(struct loop_shared *sh) {
        struct table *t = &sh->sources;

        for (size_t i = 0; t->slots && i <= t->mask; i++)
                if (t->slots[i].key)
                        free(t->slots[i].value);
        table_free(t);
}
