/* type = forward: backend lists, their resolution, and the pool of
 * backends the workers pick from. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "config.h"
#include "units.h"
#include "util.h"
#include "words.h"

static const char *const balance_names[_BALANCE_MAX] = {
        [BALANCE_ROUNDROBIN] = "roundrobin",
        [BALANCE_LEASTCONN] = "leastconn",
        [BALANCE_SOURCE] = "source",
};

static const char *const admin_names[_BACKEND_ADMIN_MAX] = {
        [BACKEND_ENABLED] = "enabled",
        [BACKEND_DRAIN] = "drain",
        [BACKEND_DISABLED] = "disabled",
};

static const char *const check_names[_CHECK_RESULT_MAX] = {
        [CHECK_NONE] = "none", [CHECK_OK] = "ok", [CHECK_REFUSED] = "refused",
        [CHECK_TIMEOUT] = "timeout", [CHECK_MISMATCH] = "mismatch",
};

const char *check_result_name(enum check_result r) {
        return r < _CHECK_RESULT_MAX ? check_names[r] : "?";
}

void check_spec_done(struct check_spec *c) {
        c->send = mfree(c->send);
        c->expect = mfree(c->expect);
}

int check_parse(const char *value, struct check_spec *c, const char **why) {
        char **w = NULL;
        int n = words_split(value, &w, why), r = 0;
        char *send = NULL, *expect = NULL;

        if (n < 0)
                return n;
        if (n == 1 && streq(w[0], "connect"))
                goto done;
        for (int i = 0; i < n; i += 2) {
                char **slot = streq(w[i], "send") ? &send : streq(w[i], "expect") ? &expect : NULL;

                if (!slot || i + 1 >= n || *slot || !*w[i + 1] || strlen(w[i + 1]) > CHECK_STRING_MAX) {
                        *why = "expected connect, or send STRING expect STRING (or expect STRING alone), each "
                               "string 1 to " STRINGIFY(CHECK_STRING_MAX) " bytes, quoted as exec=";
                        r = -EINVAL;
                        goto done;
                }
                *slot = w[i + 1];
                w[i + 1] = NULL;
        }
        if (!expect) {
                *why = "a check that sends must say what it expects back: send STRING expect STRING";
                r = -EINVAL;
        }
done:
        for (int i = 0; w && i < n; i++)
                free(w[i]);
        free(w);
        if (r < 0) {
                free(send);
                free(expect);
                return r;
        }
        check_spec_done(c);
        c->send = send;
        c->expect = expect;
        return 0;
}

void check_print(const struct check_spec *c, FILE *f) {
        if (!c->expect) {
                fputs(" connect", f);
                return;
        }
        if (c->send) {
                char *w[] = { (char *) "send", c->send, NULL };

                words_print(w, f);
        }
        {
                char *w[] = { (char *) "expect", c->expect, NULL };

                words_print(w, f);
        }
}

const char *balance_name(enum balance b) {
        return b < _BALANCE_MAX ? balance_names[b] : "?";
}

int balance_from_name(const char *s) {
        for (int b = 0; b < _BALANCE_MAX; b++)
                if (streq(s, balance_names[b]))
                        return b;
        return -EINVAL;
}

const char *backend_admin_name(enum backend_admin a) {
        return a < _BACKEND_ADMIN_MAX ? admin_names[a] : "?";
}

/* HOST:PORT: a numeric address with a port, or a name (letters, digits,
 * '-', '.', '_') and a port, for backends_resolve(). */
