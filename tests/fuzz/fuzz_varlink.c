/* libFuzzer target for the control protocol: bytes as a client sends them,
 * through lib/varlink's framing and parsing, to the reply bytes tcpd would
 * send and tcpctl would parse back. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tcpd/protocol.h"
#include "varlink.h"

/* tcpctl accepts replies this large; an echoed method name and parameters
 * can make a reply bigger than the call was. */
#define CLIENT_MAX (16 * 1024 * 1024)
#define MAX_EXPECTED 8
#define MAX_CUTS 4

/* Whatever the fuzzer finds that is not a sanitizer report ends here, so
 * the message says which rule broke before libFuzzer saves the input. */
#define check(cond)                                                                                    \
        do {                                                                                           \
                if (!(cond)) {                                                                         \
                        fprintf(stderr, "fuzz_varlink: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                                #cond);                                                                \
                        abort();                                                                       \
                }                                                                                      \
        } while (0)

/* A reply we queued, as the client must read it back. */
struct expected {
        char *error; /* NULL for a reply */
        json_t *params;
        bool continues;
};

/* The two ends of one control connection, without the socket between. */
struct conn {
        struct vl_buf in;     /* server: what the client sent */
        struct vl_buf out;    /* server: replies not yet sent */
        struct vl_buf client; /* client: replies received */
        struct expected exp[MAX_EXPECTED];
        size_t n_exp;
        uint64_t rng;
        bool closing;
};

/* Split points and write sizes come from the input itself, so every run of
 * an input is the same run and a saved crash replays. */
static uint64_t hash_bytes(const uint8_t *p, size_t n) {
        uint64_t h = 0xcbf29ce484222325ULL;

        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 0x100000001b3ULL;
        return h;
}

static uint64_t next_rand(uint64_t *s) {
        /* xorshift64: enough to vary chunk sizes, and never stuck at 0 */
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void expect(struct conn *c, const char *error, json_t *params, bool continues) {
        check(c->n_exp < MAX_EXPECTED);
        c->exp[c->n_exp++] = (struct expected) {
                .error = error ? strdup(error) : NULL,
                .params = params ? json_incref(params) : json_object(),
                .continues = continues,
        };
        check(c->exp[c->n_exp - 1].params && (!error || c->exp[c->n_exp - 1].error));
}

static void expected_clear(struct conn *c) {
        for (size_t i = 0; i < c->n_exp; i++) {
                free(c->exp[i].error);
                json_decref(c->exp[i].params);
        }
        c->n_exp = 0;
}

/* The server side: queue a reply and remember what the client must see. A
 * failed put means out of memory, which tcpd answers by closing. */
static void reply(struct conn *c, json_t *params, bool continues) {
        expect(c, NULL, params, continues);
        if (vl_put_reply(&c->out, params, continues) < 0)
                c->closing = true;
}

static void reply_error(struct conn *c, const char *error, json_t *params) {
        expect(c, error, params, false);
        if (vl_put_error(&c->out, error, params) < 0)
                c->closing = true;
}

/* vl_param's contract, for one member and every type it can be asked for. */
static void check_param(json_t *obj, const char *key) {
        static const json_type types[] = { JSON_OBJECT, JSON_ARRAY, JSON_STRING, JSON_INTEGER,
                                           JSON_REAL,   JSON_TRUE,  JSON_FALSE,  JSON_NULL };
        json_t *v = json_object_get(obj, key);

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                json_t *out = (json_t *) 1;
                int r = vl_param(obj, key, types[i], &out);

                if (!v || json_is_null(v)) {
                        /* absent and null read the same: not given */
                        check(r == 0 && out == NULL);
                } else if (json_typeof(v) == types[i] || (types[i] == JSON_TRUE && json_is_boolean(v))) {
                        check(r == 0 && out == v);
                } else
                        check(r == -EINVAL && out == NULL);
        }
}

static void check_params(json_t *params) {
        const char *key;
        json_t *v;

        check(json_is_object(params));
        json_object_foreach(params, key, v)
                check_param(params, key);
        /* the names tcpd's methods read, present or not */
        check_param(params, "interface");
        check_param(params, "peer");
        check_param(params, "ids");
        check_param(params, "all");
        check_param(params, "no such parameter");
}

/* The client side of a call: tcpctl's vl_put_call must give back the same
 * call when parsed, or tcpd would see something other than was meant. */
static void check_call_round_trip(const struct vl_call *call) {
        struct vl_buf b = { 0 };
        struct vl_call again;
        const char *why;
        char *frame;
        size_t len;

        check(vl_put_call(&b, call->method, json_incref(call->params), call->more) == 0);
        check(vl_frame_next(&b, CLIENT_MAX, &frame, &len) == 1);
        check(vl_call_parse(frame, len, &again, &why) == 0);
        check(strcmp(again.method, call->method) == 0);
        check(json_equal(again.params, call->params));
        check(again.more == call->more);
        check(!again.oneway);
        vl_call_done(&again);
        check(vl_buf_pending(&b) == 0);
        vl_buf_free(&b);
}

/* Answers a call roughly as tcpd's dispatch does: the org.varlink.service
 * methods for real, every other call with its parameters echoed back. */
static void dispatch(struct conn *c, const struct vl_call *call) {
        size_t before = vl_buf_pending(&c->out), n_exp = c->n_exp;
        json_t *v;

        if (strcmp(call->method, VARLINK_METHOD_GET_INFO) == 0) {
                reply(c,
                      json_pack("{s:s,s:s,s:s,s:s,s:[s,s]}", "vendor", "tcpd", "product", "tcpd", "version",
                                "fuzz", "url", "man:tcpd(8)", "interfaces", VARLINK_SERVICE_INTERFACE,
                                TCPD_INTERFACE),
                      false);
        } else if (strcmp(call->method, VARLINK_METHOD_GET_INTERFACE_DESCRIPTION) == 0) {
                if (vl_param(call->params, "interface", JSON_STRING, &v) < 0 || !v)
                        reply_error(c, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", "interface"));
                else if (strcmp(json_string_value(v), TCPD_INTERFACE) == 0)
                        reply(c, json_pack("{s:s}", "description", tcpd_interface_description), false);
                else if (strcmp(json_string_value(v), VARLINK_SERVICE_INTERFACE) == 0)
                        reply(c, json_pack("{s:s}", "description", varlink_service_description), false);
                else
                        reply_error(c, VARLINK_ERROR_INTERFACE_NOT_FOUND,
                                    json_pack("{s:s}", "interface", json_string_value(v)));
        } else if (strcmp(call->method, TCPD_METHOD_LIST_CONNECTIONS) == 0 && !call->more) {
                reply_error(c, VARLINK_ERROR_EXPECTED_MORE, NULL);
        } else {
                /* a stream when asked for one, then the last reply; an error
                 * named after the method, with the same parameters */
                if (call->more)
                        reply(c, json_incref(call->params), true);
                reply(c, json_incref(call->params), false);
                reply_error(c, call->method, json_incref(call->params));
        }

        /* oneway: the caller wants no reply, so take back what was queued */
        if (call->oneway) {
                c->out.len = c->out.start + before;
                while (c->n_exp > n_exp) {
                        c->n_exp--;
                        free(c->exp[c->n_exp].error);
                        json_decref(c->exp[c->n_exp].params);
                }
        }
}

/* Sends what the server queued in writes of varying size, as a socket that
 * is sometimes full would take it, and parses every reply that arrived
 * whole. Each must be the one queued, in order. */
static void flush(struct conn *c) {
        size_t done = 0;

        while (vl_buf_pending(&c->out) > 0) {
                size_t n = 1 + next_rand(&c->rng) % (vl_buf_pending(&c->out) < 4096 ? 64 : 65536);
                char *frame;
                size_t len;
                int r;

                if (n > vl_buf_pending(&c->out))
                        n = vl_buf_pending(&c->out);
                check(vl_buf_append(&c->client, c->out.data + c->out.start, n) == 0);
                vl_buf_consume(&c->out, n);

                while ((r = vl_frame_next(&c->client, CLIENT_MAX, &frame, &len)) == 1) {
                        struct expected *e;
                        struct vl_reply rep;

                        check(frame[len] == 0 && memchr(frame, 0, len) == NULL);
                        check(done < c->n_exp);
                        e = &c->exp[done++];
                        /* a reply we built must parse: anything else is a bug */
                        check(vl_reply_parse(frame, len, &rep) == 0);
                        check((rep.error == NULL) == (e->error == NULL));
                        check(!e->error || strcmp(rep.error, e->error) == 0);
                        check(json_equal(rep.params, e->params));
                        check(rep.continues == e->continues);
                        vl_reply_done(&rep);
                }
                check(r == 0);
        }
        check(done == c->n_exp);
        check(vl_buf_pending(&c->client) == 0);
        expected_clear(c);
}

/* Takes every whole call out of the server's buffer with vl_next_call(),
 * the function control.c's client_process uses; false when the connection
 * would be closed. */
static bool process(struct conn *c) {
        for (;;) {
                struct vl_call call;
                const char *why = NULL;
                int r;

                r = vl_next_call(&c->in, VARLINK_MAX_MESSAGE, &call, &why);
                if (r == 0)
                        return true;
                if (r == -EMSGSIZE) {
                        check(why && strcmp(why, "message too large") == 0);
                        /* no NUL in sight: the stream cannot be resynchronised */
                        reply_error(c, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", why));
                        flush(c);
                        return false;
                }
                if (r < 0) {
                        check(r == -EBADMSG || r == -EPROTO);
                        check(why != NULL);
                        check(call.root == NULL);
                        reply_error(c, VARLINK_ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", why));
                } else {
                        check(call.method && call.method[0]);
                        check_params(call.params);
                        check_param(call.root, "more");
                        check_param(call.root, "oneway");
                        check_call_round_trip(&call);
                        dispatch(c, &call);
                        vl_call_done(&call);
                }
                flush(c);
                if (c->closing)
                        return false;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct conn c = { 0 };
        uint64_t h = hash_bytes(data, size);
        size_t cuts[MAX_CUTS + 2], n_cuts = 0;

        c.rng = h | 1;

        /* Cut the input at up to MAX_CUTS places, as reads would: a frame
         * split anywhere, several frames in one read, or all at once. */
        cuts[n_cuts++] = 0;
        for (unsigned i = 0, k = h & 3; i <= k && i < MAX_CUTS; i++)
                cuts[n_cuts++] = (size_t) (next_rand(&c.rng) % (size + 1));
        cuts[n_cuts++] = size;
        for (size_t i = 1; i < n_cuts; i++) /* insertion sort: a handful */
                for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                        size_t t = cuts[j];
                        cuts[j] = cuts[j - 1];
                        cuts[j - 1] = t;
                }

        for (size_t i = 0; i + 1 < n_cuts; i++) {
                size_t n = cuts[i + 1] - cuts[i];

                /* a read returns at least one byte; 0 is end of file */
                if (n == 0)
                        continue;
                check(vl_buf_append(&c.in, data + cuts[i], n) == 0);
                if (!process(&c))
                        break;
        }

        expected_clear(&c);
        vl_buf_free(&c.in);
        vl_buf_free(&c.out);
        vl_buf_free(&c.client);
        return 0;
}
