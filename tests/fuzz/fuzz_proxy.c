/* libFuzzer target for lib/proxyproto: bytes as a load balancer (or an
 * attacker) sends them first on a connection, through the PROXY header
 * parser tcpd reads them with. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

#define check(cond)                                                                                   \
        do {                                                                                          \
                if (!(cond)) {                                                                        \
                        fprintf(stderr, "fuzz_proxy: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                                #cond);                                                               \
                        abort();                                                                      \
                }                                                                                     \
        } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        union sockaddr_in46 src, dst, s2, d2;
        const char *why = NULL;
        bool local = false, local2;
        int r = proxy_header_parse((const char *) data, size, &src, &dst, &local, &why);

        check(r == 0 || r == -EBADMSG || (r > 0 && (size_t) r <= size && r <= PROXY_HEADER_MAX));
        check(r != -EBADMSG || why);
        /* a prefix of what parsed is never an error: it may still become it */
        if (r > 0) {
                for (size_t k = 0; k < (size_t) r; k += 7)
                        check(proxy_header_parse((const char *) data, k, &s2, &d2, &local2, &why) == 0);
        }
        /* a client it names is written back, both versions, and read back the same */
        if (r > 0 && !local) {
                char buf[PROXY_HEADER_MAX];

                for (int v = 1; v <= 2; v++) {
                        size_t n = proxy_header_build(v, &src, &dst, buf);

                        check(n > 0 && n <= PROXY_HEADER_MAX);
                        check(proxy_header_parse(buf, n, &s2, &d2, &local2, &why) == (int) n);
                        check(!local2 && addr_equal(&s2, &src) && addr_equal(&d2, &dst));
                }
        }
        return 0;
}
