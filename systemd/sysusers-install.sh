#!/bin/sh
# meson install's last step: create the admin group from the sysusers file
# just installed, as a package's postinst does, so that tcpd-control.socket
# (SocketGroup=) starts. Only into the live root, as root, with
# systemd-sysusers there; a DESTDIR install (packaging, tests) is left alone.
set -eu
conf="$1"
if [ -n "${DESTDIR:-}" ]; then
        exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v systemd-sysusers >/dev/null 2>&1; then
        echo "sysusers-install.sh: run 'systemd-sysusers $conf' as root to create tcpd's admin group" >&2
        exit 0
fi
systemd-sysusers "$conf"
