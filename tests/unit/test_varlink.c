/* Unit tests for lib/varlink: NUL framing in byte buffers, parsing of calls
 * and replies, and the messages tcpd and tcpctl put on the wire. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varlink.h"

#define MAX 4096

/* Appends a string with its NUL, as a peer sends a message. */
static void append_msg(struct vl_buf *b, const char *s) {
        assert_int_equal(vl_buf_append(b, s, strlen(s) + 1), 0);
}

static void test_empty(void **state) {
        struct vl_buf b = { 0 };
        char *frame = NULL;
        size_t len = 0;

        assert_int_equal(vl_buf_pending(&b), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 0);
        assert_null(frame);
        vl_buf_free(&b);
        /* freeing twice is harmless: vl_buf_free resets */
        vl_buf_free(&b);
}

static void test_one_frame(void **state) {
        struct vl_buf b = { 0 };
        char *frame;
        size_t len;

        append_msg(&b, "{\"method\":\"a.b\"}");
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_int_equal(len, strlen("{\"method\":\"a.b\"}"));
        assert_string_equal(frame, "{\"method\":\"a.b\"}");
        assert_int_equal(vl_buf_pending(&b), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 0);

        /* the buffer is reused after it drained */
        append_msg(&b, "{}");
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{}");
        assert_int_equal(len, 2);
        vl_buf_free(&b);
}

static void test_empty_frame(void **state) {
        struct vl_buf b = { 0 };
        char *frame;
        size_t len = 99;

        assert_int_equal(vl_buf_append(&b, "\0", 1), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_int_equal(len, 0);
        assert_string_equal(frame, "");
        vl_buf_free(&b);
}

static void test_pipelined(void **state) {
        static const char two[] = "{\"a\":1}\0{\"b\":2}\0{\"c\"";
        struct vl_buf b = { 0 };
        char *frame;
        size_t len;

        assert_int_equal(vl_buf_append(&b, two, sizeof(two) - 1), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{\"a\":1}");
        assert_int_equal(len, 7);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{\"b\":2}");
        assert_int_equal(len, 7);
        /* the start of a third, incomplete */
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 0);
        assert_int_equal(vl_buf_pending(&b), 4);
        assert_int_equal(vl_buf_append(&b, ":3}", 4), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{\"c\":3}");
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 0);
        vl_buf_free(&b);
}

static void test_byte_by_byte(void **state) {
        static const char msgs[] = "{\"method\":\"x.Y\",\"parameters\":{\"k\":\"v\"}}\0{\"method\":\"x.Z\"}";
        struct vl_buf b = { 0 };
        const char *want[] = { "{\"method\":\"x.Y\",\"parameters\":{\"k\":\"v\"}}", "{\"method\":\"x.Z\"}" };
        size_t got = 0;

        for (size_t i = 0; i < sizeof(msgs); i++) { /* includes the final NUL */
                char *frame;
                size_t len;
                int r;

                assert_int_equal(vl_buf_append(&b, &msgs[i], 1), 0);
                r = vl_frame_next(&b, MAX, &frame, &len);
                assert_true(r == 0 || r == 1);
                if (r == 1) {
                        assert_true(got < 2);
                        assert_string_equal(frame, want[got]);
                        assert_int_equal(len, strlen(want[got]));
                        /* a frame comes out exactly when its NUL arrived */
                        assert_int_equal(msgs[i], 0);
                        got++;
                } else
                        assert_true(msgs[i] != 0);
        }
        assert_int_equal(got, 2);
        vl_buf_free(&b);
}

/* vl_frame_ready says yes exactly when vl_frame_next would give a frame,
 * also between scans that remembered how far they looked. */
static void test_frame_ready(void **state) {
        static const char msgs[] = "{\"method\":\"x.Y\"}\0{\"method\":\"x.Z\"}";
        struct vl_buf b = { 0 };
        char *frame;
        size_t len;

        assert_false(vl_frame_ready(&b));
        for (size_t i = 0; i < sizeof(msgs); i++) { /* includes the final NUL */
                bool was_ready = false;

                assert_int_equal(vl_buf_append(&b, &msgs[i], 1), 0);
                assert_int_equal(vl_frame_ready(&b), msgs[i] == 0);
                if (msgs[i] == 0)
                        was_ready = true;
                /* asking twice changes nothing */
                assert_int_equal(vl_frame_ready(&b), was_ready);
                assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), was_ready ? 1 : 0);
                assert_false(vl_frame_ready(&b));
        }
        /* two frames at once: ready until both are taken */
        assert_int_equal(vl_buf_append(&b, "a\0b\0c", 5), 0);
        assert_true(vl_frame_ready(&b));
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_true(vl_frame_ready(&b));
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_false(vl_frame_ready(&b)); /* "c" has no NUL yet */
        vl_buf_free(&b);
}

