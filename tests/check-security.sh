#!/bin/sh
# Scores the configured tcpd.service (placeholders replaced) with
# systemd-analyze security: the exposure must stay at 2.0 ("OK") or lower.
# --threshold counts in tenths, so 20 is 2.0. Runs on the host; no systemd
# needs to be running.
set -eu
unit=$1/systemd/tcpd.service
[ -f "$unit" ] || { echo "$unit is missing: was the build configured?"; exit 1; }
if grep -n '@[a-z_]*@' "$unit"; then echo "$unit: unreplaced placeholder"; exit 1; fi
out=$(systemd-analyze security --offline=yes --threshold=20 --no-pager "$unit" 2>&1) && status=0 || status=$?
score=$(printf '%s\n' "$out" | grep 'Overall exposure level' || true)
if [ "$status" != 0 ] || [ -z "$score" ]; then
        printf '%s\n' "$out"
        echo "tcpd.service is above the bar of 2.0 (or systemd-analyze failed: exit $status)"
        exit 1
fi
echo "$score (the bar is 2.0)"
