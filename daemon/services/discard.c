/* discard (RFC 863): what the client sends is counted and dropped. */
#include "conn-io.h"
#include "services/service.h"

const struct service_type service_discard = {
        .readable = conn_read_drop,
};