/* Many frames through the same buffer, so it slides and grows on the way. */
static void test_many_frames_reuse(void **state) {
        struct vl_buf b = { 0 };
        char msg[64];
        unsigned next_out = 0;

        for (unsigned i = 0; i < 5000; i++) {
                char *frame;
                size_t len;

                snprintf(msg, sizeof(msg), "{\"n\":%u}", i);
                append_msg(&b, msg);
                /* read every other round, so data is left behind at times */
                if (i % 2 == 0)
                        continue;
                while (vl_frame_next(&b, MAX, &frame, &len) == 1) {
                        snprintf(msg, sizeof(msg), "{\"n\":%u}", next_out++);
                        assert_string_equal(frame, msg);
                }
        }
        assert_int_equal(next_out, 5000);
        vl_buf_free(&b);
}

static void test_oversize(void **state) {
        struct vl_buf b = { 0 };
        char *data = malloc(MAX + 10);
        char *frame;
        size_t len;

        assert_non_null(data);
        memset(data, 'x', MAX + 10);

        /* max - 1 bytes without a NUL: a frame that still fits may follow */
        assert_int_equal(vl_buf_append(&b, data, MAX - 1), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 0);
        /* the max-th byte without a NUL: it can never fit */
        assert_int_equal(vl_buf_append(&b, data, 1), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), -EMSGSIZE);
        vl_buf_free(&b);

        /* all in one append, more than max */
        assert_int_equal(vl_buf_append(&b, data, MAX + 10), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), -EMSGSIZE);
        vl_buf_free(&b);

        /* a frame exactly at the limit: max - 1 bytes and its NUL */
        data[MAX - 1] = 0;
        assert_int_equal(vl_buf_append(&b, data, MAX), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_int_equal(len, MAX - 1);
        assert_int_equal(strlen(frame), MAX - 1);
        vl_buf_free(&b);

        /* one byte more, NUL included, is too much */
        data[MAX - 1] = 'x';
        data[MAX] = 0;
        assert_int_equal(vl_buf_append(&b, data, MAX + 1), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), -EMSGSIZE);
        vl_buf_free(&b);

        /* a frame at the limit arriving in pieces behind another frame */
        append_msg(&b, "{}");
        data[MAX - 1] = 0;
        assert_int_equal(vl_buf_append(&b, data, 100), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{}");
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 0);
        assert_int_equal(vl_buf_append(&b, data + 100, MAX - 100), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_int_equal(len, MAX - 1);
        vl_buf_free(&b);

        free(data);
}

static void test_reserve_commit_consume(void **state) {
        struct vl_buf b = { 0 };
        char *p;

        p = vl_buf_reserve(&b, 10);
        assert_non_null(p);
        memcpy(p, "abc\0de", 6);
        vl_buf_commit(&b, 6);
        assert_int_equal(vl_buf_pending(&b), 6);
        vl_buf_consume(&b, 4);
        assert_int_equal(vl_buf_pending(&b), 2);
        assert_memory_equal(b.data + b.start, "de", 2);
        vl_buf_consume(&b, 2);
        assert_int_equal(vl_buf_pending(&b), 0);

        /* a big reservation grows the buffer */
        p = vl_buf_reserve(&b, 100000);
        assert_non_null(p);
        assert_true(b.cap - b.len >= 100000);
        memset(p, 'y', 100000);
        vl_buf_commit(&b, 100000);
        assert_int_equal(vl_buf_pending(&b), 100000);
        vl_buf_free(&b);
        assert_null(b.data);
        assert_int_equal(b.cap, 0);
}

