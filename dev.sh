#!/bin/sh
# tcpd's two developer commands, for a fresh Debian 12 machine, as root:
#   ./dev.sh run    install what is missing, build, run tcpd in the foreground
#                   on 127.0.0.1:7788 (control socket /run/tcpd/control)
#   ./dev.sh test   install what is missing, build, run the whole test suite
# BUILD_DIR (default: build) and MESON_ARGS change where and how it builds;
# MESON_TEST_ARGS is passed to meson test (e.g. --no-suite systemd).
set -eu
cd "$(dirname "$0")"

BUILD_DIR=${BUILD_DIR:-build}
PACKAGES="gcc libc6-dev meson ninja-build pkg-config libsystemd-dev libinih-dev libjansson-dev libmicrohttpd-dev
libncurses-dev libcmocka-dev python3 systemd util-linux mandoc systemd-container debootstrap bash-completion
debhelper dpkg-dev lintian"
# Only for the tests: Prometheus' promtool checks tcpctl metrics, and an
# sshd started by the tests carries tcpctl -H; tmux runs tcpctl top; HAProxy
# sends and takes PROXY headers to and from tcpd. A package
# that ships a daemon is installed with a policy-rc.d that exits 101, so
# that it does not start one.
TEST_PACKAGES="prometheus openssh-server openssh-client tmux haproxy"

install_missing() {
        missing=""
        for p in $PACKAGES ${1:-}; do
                dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
                        missing="$missing $p"
        done
        [ -z "$missing" ] && return 0
        if [ "$(id -u)" != 0 ]; then
                echo "dev.sh: missing packages:$missing (run as root, or install them)" >&2
                exit 1
        fi
        echo "dev.sh: installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
                printf '#!/bin/sh\n# dev.sh: no package starts a service while it installs\nexit 101\n' \
                        >/usr/sbin/policy-rc.d
                chmod 755 /usr/sbin/policy-rc.d
                policy=/usr/sbin/policy-rc.d
        fi
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
                [ -z "$policy" ] || rm -f "$policy"
                exit 1
        }
        [ -z "$policy" ] || rm -f "$policy"
}

build() {
        if [ ! -f "$BUILD_DIR/build.ninja" ]; then
                # shellcheck disable=SC2086
                meson setup "$BUILD_DIR" --werror ${MESON_ARGS:-}
        fi
        ninja -C "$BUILD_DIR"
}

summary() {
        # one closing line for people and CI: "N passed, N failed"
        python3 - "$BUILD_DIR/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = skip = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif r == "SKIP":
        skip += 1
    else:
        bad += 1
print(f"{ok} passed, {bad} failed, {skip} skipped")
PY
}

case "${1:-}" in
run)
        install_missing
        build
        exec "$BUILD_DIR/daemon/tcpd" -c etc/dev.ini
        ;;
test)
        install_missing "$TEST_PACKAGES"
        build
        status=0
        # shellcheck disable=SC2086
        meson test -C "$BUILD_DIR" --print-errorlogs ${MESON_TEST_ARGS:-} || status=$?
        summary
        exit $status
        ;;
*)
        echo "usage: $0 run|test" >&2
        exit 2
        ;;
esac
