/* The service types, one row each: the order is their index in enum
 * service_kind, in the settings and in the fd store's saved state, so a
 * new type goes at the end. Its operations are in services/NAME.c as
 * service_NAME (see service.h).
 *
 * The built-ins (inetd's) each have a short form: a section named as the
 * type ([echo], [discard], ...), always there. The other types need
 * settings of their own and exist only as [service NAME] sections. */
#define SERVICE_BUILTINS(X) \
        X(echo)             \
        X(discard)          \
        X(chargen)          \
        X(daytime)          \
        X(time)
#define SERVICE_TYPES(X)    \
        SERVICE_BUILTINS(X) \
        X(exec)             \
        X(forward)