static void test_call_parse(void **state) {
        static const char msg[] =
                "{\"method\":\"io.tcpd.List\",\"parameters\":{\"filter\":\"10.0.0.0/8\"},\"more\":true}";
        struct vl_call c;
        const char *why = "unset";
        json_t *v;

        assert_int_equal(vl_call_parse(msg, strlen(msg), &c, &why), 0);
        assert_null(why);
        assert_string_equal(c.method, "io.tcpd.List");
        assert_true(c.more);
        assert_false(c.oneway);
        assert_true(json_is_object(c.params));
        v = json_object_get(c.params, "filter");
        assert_true(json_is_string(v));
        assert_string_equal(json_string_value(v), "10.0.0.0/8");
        vl_call_done(&c);
        assert_null(c.root);

        static const char oneway[] = "{\"method\":\"io.tcpd.Kick\",\"oneway\":true,\"more\":false}";
        assert_int_equal(vl_call_parse(oneway, strlen(oneway), &c, &why), 0);
        assert_string_equal(c.method, "io.tcpd.Kick");
        assert_true(c.oneway);
        assert_false(c.more);
        vl_call_done(&c);

        /* parameters missing or null: an empty object */
        static const char bare[] = "{\"method\":\"org.varlink.service.GetInfo\"}";
        assert_int_equal(vl_call_parse(bare, strlen(bare), &c, &why), 0);
        assert_non_null(c.params);
        assert_true(json_is_object(c.params));
        assert_int_equal(json_object_size(c.params), 0);
        assert_false(c.more);
        assert_false(c.oneway);
        vl_call_done(&c);

        static const char nul[] = "{\"method\":\"a.B\",\"parameters\":null,\"more\":null}";
        assert_int_equal(vl_call_parse(nul, strlen(nul), &c, &why), 0);
        assert_true(json_is_object(c.params));
        assert_false(c.more);
        vl_call_done(&c);

        /* len bounds the message: trailing bytes beyond it are not parsed */
        static const char longer[] = "{\"method\":\"a.B\"}garbage";
        assert_int_equal(vl_call_parse(longer, strlen("{\"method\":\"a.B\"}"), &c, &why), 0);
        vl_call_done(&c);

        /* a frame taken from a buffer parses directly */
        {
                struct vl_buf b = { 0 };
                char *frame;
                size_t len;

                append_msg(&b, msg);
                append_msg(&b, bare);
                assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
                assert_int_equal(vl_call_parse(frame, len, &c, &why), 0);
                assert_string_equal(c.method, "io.tcpd.List");
                vl_call_done(&c);
                assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
                assert_int_equal(vl_call_parse(frame, len, &c, &why), 0);
                assert_string_equal(c.method, "org.varlink.service.GetInfo");
                vl_call_done(&c);
                vl_buf_free(&b);
        }
}

static void expect_call_error(const char *msg, size_t len, int err) {
        struct vl_call c;
        const char *why = NULL;

        print_message("call %.60s\n", msg);
        assert_int_equal(vl_call_parse(msg, len, &c, &why), err);
        assert_non_null(why);
        assert_null(c.root);
        assert_null(c.method);
        vl_call_done(&c); /* harmless after an error */
}

