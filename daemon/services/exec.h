/* type = exec: what the settings give a program per connection. */
#pragma once

#include "config.h"

/* A service's program, environment and kill_timeout, shared (counted
 * references) by every worker's copy of the settings. */
struct exec_spec;

/* From a [service NAME] section of type exec; NULL when out of memory. */
struct exec_spec *exec_spec_new(const struct service_config *s);
struct exec_spec *exec_spec_ref(struct exec_spec *e);
struct exec_spec *exec_spec_unref(struct exec_spec *e);
