#!/bin/sh
# Where a server's time per echo goes, for BENCHMARKS.md: instructions per
# request under callgrind (repeatable, unlike time), and the top symbols
# under perf, for tcpd (workers = 1) and the reference loop, with the same
# load: tcpd-bench echo, C connections of S bytes.
#   tests/bench/profile.sh [BUILD_DIR]      (needs valgrind and perf)
# Every server started here is stopped by its PID; runs are bounded in time.
set -eu
BUILD=${1:-build}
C=${C:-10}
S=${S:-1024}
SECS=${SECS:-3}
TMP=$(mktemp -d /tmp/tcpd-profile.XXXXXX)
PIDS=""
cleanup() {
        for p in $PIDS; do kill "$p" 2>/dev/null || true; done
        rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
        i=0
        until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do
                i=$((i + 1)); [ $i -lt 200 ] || { echo "server on $1 did not come up" >&2; exit 1; }
                sleep 0.1
        done
}

start() { # name port -> starts the server (under $WRAP), sets SPID
        if [ "$1" = tcpd ]; then
                printf '[tcpd]\ncontrol_socket = %s/control\nlog_level = warning\nworkers = 1\n[echo]\nlisten = 127.0.0.1:%s\n' \
                        "$TMP" "$2" >"$TMP/tcpd.ini"
                $WRAP "$BUILD/daemon/tcpd" -c "$TMP/tcpd.ini" 2>"$TMP/$1.err" &
        else
                $WRAP "$BUILD/tests/bench/ref-echo" -p "$2" 2>"$TMP/$1.err" &
        fi
        SPID=$!
        PIDS="$PIDS $SPID"
        wait_port "$2"
}

stop() { kill -TERM "$SPID"; wait "$SPID" 2>/dev/null || true; }

requests() { sed -n 's/^BENCH .*requests=\([0-9]*\).*/\1/p' "$1"; }

for server in ref-echo tcpd; do
        p=$(port)
        WRAP="valgrind --tool=callgrind --callgrind-out-file=$TMP/$server.cg"
        start $server "$p"
        "$BUILD/tests/bench/tcpd-bench" -m echo -c "$C" -s "$S" -t "$SECS" -w 0 -p "$p" >"$TMP/$server.bench"
        stop
        total=$(callgrind_annotate "$TMP/$server.cg" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
        n=$(requests "$TMP/$server.bench")
        echo "== $server under callgrind: $n requests, $total instructions, $((total / n)) per request (start-up included)"
        callgrind_annotate --inclusive=no "$TMP/$server.cg" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n '3,14p'
done

for server in ref-echo tcpd; do
        p=$(port)
        WRAP=""
        start $server "$p"
        "$BUILD/tests/bench/tcpd-bench" -m echo -c 100 -s "$S" -t "$SECS" -w 1 -p "$p" >"$TMP/$server.pbench" &
        b=$!
        sleep 1
        perf record -q -o "$TMP/$server.perf" -p "$SPID" -- sleep "$SECS" >/dev/null 2>&1 || true
        wait $b
        stop
        echo "== $server under perf, echo C=100 S=$S: top symbols"
        perf report -q -i "$TMP/$server.perf" --no-children --sort dso,sym --percent-limit 2 --stdio 2>/dev/null |
                grep -E '^ +[0-9]' | head -14
done