static void test_call_parse_errors(void **state) {
        static const char *const badmsg[] = {
                "",
                "{",
                "not json",
                "{\"method\":\"a.B\"",
                "{\"method\":\"a.B\"} {}",
                "[]",
                "[{\"method\":\"a.B\"}]",
                "\"a.B\"",
                "42",
                "null",
                "{\"method\":\"a.B\",\"method\":\"c.D\"}",   /* duplicate key */
                "{\"method\":\"a\\u0000B\"}",               /* NUL inside a string */
                "{\"method\":\"a.B\",\"parameters\":{\"n\":123456789012345678901234567890}}",
        };
        static const char *const proto[] = {
                "{}",
                "{\"parameters\":{}}",
                "{\"method\":42}",
                "{\"method\":null}",
                "{\"method\":\"\"}",
                "{\"method\":[\"a.B\"]}",
                "{\"method\":\"a.B\",\"parameters\":[]}",
                "{\"method\":\"a.B\",\"parameters\":\"x\"}",
                "{\"method\":\"a.B\",\"parameters\":1}",
                "{\"method\":\"a.B\",\"more\":1}",
                "{\"method\":\"a.B\",\"more\":\"true\"}",
                "{\"method\":\"a.B\",\"oneway\":0}",
                "{\"method\":\"a.B\",\"oneway\":{}}",
        };

        for (size_t i = 0; i < sizeof(badmsg) / sizeof(badmsg[0]); i++)
                expect_call_error(badmsg[i], strlen(badmsg[i]), -EBADMSG);
        for (size_t i = 0; i < sizeof(proto) / sizeof(proto[0]); i++)
                expect_call_error(proto[i], strlen(proto[i]), -EPROTO);

        /* invalid UTF-8: a lone continuation byte, an overlong form, a surrogate */
        {
                static const char bad1[] = "{\"method\":\"a.\x80\"}";
                static const char bad2[] = "{\"method\":\"a.\xc0\xaf\"}";
                static const char bad3[] = "{\"method\":\"a.\xed\xa0\x80\"}";
                static const char bad4[] = "{\"method\":\"a.B\",\"parameters\":{\"\xff\":1}}";

                expect_call_error(bad1, strlen(bad1), -EBADMSG);
                expect_call_error(bad2, strlen(bad2), -EBADMSG);
                expect_call_error(bad3, strlen(bad3), -EBADMSG);
                expect_call_error(bad4, strlen(bad4), -EBADMSG);
        }
        /* an embedded NUL within len */
        expect_call_error("{\"method\":\"a.B\"}\0", sizeof("{\"method\":\"a.B\"}\0") - 1, -EBADMSG);
}

static void test_call_parse_deep(void **state) {
        size_t n = 100000;
        char *s = malloc(2 * n + 64);
        struct vl_call c;
        const char *why;
        size_t off;
        int r;

        assert_non_null(s);
        /* a bare run of brackets */
        memset(s, '[', n);
        r = vl_call_parse(s, n, &c, &why);
        assert_true(r < 0);
        vl_call_done(&c);

        /* balanced, inside the parameters of an otherwise valid call */
        off = (size_t) sprintf(s, "{\"method\":\"a.B\",\"parameters\":{\"x\":");
        memset(s + off, '[', n);
        memset(s + off + n, ']', n);
        memcpy(s + off + 2 * n, "}}", 3);
        r = vl_call_parse(s, strlen(s), &c, &why);
        assert_true(r < 0);
        assert_non_null(why);
        vl_call_done(&c);

        /* nested objects likewise */
        off = 0;
        for (size_t i = 0; i < n / 5; i++) {
                memcpy(s + off, "{\"a\":", 5);
                off += 5;
        }
        s[off] = 0;
        r = vl_call_parse(s, off, &c, &why);
        assert_true(r < 0);
        vl_call_done(&c);
        free(s);
}

static void test_call_big_values(void **state) {
        static const char big[] = "{\"method\":\"a.B\",\"parameters\":{\"id\":9223372036854775807,\"r\":1e308}}";
        struct vl_call c;
        const char *why;
        json_t *v;

        assert_int_equal(vl_call_parse(big, strlen(big), &c, &why), 0);
        assert_int_equal(vl_param(c.params, "id", JSON_INTEGER, &v), 0);
        assert_non_null(v);
        assert_true(json_integer_value(v) == INT64_MAX);
        vl_call_done(&c);

        /* beyond what a json_int_t holds, and beyond a double */
        expect_call_error("{\"method\":\"a.B\",\"parameters\":{\"id\":9223372036854775808}}",
                          strlen("{\"method\":\"a.B\",\"parameters\":{\"id\":9223372036854775808}}"), -EBADMSG);
        expect_call_error("{\"method\":\"a.B\",\"parameters\":{\"r\":1e400}}",
                          strlen("{\"method\":\"a.B\",\"parameters\":{\"r\":1e400}}"), -EBADMSG);
}

/* Takes the one message queued in b and checks its text. */
static void expect_wire(struct vl_buf *b, const char *want) {
        char *frame;
        size_t len;

        assert_int_equal(vl_frame_next(b, MAX, &frame, &len), 1);
        assert_string_equal(frame, want);
        assert_int_equal(len, strlen(want));
}

