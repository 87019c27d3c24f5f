/* The services of this process, by a small number that stays theirs for the
 * life of the process (reloads add services, and never renumber them), so
 * that a connection, a listener and their counters name their service by
 * it. The short forms (echo, discard, ...) are the first ids, equal to
 * their types; a [service NAME] gets the next free id the first time it is
 * loaded, and a later load of the same name and type gets the same one. */
#pragma once

#include "config.h"

#define SERVICE_IDS_MAX 64

struct service_entry {
        char name[CONFIG_SERVICE_NAME_MAX + 1];
        enum service_kind type;
};

/* The id of name with type, added if new (control plane only). Returns the
 * id, or -ENOSPC when SERVICE_IDS_MAX ids are taken. */
int service_register(const char *name, enum service_kind type);
/* The newest id of a service by that name, or -ENOENT. */
int service_lookup(const char *name);
/* Any thread, for an id it was given. */
const char *service_id_name(unsigned id);
enum service_kind service_id_type(unsigned id);
unsigned service_ids(void);