static int backend_word(const char *w, struct backend_spec *b, const char **why) {
        const char *colon = strrchr(w, ':');
        union sockaddr_in46 a;
        uint64_t port;
        size_t host_len;

        *b = (struct backend_spec) {};
        if (addr_parse(w, &a) == 0) {
                if (addr_port(&a) == 0) {
                        *why = "a backend needs a port, such as 10.0.0.5:5432 or [2001:db8::5]:5432";
                        return -EINVAL;
                }
                b->addr = a;
                b->resolved = true;
        } else {
                if (!colon || colon == w || parse_uint(colon + 1, 65535, &port) < 0 || port == 0) {
                        *why = "expected HOST:PORT, such as 10.0.0.5:5432, [2001:db8::5]:5432 or db1:5432";
                        return -EINVAL;
                }
                host_len = (size_t) (colon - w);
                if (host_len > 253 || w[0] == '[' || w[0] == '-' || w[0] == '.' ||
                    strspn(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") != host_len) {
                        *why = "expected HOST:PORT, HOST a numeric address or a host name";
                        return -EINVAL;
                }
        }
        b->text = strdup(w);
        return b->text ? 0 : -ENOMEM;
}

void backends_free(struct backend_spec *list, size_t n) {
        for (size_t i = 0; list && i < n; i++)
                free(list[i].text);
        free(list);
}

int backends_parse(const char *value, struct backend_spec **list, size_t *n, const char **why, const char **bad) {
        _cleanup_free_ char *copy = strdup(value);
        char *save = NULL;
        int r = 0;

        *bad = NULL;
        if (!copy)
                return -ENOMEM;
        for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                struct backend_spec b, *grown;

                if (*n >= BACKENDS_MAX) {
                        *why = "at most " STRINGIFY(BACKENDS_MAX) " backends per service";
                        return -EINVAL;
                }
                r = backend_word(w, &b, why);
                if (r < 0) {
                        static __thread char word[128];

                        snprintf(word, sizeof(word), "%s", w);
                        *bad = word;
                        return r;
                }
                grown = reallocarray(*list, *n + 1, sizeof(**list));
                if (!grown) {
                        free(b.text);
                        return -ENOMEM;
                }
                *list = grown;
                (*list)[(*n)++] = b;
        }
        if (*n == 0) {
                *why = "expected one or more HOST:PORT, such as 10.0.0.5:5432 10.0.0.6:5432";
                return -EINVAL;
        }
        return 0;
}