static void test_put_reply(void **state) {
        struct vl_buf b = { 0 };
        struct vl_reply r;
        char *frame;
        size_t len;
        json_t *p;

        p = json_pack("{s:i,s:s}", "count", 3, "name", "x");
        assert_int_equal(vl_put_reply(&b, p, true), 0);
        /* NUL-terminated, compact */
        assert_int_equal(b.data[b.len - 1], 0);
        assert_null(memchr(b.data + b.start, ' ', b.len - b.start - 1));
        assert_null(memchr(b.data + b.start, '\n', b.len - b.start - 1));

        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{\"parameters\":{\"count\":3,\"name\":\"x\"},\"continues\":true}");
        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
        assert_null(r.error);
        assert_true(r.continues);
        assert_int_equal(json_integer_value(json_object_get(r.params, "count")), 3);
        assert_string_equal(json_string_value(json_object_get(r.params, "name")), "x");
        vl_reply_done(&r);
        assert_null(r.root);

        /* NULL params: {} and no "continues" */
        assert_int_equal(vl_put_reply(&b, NULL, false), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{\"parameters\":{}}");
        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
        assert_null(r.error);
        assert_false(r.continues);
        assert_true(json_is_object(r.params));
        assert_int_equal(json_object_size(r.params), 0);
        vl_reply_done(&r);
        vl_buf_free(&b);
}

static void test_put_error(void **state) {
        struct vl_buf b = { 0 };
        struct vl_reply r;
        char *frame;
        size_t len;

        assert_int_equal(vl_put_error(&b, "io.tcpd.NoSuchConnection", json_pack("{s:I}", "id", (json_int_t) 77)), 0);
        assert_int_equal(vl_put_error(&b, "org.varlink.service.MethodNotFound", NULL), 0);

        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{\"error\":\"io.tcpd.NoSuchConnection\",\"parameters\":{\"id\":77}}");
        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
        assert_non_null(r.error);
        assert_string_equal(r.error, "io.tcpd.NoSuchConnection");
        assert_false(r.continues);
        assert_int_equal(json_integer_value(json_object_get(r.params, "id")), 77);
        vl_reply_done(&r);

        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
        assert_string_equal(r.error, "org.varlink.service.MethodNotFound");
        assert_int_equal(json_object_size(r.params), 0);
        vl_reply_done(&r);

        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 0);
        vl_buf_free(&b);
}

static void test_put_call(void **state) {
        struct vl_buf b = { 0 };
        struct vl_call c;
        const char *why;
        char *frame;
        size_t len;

        assert_int_equal(vl_put_call(&b, "io.tcpd.Monitor", json_pack("{s:b}", "all", 1), true), 0);
        assert_int_equal(vl_put_call(&b, "org.varlink.service.GetInfo", NULL, false), 0);

        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_string_equal(frame, "{\"method\":\"io.tcpd.Monitor\",\"parameters\":{\"all\":true},\"more\":true}");
        assert_int_equal(vl_call_parse(frame, len, &c, &why), 0);
        assert_string_equal(c.method, "io.tcpd.Monitor");
        assert_true(c.more);
        assert_true(json_is_true(json_object_get(c.params, "all")));
        vl_call_done(&c);

        expect_wire(&b, "{\"method\":\"org.varlink.service.GetInfo\",\"parameters\":{}}");
        vl_buf_free(&b);
}

/* Strings that need escaping survive the trip. */
static void test_put_escapes(void **state) {
        static const char tricky[] = "quote\" backslash\\ newline\n tab\t ctl\x01 utf8 \xc3\xa9 \xf0\x9f\x98\x80";
        struct vl_buf b = { 0 };
        struct vl_reply r;
        char *frame;
        size_t len;

        assert_int_equal(vl_put_reply(&b, json_pack("{s:s}", "s", tricky), false), 0);
        assert_int_equal(vl_frame_next(&b, MAX, &frame, &len), 1);
        assert_null(memchr(frame, '\n', len)); /* escaped, still one frame */
        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
        assert_string_equal(json_string_value(json_object_get(r.params, "s")), tricky);
        vl_reply_done(&r);
        vl_buf_free(&b);
}

