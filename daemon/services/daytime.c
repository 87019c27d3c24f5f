/* daytime (RFC 867): one line with the current local date and time, as
 * inetd writes it ("Sat Dec  5 01:15:00 2026"), then the server closes. */
#include <time.h>

#include "conn-io.h"
#include "services/service.h"

static void daytime_open(struct loop *l, struct conn *c) {
        char line[64];
        time_t now = time(NULL);
        struct tm tm;
        size_t n;

        if (!localtime_r(&now, &tm) || !(n = strftime(line, sizeof(line), "%a %b %e %H:%M:%S %Y\r\n", &tm)))
                n = (size_t) snprintf(line, sizeof(line), "%lld\r\n", (long long) now);
        if (conn_send(l, c, line, n) == 0)
                conn_close(l, c, CLOSE_DONE); /* after what is owed, then a FIN */
}

const struct service_type service_daytime = {
        .open = daytime_open,
        .readable = conn_read_drop,
};
