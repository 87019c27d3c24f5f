/* Asks systemd, over its bus, for the type of a unit's pending job. systemd
 * sends SIGTERM for a stop and for a restart alike; tcpd.service's ExecStop=
 * (tcpctl prepare-stop, run as root) finds out which, so that tcpd hands
 * its connections over to the fd store on a restart and drains them on a
 * stop. tcpd cannot ask itself: it runs as a dynamic user, which Debian's
 * dbus-daemon does not let onto the system bus. */
#include <errno.h>
#include <stdlib.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include "unitjob.h"
#include "util.h"

/* a stop must not wait long for an answer */
#define UNITJOB_TIMEOUT_USEC (2 * 1000 * 1000ULL)

static int bus_open(sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        /* root talks to systemd directly, as systemctl does: no bus daemon
         * needed */
        if (geteuid() == 0 && access("/run/systemd/private", F_OK) == 0) {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, "unix:path=/run/systemd/private");
                if (r >= 0)
                        r = sd_bus_start(bus);
                if (r >= 0) {
                        *ret = bus;
                        return 0;
                }
                sd_bus_unref(bus);
        }
        return sd_bus_open_system(ret);
}

int unit_job_type(const char *unit, char **ret) {
        _cleanup_free_ char *path = NULL;
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        sd_bus *bus = NULL;
        const char *job_path;
        uint32_t job_id;
        int r;

        *ret = NULL;
        r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", unit, &path);
        if (r < 0)
                return r;
        r = bus_open(&bus);
        if (r < 0)
                return r;
        (void) sd_bus_set_method_call_timeout(bus, UNITJOB_TIMEOUT_USEC);
        r = sd_bus_get_property(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Unit", "Job", &err,
                                &reply, "(uo)");
        if (r >= 0)
                r = sd_bus_message_read(reply, "(uo)", &job_id, &job_path);
        if (r >= 0 && job_id == 0)
                r = (*ret = strdup("none")) ? 0 : -ENOMEM;
        else if (r >= 0)
                r = sd_bus_get_property_string(bus, "org.freedesktop.systemd1", job_path,
                                               "org.freedesktop.systemd1.Job", "JobType", &err, ret);
        sd_bus_error_free(&err);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(bus);
        return r < 0 ? r : 0;
}

bool unit_job_is_restart(const char *type) {
        static const char *const restarts[] = { "restart", "try-restart", "reload-or-restart",
                                                "reload-or-try-restart" };

        for (size_t i = 0; i < ARRAY_SIZE(restarts); i++)
                if (streq(type, restarts[i]))
                        return true;
        return false;
}
