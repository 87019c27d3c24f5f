/* Varlink framing: NUL-terminated JSON messages in byte buffers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "varlink.h"

void vl_buf_free(struct vl_buf *b) {
        free(b->data);
        memset(b, 0, sizeof(*b));
}

char *vl_buf_reserve(struct vl_buf *b, size_t n) {
        if (b->start > 0 && (b->start == b->len || b->cap - b->len < n)) {
                /* Slide the unconsumed bytes down before growing. */
                memmove(b->data, b->data + b->start, b->len - b->start);
                b->len -= b->start;
                b->start = 0;
        }
        if (b->cap - b->len < n) {
                size_t cap = b->cap ? b->cap : 4096;
                char *d;

                while (cap - b->len < n) {
                        if (cap > SIZE_MAX / 2)
                                return NULL;
                        cap *= 2;
                }
                d = realloc(b->data, cap);
                if (!d)
                        return NULL;
                b->data = d;
                b->cap = cap;
        }
        return b->data + b->len;
}

void vl_buf_commit(struct vl_buf *b, size_t n) {
        b->len += n;
}

int vl_buf_append(struct vl_buf *b, const void *p, size_t n) {
        char *dst;

        if (n == 0)
                return 0;
        dst = vl_buf_reserve(b, n);
        if (!dst)
                return -ENOMEM;
        memcpy(dst, p, n);
        vl_buf_commit(b, n);
        return 0;
}

void vl_buf_consume(struct vl_buf *b, size_t n) {
        b->start += n;
        b->scanned = b->scanned > n ? b->scanned - n : 0;
        if (b->start == b->len) {
                b->start = b->len = 0;
                b->scanned = 0;
        }
}

int vl_frame_next(struct vl_buf *b, size_t max, char **frame, size_t *len) {
        size_t avail = vl_buf_pending(b);
        char *base, *nul;

        if (!b->data)
                return 0; /* nothing ever arrived */
        base = b->data + b->start;
        /* Remember how far we looked so a frame that arrives a byte at a time
         * is scanned once, not once per byte. */
        nul = avail > b->scanned ? memchr(base + b->scanned, 0, avail - b->scanned) : NULL;
        if (!nul) {
                b->scanned = avail;
                return avail >= max ? -EMSGSIZE : 0;
        }
        *len = (size_t) (nul - base);
        if (*len + 1 > max)
                return -EMSGSIZE;
        *frame = base;
        b->start += *len + 1;
        b->scanned = 0;
        /* the buffer is compacted on the next reserve */
        return 1;
}

int vl_next_call(struct vl_buf *b, size_t max, struct vl_call *call, const char **why) {
        char *frame;
        size_t len;
        int r = vl_frame_next(b, max, &frame, &len);

        if (r <= 0) {
                if (r < 0)
                        *why = "message too large";
                return r;
        }
        r = vl_call_parse(frame, len, call, why);
        return r < 0 ? r : 1;
}

bool vl_frame_ready(struct vl_buf *b) {
        size_t avail = vl_buf_pending(b);

        if (!b->data || avail <= b->scanned)
                return false;
        if (memchr(b->data + b->start + b->scanned, 0, avail - b->scanned))
                return true;
        b->scanned = avail;
        return false;
}

int vl_param(json_t *obj, const char *key, json_type type, json_t **out) {
        json_t *v = json_object_get(obj, key);

        *out = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v)))
                return -EINVAL;
        *out = v;
        return 0;
}

static json_t *parse_object(const char *frame, size_t len, size_t flags, const char **why) {
        json_error_t err;
        json_t *root = json_loadb(frame, len, flags, &err);

        if (!root) {
                *why = "message is not valid JSON";
                return NULL;
        }
        if (!json_is_object(root)) {
                *why = "message is not a JSON object";
                json_decref(root);
                return NULL;
        }
        return root;
}

static int get_bool(json_t *root, const char *key, bool *b) {
        json_t *v;

        if (vl_param(root, key, JSON_TRUE, &v) < 0)
                return -EPROTO;
        *b = v && json_is_true(v);
        return 0;
}

int vl_call_parse(const char *frame, size_t len, struct vl_call *call, const char **why) {
        json_t *root, *method, *params;

        memset(call, 0, sizeof(*call));
        *why = NULL;
        /* calls come from any local user: be strict */
        root = parse_object(frame, len, JSON_REJECT_DUPLICATES, why);
        if (!root)
                return -EBADMSG;
        call->root = root;

        method = json_object_get(root, "method");
        if (!json_is_string(method) || json_string_length(method) == 0) {
                *why = "call has no \"method\" string";
                goto proto;
        }
        call->method = json_string_value(method);
        if (vl_param(root, "parameters", JSON_OBJECT, &params) < 0) {
                *why = "\"parameters\" is not an object";
                goto proto;
        }
        if (!params) {
                params = json_object();
                if (!params)
                        goto proto;
                json_object_set_new(root, "parameters", params);
        }
        call->params = params;
        if (get_bool(root, "more", &call->more) < 0 || get_bool(root, "oneway", &call->oneway) < 0) {
                *why = "\"more\" and \"oneway\" must be booleans";
                goto proto;
        }
        return 0;
proto:
        vl_call_done(call);
        return -EPROTO;
}

void vl_call_done(struct vl_call *call) {
        json_decref(call->root);
        memset(call, 0, sizeof(*call));
}