/* Replies queued behind unread ones, in order, after the buffer slid. */
static void test_put_many(void **state) {
        struct vl_buf b = { 0 };
        unsigned next = 0;

        for (unsigned i = 0; i < 3000; i++) {
                char *frame;
                size_t len;

                assert_int_equal(vl_put_reply(&b, json_pack("{s:i}", "i", (int) i), i != 2999), 0);
                if (i % 3)
                        continue;
                while (vl_frame_next(&b, MAX, &frame, &len) == 1) {
                        struct vl_reply r;
                        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
                        assert_int_equal(json_integer_value(json_object_get(r.params, "i")), next);
                        assert_int_equal(r.continues, next != 2999);
                        vl_reply_done(&r);
                        next++;
                }
        }
        {
                char *frame;
                size_t len;
                while (vl_frame_next(&b, MAX, &frame, &len) == 1)
                        next++;
        }
        assert_int_equal(next, 3000);
        vl_buf_free(&b);
}

static void test_reply_parse_errors(void **state) {
        static const struct {
                const char *s;
                int err;
        } bad[] = {
                { "", -EBADMSG },
                { "[]", -EBADMSG },
                { "{\"parameters\":", -EBADMSG },
                { "{\"error\":1}", -EPROTO },
                { "{\"error\":null}", -EPROTO },
                { "{\"parameters\":[]}", -EPROTO },
                { "{\"continues\":\"yes\"}", -EPROTO },
        };
        struct vl_reply r;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                print_message("reply '%s'\n", bad[i].s);
                assert_int_equal(vl_reply_parse(bad[i].s, strlen(bad[i].s), &r), bad[i].err);
                assert_null(r.root);
                vl_reply_done(&r);
        }

        /* an empty object is a valid empty reply */
        assert_int_equal(vl_reply_parse("{}", 2, &r), 0);
        assert_null(r.error);
        assert_false(r.continues);
        assert_true(json_is_object(r.params));
        vl_reply_done(&r);
}

static void test_param(void **state) {
        json_t *o = json_pack("{s:s,s:i,s:b,s:b,s:n,s:f,s:[],s:{}}", "s", "str", "i", 5, "t", 1, "f", 0, "n",
                              "r", 1.5, "a", "o");
        json_t *v;

        assert_non_null(o);
        assert_int_equal(vl_param(o, "s", JSON_STRING, &v), 0);
        assert_string_equal(json_string_value(v), "str");
        assert_int_equal(vl_param(o, "i", JSON_INTEGER, &v), 0);
        assert_int_equal(json_integer_value(v), 5);
        assert_int_equal(vl_param(o, "a", JSON_ARRAY, &v), 0);
        assert_true(json_is_array(v));
        assert_int_equal(vl_param(o, "o", JSON_OBJECT, &v), 0);
        assert_true(json_is_object(v));
        assert_int_equal(vl_param(o, "r", JSON_REAL, &v), 0);
        assert_true(json_is_real(v));

        /* JSON_TRUE stands for "a boolean" */
        assert_int_equal(vl_param(o, "t", JSON_TRUE, &v), 0);
        assert_true(json_is_true(v));
        assert_int_equal(vl_param(o, "f", JSON_TRUE, &v), 0);
        assert_non_null(v);
        assert_true(json_is_false(v));

        /* absent and null: NULL, no error */
        v = o;
        assert_int_equal(vl_param(o, "missing", JSON_STRING, &v), 0);
        assert_null(v);
        v = o;
        assert_int_equal(vl_param(o, "n", JSON_STRING, &v), 0);
        assert_null(v);

        /* wrong types */
        v = o;
        assert_int_equal(vl_param(o, "s", JSON_INTEGER, &v), -EINVAL);
        assert_null(v);
        assert_int_equal(vl_param(o, "i", JSON_STRING, &v), -EINVAL);
        assert_int_equal(vl_param(o, "i", JSON_REAL, &v), -EINVAL);
        assert_int_equal(vl_param(o, "r", JSON_INTEGER, &v), -EINVAL);
        assert_int_equal(vl_param(o, "i", JSON_TRUE, &v), -EINVAL);
        assert_int_equal(vl_param(o, "t", JSON_STRING, &v), -EINVAL);
        assert_int_equal(vl_param(o, "a", JSON_OBJECT, &v), -EINVAL);
        assert_int_equal(vl_param(o, "o", JSON_ARRAY, &v), -EINVAL);
        json_decref(o);
}

