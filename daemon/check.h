/* Health checks of type = forward's backends, run by the control plane
 * (sd-event): every check_interval a connect to each backend, and with
 * send/expect a string sent and one that must come back. rise checks in
 * a row that pass bring a backend up, fall that fail take it down; the
 * workers read the result (backend_state.up) when they pick a backend. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "backend.h"

struct checks;

/* A backend went up or down: its pool, its index, and why (a check's
 * result, as check_result_name() says it). */
typedef void (*check_changed_fn)(void *userdata, const struct backend_pool *p, size_t i, bool up,
                                 enum check_result why);

/* Checks the backends of pools[0..n) (NULLs skipped), each pool holding
 * a reference until checks_free(). NULL when out of memory (said). */
struct checks *checks_new(sd_event *e, struct backend_pool *const *pools, size_t n, check_changed_fn changed,
                          void *userdata);
struct checks *checks_free(struct checks *c);