int backends_resolve(struct backend_spec *list, size_t n, char *err, size_t err_size) {
        for (size_t i = 0; i < n; i++) {
                struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res = NULL;
                _cleanup_free_ char *host = NULL;
                const char *colon;
                int r;

                if (list[i].resolved)
                        continue;
                colon = strrchr(list[i].text, ':');
                host = strndup(list[i].text, (size_t) (colon - list[i].text));
                if (!host)
                        return -ENOMEM;
                r = getaddrinfo(host, colon + 1, &hints, &res);
                if (r != 0 || !res) {
                        snprintf(err, err_size, "cannot resolve %s: %s", host,
                                 r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
                        return -EHOSTUNREACH;
                }
                memcpy(&list[i].addr, res->ai_addr, res->ai_addrlen);
                addr_normalize(&list[i].addr);
                list[i].resolved = true;
                freeaddrinfo(res);
        }
        return 0;
}

static struct backend_state *state_ref(struct backend_state *s) {
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
        return s;
}

static void state_unref(struct backend_state *s) {
        if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
                free(s);
}

struct backend_pool *backend_pool_new(const struct service_config *s, const struct backend_pool *old) {
        const struct backend_spec *specs = s->backends;
        size_t n = s->n_backends;
        struct backend_pool *p = calloc(1, sizeof(*p) + n * sizeof(p->b[0]));

        if (!p)
                return NULL;
        p->refs = 1;
        p->balance = s->balance;
        p->connect_timeout_usec = s->connect_timeout_usec;
        p->proxy_protocol = s->proxy_protocol;
        p->splice = s->splice;
        p->check = (struct check_spec) { .interval_usec = s->check.interval_usec, .rise = s->check.rise,
                                         .fall = s->check.fall };
        p->service = strdup(service_config_name(s));
        if (!p->service || (s->check.send && !(p->check.send = strdup(s->check.send))) ||
            (s->check.expect && !(p->check.expect = strdup(s->check.expect))))
                return backend_pool_unref(p);
        p->n = n;
        for (size_t i = 0; i < n; i++) {
                struct backend *b = &p->b[i];

                b->addr = specs[i].addr;
                b->text = strdup(specs[i].text);
                for (size_t k = 0; old && k < old->n && !b->st; k++)
                        if (addr_equal(&old->b[k].addr, &b->addr))
                                b->st = state_ref(old->b[k].st);
                if (!b->st && (b->st = calloc(1, sizeof(*b->st)))) {
                        b->st->refs = 1;
                        b->st->up = 1; /* until a connect or a check says otherwise */
                }
                if (!b->text || !b->st) {
                        p->n = i + 1;
                        return backend_pool_unref(p);
                }
        }
        return p;
}

struct backend_pool *backend_pool_ref(struct backend_pool *p) {
        if (p)
                __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
        return p;
}

struct backend_pool *backend_pool_unref(struct backend_pool *p) {
        if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        for (size_t i = 0; i < p->n; i++) {
                free(p->b[i].text);
                state_unref(p->b[i].st);
        }
        free(p->service);
        check_spec_done(&p->check);
        free(p);
        return NULL;
}

/* Up (a failed connect takes it down, its checks bring it back), and
 * taking new clients. */
static bool usable(const struct backend *b, uint64_t now) {
        const struct backend_state *s = b->st;

        if (__atomic_load_n(&s->admin, __ATOMIC_RELAXED) != BACKEND_ENABLED)
                return false;
        return __atomic_load_n(&s->up, __ATOMIC_RELAXED);
}

bool backend_any_usable(struct backend_pool *p, uint64_t now) {
        for (size_t i = 0; i < p->n; i++)
                if (usable(&p->b[i], now))
                        return true;
        return false;
}

static uint64_t addr_hash(const union sockaddr_in46 *a) {
        const uint8_t *k = a->sa.sa_family == AF_INET ? (const uint8_t *) &a->in.sin_addr
                                                       : (const uint8_t *) &a->in6.sin6_addr;
        size_t len = a->sa.sa_family == AF_INET ? 4 : 16;
        uint64_t h = 1469598103934665603ULL; /* FNV-1a: the address only, not the port */

        for (size_t i = 0; i < len; i++)
                h = (h ^ k[i]) * 1099511628211ULL;
        return h;
}

int backend_pick(struct backend_pool *p, const union sockaddr_in46 *client, uint64_t tried, uint64_t now) {
        size_t n = p->n, start;
        int best = -1;

        if (n == 0)
                return -1;
        switch (p->balance) {
        case BALANCE_SOURCE:
                /* the same client to the same backend while it is up; the
                 * next usable one in the list when it is not */
                start = addr_hash(client) % n;
                break;
        default:
                start = __atomic_fetch_add(&p->rr, 1, __ATOMIC_RELAXED) % n;
        }
        for (size_t k = 0; k < n; k++) {
                size_t i = (start + k) % n;

                if ((tried >> i) & 1 || !usable(&p->b[i], now))
                        continue;
                if (p->balance != BALANCE_LEASTCONN)
                        return (int) i;
                if (best < 0 || __atomic_load_n(&p->b[i].st->open, __ATOMIC_RELAXED) <
                                        __atomic_load_n(&p->b[best].st->open, __ATOMIC_RELAXED))
                        best = (int) i;
        }
        return best;
}

void backend_failed(struct backend_pool *p, size_t i, uint64_t now) {
        struct backend_state *s = p->b[i].st;

        __atomic_add_fetch(&s->failed, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&s->up, 0, __ATOMIC_RELAXED);
}

void backend_connected(struct backend_pool *p, size_t i) {
        struct backend_state *s = p->b[i].st;

        __atomic_add_fetch(&s->total, 1, __ATOMIC_RELAXED);
}
