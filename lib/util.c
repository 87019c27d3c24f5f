/* Shared helpers that need a body. */
#include <time.h>

#include "util.h"

uint64_t now_usec(int clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}