int vl_reply_parse(const char *frame, size_t len, struct vl_reply *reply) {
        const char *why;
        json_t *root, *error, *params;

        memset(reply, 0, sizeof(*reply));
        /* replies: a list is thousands of them, and a duplicate key in a
         * reply from the daemon harms nothing; jansson keeps the last */
        root = parse_object(frame, len, 0, &why);
        if (!root)
                return -EBADMSG;
        reply->root = root;
        error = json_object_get(root, "error");
        if (error && !json_is_string(error))
                goto proto;
        reply->error = error ? json_string_value(error) : NULL;
        if (vl_param(root, "parameters", JSON_OBJECT, &params) < 0)
                goto proto;
        if (!params) {
                params = json_object();
                if (!params)
                        goto proto;
                json_object_set_new(root, "parameters", params);
        }
        reply->params = params;
        if (get_bool(root, "continues", &reply->continues) < 0)
                goto proto;
        return 0;
proto:
        vl_reply_done(reply);
        return -EPROTO;
}

void vl_reply_done(struct vl_reply *reply) {
        json_decref(reply->root);
        memset(reply, 0, sizeof(*reply));
}

/* Serializes msg onto b with its NUL. Steals msg. */
int vl_put_message(struct vl_buf *b, const json_t *msg) {
        char small[1024], *dst;
        size_t need;

        /* one dump in the common case: into a stack buffer, then copied */
        need = json_dumpb(msg, small, sizeof(small), JSON_COMPACT);
        if (need == 0)
                return -ENOMEM;
        dst = vl_buf_reserve(b, need + 1);
        if (!dst)
                return -ENOMEM;
        if (need <= sizeof(small))
                memcpy(dst, small, need);
        else
                json_dumpb(msg, dst, need, JSON_COMPACT);
        dst[need] = 0;
        vl_buf_commit(b, need + 1);
        return 0;
}

/* Appends json's compact text (no NUL): dumped straight into b's room,
 * a second time only when it did not fit. */
static int put_json(struct vl_buf *b, const json_t *json) {
        size_t room = 512, need;
        char *dst = vl_buf_reserve(b, room);

        if (!dst)
                return -ENOMEM;
        need = json_dumpb(json, dst, room, JSON_COMPACT);
        if (need > room) {
                dst = vl_buf_reserve(b, need);
                if (!dst || json_dumpb(json, dst, need, JSON_COMPACT) != need)
                        return -ENOMEM;
        }
        if (need == 0)
                return -ENOMEM;
        vl_buf_commit(b, need);
        return 0;
}

static int put_text(struct vl_buf *b, const char *s) {
        return vl_buf_append(b, s, strlen(s));
}

int vl_rows_begin(struct vl_buf *b, const json_t *columns) {
        if (!json_is_array(columns))
                return -EINVAL;
        if (put_text(b, "{\"parameters\":{\"columns\":") < 0 || put_json(b, columns) < 0)
                return -ENOMEM;
        return put_text(b, ",\"rows\":[");
}

int vl_rows_add(struct vl_buf *b, const json_t *row, bool first) {
        if (!json_is_array(row))
                return -EINVAL;
        if (!first && put_text(b, ",") < 0)
                return -ENOMEM;
        return put_json(b, row);
}

int vl_rows_end(struct vl_buf *b, bool continues) {
        const char *end = continues ? "]},\"continues\":true}" : "]}}";

        return vl_buf_append(b, end, strlen(end) + 1); /* with the NUL */
}

json_t *vl_row_object(json_t *params, size_t i, const char *host) {
        json_t *columns = json_object_get(params, "columns"), *row, *o, *name;
        size_t k;

        row = json_array_get(json_object_get(params, "rows"), i);
        if (!json_is_array(row) || !json_is_array(columns) || json_array_size(row) != json_array_size(columns))
                return NULL;
        o = json_object();
        if (o && host && json_object_set_new(o, "host", json_string(host)) < 0)
                goto fail;
        json_array_foreach(columns, k, name) {
                json_t *v = json_array_get(row, k);

                if (!json_is_string(name))
                        goto fail;
                if (!json_is_null(v) && json_object_set(o, json_string_value(name), v) < 0)
                        goto fail;
        }
        return o;
fail:
        json_decref(o);
        return NULL;
}

static int put_message(struct vl_buf *b, json_t *msg) {
        int r;

        if (!msg)
                return -ENOMEM;
        r = vl_put_message(b, msg);
        json_decref(msg);
        return r;
}

static json_t *params_or_empty(json_t *params) {
        return params ? params : json_object();
}

int vl_put_reply(struct vl_buf *b, json_t *params, bool continues) {
        json_t *msg = json_object();

        if (msg) {
                json_object_set_new(msg, "parameters", params_or_empty(params));
                if (continues)
                        json_object_set_new(msg, "continues", json_true());
        } else
                json_decref(params);
        return put_message(b, msg);
}

int vl_put_error(struct vl_buf *b, const char *error, json_t *params) {
        json_t *msg = json_object();

        if (msg) {
                json_object_set_new(msg, "error", json_string(error));
                json_object_set_new(msg, "parameters", params_or_empty(params));
        } else
                json_decref(params);
        return put_message(b, msg);
}

int vl_put_call(struct vl_buf *b, const char *method, json_t *params, bool more) {
        json_t *msg = json_object();

        if (msg) {
                json_object_set_new(msg, "method", json_string(method));
                json_object_set_new(msg, "parameters", params_or_empty(params));
                if (more)
                        json_object_set_new(msg, "more", json_true());
        } else
                json_decref(params);
        return put_message(b, msg);
}
