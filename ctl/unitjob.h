/* What systemd is doing with a unit: for tcpctl prepare-stop, which
 * tcpd.service runs as ExecStop= (see unitjob.c). */
#pragma once

#include <stdbool.h>

/* The type of unit's pending job ("stop", "restart", ...; "none" when it
 * has none), malloc'd in *ret. Returns 0 or a negative errno. */
int unit_job_type(const char *unit, char **ret);
/* Whether a job of this type starts the unit again afterwards. */
bool unit_job_is_restart(const char *type);