/* Rows written one at a time come out as one reply a client parses, with
 * rows longer than put_json's first guess, escapes, and a second reply. */
static void test_rows(void **state) {
        json_t *cols = json_pack("[s,s,s]", "id", "name", "pid");
        char long_name[2000];
        struct vl_buf b = { 0 };
        struct vl_reply r;
        char *frame;
        size_t len;
        json_t *o, *row;

        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = 0;
        assert_int_equal(vl_rows_begin(&b, cols), 0);
        for (int i = 0; i < 3; i++) {
                row = json_pack("[i,s,n]", i + 1, i == 1 ? long_name : "a\"b\n\xc3\xa9");
                if (i == 2)
                        json_array_set_new(row, 2, json_integer(4242));
                assert_int_equal(vl_rows_add(&b, row, i == 0), 0);
                json_decref(row);
        }
        assert_int_equal(vl_rows_end(&b, true), 0);
        assert_int_equal(vl_rows_begin(&b, cols), 0);
        assert_int_equal(vl_rows_end(&b, false), 0); /* a reply may have no rows */
        assert_int_equal(vl_rows_begin(&b, json_object_get(cols, "x")), -EINVAL);

        assert_int_equal(vl_frame_next(&b, 1 << 20, &frame, &len), 1);
        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
        assert_true(r.continues);
        assert_int_equal(json_array_size(json_object_get(r.params, "rows")), 3);
        o = vl_row_object(r.params, 0, NULL);
        assert_non_null(o);
        assert_int_equal(json_object_size(o), 2); /* the null pid is left out */
        assert_int_equal(json_integer_value(json_object_get(o, "id")), 1);
        assert_string_equal(json_string_value(json_object_get(o, "name")), "a\"b\n\xc3\xa9");
        json_decref(o);
        o = vl_row_object(r.params, 1, NULL);
        assert_string_equal(json_string_value(json_object_get(o, "name")), long_name);
        json_decref(o);
        o = vl_row_object(r.params, 2, "web1");
        assert_int_equal(json_object_size(o), 4);
        assert_string_equal(json_string_value(json_object_get(o, "host")), "web1");
        assert_string_equal(json_object_iter_key(json_object_iter(o)), "host"); /* first */
        assert_int_equal(json_integer_value(json_object_get(o, "pid")), 4242);
        json_decref(o);
        assert_null(vl_row_object(r.params, 3, NULL));
        /* a row that does not match its columns is refused */
        json_array_append_new(json_array_get(json_object_get(r.params, "rows"), 0), json_integer(1));
        assert_null(vl_row_object(r.params, 0, NULL));
        vl_reply_done(&r);

        assert_int_equal(vl_frame_next(&b, 1 << 20, &frame, &len), 1);
        assert_int_equal(vl_reply_parse(frame, len, &r), 0);
        assert_false(r.continues);
        assert_int_equal(json_array_size(json_object_get(r.params, "rows")), 0);
        vl_reply_done(&r);
        json_decref(cols);
        vl_buf_free(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rows),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_one_frame),
                cmocka_unit_test(test_empty_frame),
                cmocka_unit_test(test_pipelined),
                cmocka_unit_test(test_byte_by_byte),
                cmocka_unit_test(test_frame_ready),
                cmocka_unit_test(test_many_frames_reuse),
                cmocka_unit_test(test_oversize),
                cmocka_unit_test(test_reserve_commit_consume),
                cmocka_unit_test(test_call_parse),
                cmocka_unit_test(test_call_parse_errors),
                cmocka_unit_test(test_call_parse_deep),
                cmocka_unit_test(test_call_big_values),
                cmocka_unit_test(test_put_reply),
                cmocka_unit_test(test_put_error),
                cmocka_unit_test(test_put_call),
                cmocka_unit_test(test_put_escapes),
                cmocka_unit_test(test_put_many),
                cmocka_unit_test(test_reply_parse_errors),
                cmocka_unit_test(test_param),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
