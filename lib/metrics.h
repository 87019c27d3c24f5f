/* tcpctl metrics: tcpd's counters in Prometheus' formats. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* GetStatus's parameters as the text exposition format 0.0.4, or with
 * openmetrics as OpenMetrics 1.0 (ending in "# EOF"). */
void metrics_print(FILE *f, json_t *status, bool openmetrics);
