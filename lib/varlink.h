/* Varlink framing and messages, without sockets: bytes in, calls out; replies
 * in, bytes out. Both tcpd (server side) and tcpctl (client side) use it. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* A byte buffer that frames arrive into or replies are queued in. */
struct vl_buf {
        char *data;
        size_t start; /* first byte not yet consumed */
        size_t len;   /* end of valid bytes */
        size_t cap;
        size_t scanned; /* bytes after start known to hold no NUL */
};

void vl_buf_free(struct vl_buf *b);
static inline size_t vl_buf_pending(const struct vl_buf *b) {
        return b->len - b->start;
}
int vl_buf_append(struct vl_buf *b, const void *p, size_t n);
/* Room at the end for a read of up to n bytes; the caller then calls
 * vl_buf_commit with what it read. */
char *vl_buf_reserve(struct vl_buf *b, size_t n);
void vl_buf_commit(struct vl_buf *b, size_t n);
void vl_buf_consume(struct vl_buf *b, size_t n);

/* Takes the next NUL-terminated frame out of b. Returns 1 with *frame (NUL
 * terminated, valid until the next change to b) and *len (without the NUL),
 * 0 when no whole frame is there yet, -EMSGSIZE when max bytes have arrived
 * without a NUL. */
int vl_frame_next(struct vl_buf *b, size_t max, char **frame, size_t *len);
/* Whether a whole frame waits in b (the next vl_frame_next returns 1). */
bool vl_frame_ready(struct vl_buf *b);

struct vl_call {
        json_t *root;
        const char *method;
        json_t *params; /* an object, never NULL */
        bool more;
        bool oneway;
};

/* Parses a call. -EBADMSG: not JSON (or not UTF-8); -EPROTO: JSON but not a
 * Varlink call. On error *why says what was wrong. */
int vl_call_parse(const char *frame, size_t len, struct vl_call *call, const char **why);
void vl_call_done(struct vl_call *call);

/* The next whole call in b, as a server takes them: 1 with *call (to
 * vl_call_done), 0 when none has arrived whole yet; -EBADMSG or -EPROTO
 * for a frame that is no call (*why says why; answer it and go on);
 * -EMSGSIZE when max bytes came without a NUL (*why: "message too large";
 * the stream cannot be resynchronised: answer and close). */
int vl_next_call(struct vl_buf *b, size_t max, struct vl_call *call, const char **why);

struct vl_reply {
        json_t *root;
        const char *error; /* NULL for a reply */
        json_t *params;    /* an object, never NULL */
        bool continues;
};

int vl_reply_parse(const char *frame, size_t len, struct vl_reply *reply);
void vl_reply_done(struct vl_reply *reply);

/* Queue messages onto b, each followed by its NUL. These take ownership of
 * params (which may be NULL for {}). */
int vl_put_reply(struct vl_buf *b, json_t *params, bool continues);
/* Appends msg, framed, and leaves it to the caller (for a reused message). */
int vl_put_message(struct vl_buf *b, const json_t *msg);
int vl_put_error(struct vl_buf *b, const char *error, json_t *params);
int vl_put_call(struct vl_buf *b, const char *method, json_t *params, bool more);

/* A reply of rows, {"parameters": {"columns": [...], "rows": [[...], ...]}},
 * written a row at a time so that no batch is built as one document: begin
 * with the column names, add each row (an array of as many values, null for
 * none), end (with "continues" when more replies follow). Every message says
 * its columns. Nothing else may be put on b between begin and end. */
int vl_rows_begin(struct vl_buf *b, const json_t *columns);
int vl_rows_add(struct vl_buf *b, const json_t *row, bool first);
int vl_rows_end(struct vl_buf *b, bool continues);
/* Row i of such a reply's parameters as an object of its non-null values
 * (key order: the columns'), after host when host is not NULL. NULL when
 * there is no row i, or it does not match the columns, or out of memory. */
json_t *vl_row_object(json_t *params, size_t i, const char *host);

/* Returns the member of obj named key if it is of type type (or null/absent:
 * then NULL with 0). -EINVAL when it is there with the wrong type. */
int vl_param(json_t *obj, const char *key, json_type type, json_t **out);
