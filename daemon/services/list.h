/* The built-in service types, one row each: the order is their index in
 * enum service_kind, in the settings and in the fd store's saved state, so
 * a new type goes at the end. Its operations are in services/NAME.c as
 * service_NAME (see service.h). */
#define SERVICE_TYPES(X) \
        X(echo)          \
        X(discard)       \
        X(chargen)       \
        X(daytime)       \
        X(time)
