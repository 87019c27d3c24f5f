/* Workers' side of the live event stream (see monitor.h). */
#include <stdlib.h>

#include "loop.h"
#include "monitor.h"

bool monitor_active(const struct loop *l) {
        return __atomic_load_n(&l->shared->monitors, __ATOMIC_RELAXED) > 0;
}

void monitor_flush(struct loop *l) {
        struct monitor_batch *b = l->monitor;

        if (!b)
                return;
        l->monitor = NULL;
        __atomic_add_fetch(&l->shared->monitor_in_flight, 1, __ATOMIC_RELAXED);
        mailbox_post(l->shared->monitor_inbox, &b->msg, l->shared->monitor_deliver);
}

void monitor_note(struct loop *l, const struct monitor_event *e) {
        if (l->monitor && l->monitor->n == MONITOR_BATCH)
                monitor_flush(l);
        if (!l->monitor) {
                if (__atomic_load_n(&l->shared->monitor_in_flight, __ATOMIC_RELAXED) >= MONITOR_MAX_IN_FLIGHT ||
                    !(l->monitor = malloc(sizeof(*l->monitor)))) {
                        /* counted where the control plane sees it with the
                         * next batch of any worker, not only of this one */
                        __atomic_add_fetch(&l->shared->monitor_dropped, 1, __ATOMIC_RELAXED);
                        return;
                }
                l->monitor->n = 0;
                l->monitor->owner = l->shared->monitor_owner;
        }
        l->monitor->ev[l->monitor->n] = *e;
        l->monitor->ev[l->monitor->n].worker = l->index;
        l->monitor->n++;
}
