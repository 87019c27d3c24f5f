#!/bin/sh
# Installs into a DESTDIR and runs systemd-analyze verify on the installed
# units: it must print nothing to stderr.
set -eu
build=$1
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >/dev/null
unitdir=$(dirname "$(find "$dest" -name tcpd.service -print -quit)")
[ -f "$unitdir/tcpd.service" ] || { echo "tcpd.service was not installed"; exit 1; }
exec_start=$(sed -n 's/^ExecStart=//p' "$unitdir/tcpd.service")
[ -x "$dest$exec_start" ] || { echo "ExecStart=$exec_start is not what meson installed"; exit 1; }
# ExecReload= runs the installed tcpctl ("+": with full privileges)
for unit in tcpd.service tcpd@.service; do
        for key in ExecReload ExecStop; do
                cmd=$(sed -n "s/^$key=[-+]*\([^ ]*\) .*/\1/p" "$unitdir/$unit")
                [ -x "$dest$cmd" ] || { echo "$unit: $key=$cmd is not what meson installed"; exit 1; }
        done
done
# verify checks that ExecStart exists on this host: point it into the DESTDIR
units=$dest/verify
mkdir "$units"
cp "$unitdir"/tcpd.service "$unitdir"/tcpd.socket "$unitdir"/tcpd-control.socket \
        "$unitdir"/tcpd@.service "$unitdir"/tcpd@.socket "$unitdir"/tcpd-control@.socket \
        "$unitdir"/tcpd-metrics.service "$unitdir"/tcpd-metrics.timer "$unitdir"/tcpd-metrics.socket "$units"/
sed -i -e "s|^ExecStart=|ExecStart=$dest|" -e "s|^ExecReload=+|ExecReload=+$dest|" -e "s|^ExecStop=-+|ExecStop=-+$dest|" \
        "$units/tcpd.service" "$units/tcpd@.service" "$units/tcpd-metrics.service"
# an instance's service socket has its address from a drop-in, as tcpd(8) shows
mkdir "$units/tcpd@test.socket.d"
printf '[Socket]\nListenStream=9418\nFileDescriptorName=git\n' > "$units/tcpd@test.socket.d/listen.conf"
err=$(cd "$units" && SYSTEMD_UNIT_PATH="$units:" systemd-analyze verify --man=no \
        tcpd.socket tcpd-control.socket tcpd.service \
        tcpd@test.socket tcpd-control@test.socket tcpd@test.service \
        tcpd-metrics.timer tcpd-metrics.service tcpd-metrics.socket 2>&1 >/dev/null) || { echo "$err"; exit 1; }
if [ -n "$err" ]; then
        echo "systemd-analyze verify complained:"
        echo "$err"
        exit 1
fi
for f in tcpd.service tcpd.socket tcpd-control.socket tcpd@.service tcpd@.socket tcpd-control@.socket \
        tcpd-metrics.service tcpd-metrics.timer tcpd-metrics.socket; do
        if grep -n '@[a-z_]*@' "$unitdir/$f"; then echo "$f: unreplaced placeholder"; exit 1; fi
done
echo "units verified: $(ls "$units" | tr '\n' ' ')"
