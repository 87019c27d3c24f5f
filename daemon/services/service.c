/* The table of service types, from list.h. */
#include "services/service.h"

#define SERVICE_ROW(name) &service_##name,
const struct service_type *const service_types[] = { SERVICE_TYPES(SERVICE_ROW) };
#undef SERVICE_ROW
