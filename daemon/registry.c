/* The process's services by id (see registry.h): append-only, so a worker
 * reads an entry without a lock once it holds an id that was published. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "registry.h"
#include "util.h"

#define SHORT_FORM(name) { #name, SERVICE_KIND_##name },
static struct service_entry entries[SERVICE_IDS_MAX] = { SERVICE_BUILTINS(SHORT_FORM) };
#undef SHORT_FORM
static unsigned n_entries = _SERVICE_BUILTIN_MAX; /* atomic: published with release */

unsigned service_ids(void) {
        return __atomic_load_n(&n_entries, __ATOMIC_ACQUIRE);
}

int service_register(const char *name, enum service_kind type) {
        unsigned n = service_ids();

        for (unsigned i = 0; i < n; i++)
                if (entries[i].type == type && streq(entries[i].name, name))
                        return (int) i;
        if (n == SERVICE_IDS_MAX)
                return -ENOSPC;
        snprintf(entries[n].name, sizeof(entries[n].name), "%s", name);
        entries[n].type = type;
        __atomic_store_n(&n_entries, n + 1, __ATOMIC_RELEASE);
        return (int) n;
}

int service_lookup(const char *name) {
        for (unsigned i = service_ids(); i-- > 0;)
                if (streq(entries[i].name, name))
                        return (int) i;
        return -ENOENT;
}

const char *service_id_name(unsigned id) {
        return id < service_ids() ? entries[id].name : "?";
}

enum service_kind service_id_type(unsigned id) {
        return id < service_ids() ? entries[id].type : SERVICE_ECHO;
}
