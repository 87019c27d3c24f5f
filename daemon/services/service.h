/* A service type: what a connection does with its bytes. conn.c keeps the
 * life of a connection (accept, limits, accounting, close, the fd store)
 * and never knows which service it carries; it calls through this table.
 * Each type is one file here, and one row in list.h. */
#pragma once

#include <stdbool.h>

#include "services/list.h"

struct loop;
struct conn;

struct service_type {
        const char *name;
        /* Right after accept and the banner: a type that answers at once
         * (daytime, time) sends and closes here. NULL: nothing. */
        void (*open)(struct loop *l, struct conn *c);
        /* EPOLLIN (or a hang-up) while the connection reads. */
        void (*readable)(struct loop *l, struct conn *c);
        /* EPOLLOUT with nothing owed, for a type that writes on its own
         * (chargen); it then wants EPOLLOUT while the connection is open. */
        void (*writable)(struct loop *l, struct conn *c);
};

#define SERVICE_DECLARE(name) extern const struct service_type service_##name;
SERVICE_TYPES(SERVICE_DECLARE)
#undef SERVICE_DECLARE

/* Indexed by enum service_kind. */
extern const struct service_type *const service_types[];
