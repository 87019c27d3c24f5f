#!/usr/bin/env python3
"""The Debian package as an admin meets it, under a real systemd: built from
the source tree with dpkg-buildpackage (twice, the second time with a higher
version), checked with lintian, installed with `apt-get install ./x.deb` into
a booted box that has no network and already has Debian's TCP Wrappers
(package tcpd), upgraded while 100 clients are connected, and purged.

Skips like test_e2e.py (a failure under CI=true), and also without
dpkg-buildpackage, debhelper, lintian or the package's build dependencies.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nspawn  # noqa: E402
from nspawn import BoxError, EchoClient  # noqa: E402
from test_e2e import Checks, list_connections, unit_props  # noqa: E402
from test_restart import Load  # noqa: E402

N = 100
SOURCE = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEB_DIR = "/mnt/tcpd-debs"
SOCKETS = ["tcpd.socket", "tcpd-control.socket"]
BUILD_TIMEOUT = 300
# Paths that change in any box where apt runs, package or not: apt's and
# dpkg's state, caches and logs, the backups of the user database that
# systemd-sysusers and groupdel write, and the directory systemd makes for
# dynamic users (tcpd.service's tcpd-daemon), empty once the service stops.
# The "nothing left behind" check ignores only these.
CHURN = re.compile(r"^(/var/lib/(apt|dpkg)/|/var/cache/apt/|/var/log/|/etc/(group|gshadow|passwd|shadow)-$|"
                   r"/run/systemd/dynamic-uid$)")


def skip(why):
    """Exit 77, meson's skip; under CI=true a skip is a failure."""
    if os.environ.get("CI") == "true":
        print(f"FAIL systemd-deb cannot run here: it {why}; under CI=true that is a failure, not a skip")
        print("0 passed, 1 failed")
        sys.exit(1)
    print(f"SKIP: systemd-deb {why}")
    sys.exit(77)


def preconditions():
    if os.geteuid() != 0:
        skip("needs root (it boots a container with systemd-nspawn)")
    for tool, pkg in (("systemd-nspawn", "systemd-container"), ("debootstrap", "debootstrap"),
                      ("nsenter", "util-linux"), ("dpkg-buildpackage", "dpkg-dev"),
                      ("dh", "debhelper"), ("lintian", "lintian")):
        if not shutil.which(tool):
            skip(f"needs {tool} (apt-get install {pkg})")
    r = subprocess.run(["dpkg-checkbuilddeps"], cwd=SOURCE, capture_output=True, text=True)
    if r.returncode != 0:
        skip(f"needs the package's build dependencies (apt-get build-dep ./): {r.stderr.strip()}")


# -- building ----------------------------------------------------------------

def _ignore(top):
    """What is not source: build directories (meson's and dpkg-buildpackage's)
    and what they leave in debian/."""
    def ignore(d, names):
        out = {n for n in names if n in ("__pycache__", ".git") or n.endswith(".o")}
        if os.path.samefile(d, top):
            out |= {n for n in names if n.startswith(("build", "obj-"))}
        elif os.path.basename(d) == "debian" and os.path.samefile(os.path.dirname(d), top):
            out |= {n for n in names if n in ("build", ".debhelper", "files", "tmp", "debhelper-build-stamp")
                    or n.endswith((".substvars", ".debhelper", ".debhelper.log"))
                    or os.path.isdir(os.path.join(d, n, "DEBIAN"))}  # a package's tree
        return out
    return ignore


def changelog_head(src):
    """(source name, version, maintainer) of the newest debian/changelog entry."""
    with open(os.path.join(src, "debian", "changelog")) as f:
        text = f.read()
    m = re.match(r"^(\S+) \(([^)]+)\) ", text)
    t = re.search(r"^ -- (.+?)  ", text, re.M)
    if not m or not t:
        raise AssertionError("debian/changelog does not start with an entry")
    return m.group(1), m.group(2), t.group(1)


def add_changelog_entry(src, version, text):
    """A new newest entry in debian/changelog, as dch would write it."""
    path = os.path.join(src, "debian", "changelog")
    name, _, maintainer = changelog_head(src)
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    with open(path) as f:
        old = f.read()
    with open(path, "w") as f:
        f.write(f"{name} ({version}) unstable; urgency=medium\n\n  * {text}\n\n -- {maintainer}  {date}\n\n" + old)


def dpkg_buildpackage(src):
    """dpkg-buildpackage -us -uc -b without the tests (they ran in the meson
    suite); returns the .changes file it wrote next to src."""
    env = dict(os.environ, DEB_BUILD_OPTIONS=f"nocheck parallel={os.cpu_count() or 1}", LC_ALL="C.UTF-8")
    name, version, _ = changelog_head(src)
    started = time.monotonic()
    try:
        r = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"dpkg-buildpackage: no end within {BUILD_TIMEOUT} s") from e
    if r.returncode != 0:
        raise AssertionError(f"dpkg-buildpackage exited with {r.returncode}:\n{(r.stdout + r.stderr)[-3000:]}")
    changes = glob.glob(os.path.join(os.path.dirname(src), f"{name}_{version}_*.changes"))
    if len(changes) != 1:
        raise AssertionError(f"dpkg-buildpackage wrote {len(changes)} .changes files for {version}")
    print(f"#    built {os.path.basename(changes[0])} in {time.monotonic() - started:.0f} s", flush=True)
    return changes[0]


def debs_of(changes):
    """{package name: .deb path} of the binary packages a .changes lists."""
    out = {}
    with open(changes) as f:
        for name in re.findall(r"^ \S+ \d+ \S+ \S+ (\S+\.deb)$", f.read(), re.M):
            out[name.split("_")[0]] = os.path.join(os.path.dirname(changes), name)
    return out


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True, check=True).stdout.strip()


def depends(deb):
    """The packages a .deb depends on, the first of each set of alternatives."""
    return {re.split(r"[\s(:]", dep.split("|")[0].strip())[0]
            for dep in deb_field(deb, "Depends").split(",") if dep.strip()}


# -- in the box --------------------------------------------------------------

def apt_get(box, *args, timeout=180):
    return box.run(["apt-get", "-y", "-q", "--no-install-recommends", *args],
                   env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=timeout)


def snapshot(box):
    """Every path under the directories a package may touch."""
    r = box.run(["find", "/etc", "/usr", "/run", "/var", "/opt", "/srv", "-xdev"], check=False)
    return {p for p in r.stdout.splitlines() if not CHURN.match(p)}


def package_files(box, pkg):
    """The files (not directories) dpkg lists for a package."""
    paths = box.run(["dpkg-query", "-L", pkg]).stdout.split()
    r = box.run(["sh", "-c", 'for p; do [ -d "$p" ] || echo "$p"; done', "-"] + paths)
    return set(r.stdout.split())


def main_pid(box):
    return int(unit_props(box, "tcpd.service", "MainPID")["MainPID"])


def socket_starts(box):
    """When each socket unit last became active, and its invocation: both stay
    the same unless the unit was restarted."""
    return {u: unit_props(box, u, "ActiveEnterTimestampMonotonic", "InvocationID") for u in SOCKETS}


SETTINGS = "/etc/tcpd/tcpd.ini"
TYPO = "max_conections = 10"


def box_time(box):
    return box.run(["date", "+%s.%N"]).stdout.strip()


def journal_since(box, since, *args):
    return box.run(["journalctl", "-u", "tcpd", "--since", f"@{since}", "-o", "cat", "--no-pager", *args],
                   check=False).stdout


def all_active(box):
    for u in SOCKETS + ["tcpd.service"]:
        p = unit_props(box, u, "ActiveState")
        assert p["ActiveState"] == "active", f"{u}: {p}"


def break_settings(box):
    box.run(["sh", "-c", f"cp {SETTINGS} {SETTINGS}.good && printf '\\n[tcpd]\\n{TYPO}\\n' >> {SETTINGS}"])


def fix_settings(box):
    box.run(["mv", f"{SETTINGS}.good", SETTINGS])


def broken_settings_with_clients(box, t, load):
    """The admin's typo, then a reload, a restart and a crash, with the load's
    clients connected: nothing is dropped, and every place says what is
    wrong."""
    with t.check(f"a typo ({TYPO}), then systemctl reload: it fails, and says why in systemctl status "
                 "and the journal; the clients go on"):
        break_settings(box)
        since = box_time(box)
        r = box.run(["systemctl", "reload", "tcpd"], check=False)
        assert r.returncode != 0, f"systemctl reload exited {r.returncode}: {r.stdout}{r.stderr}"
        st = box.run(["systemctl", "status", "--no-pager", "-l", "tcpd"], check=False).stdout
        assert "max_conections" in st, st
        assert "max_conections" in journal_since(box, since), "not in the journal"
        p = unit_props(box, "tcpd.service", "ActiveState")
        assert p["ActiveState"] == "active", f"tcpd.service: {p}"
        r = load.ask("report", "echoes")
        assert r["eof"] == 0 and r["reset"] == 0, str(r)

    for how in ("restart", "crash"):
        with t.check(f"{how} with the typo in place: tcpd runs on the last settings that loaded, keeps "
                     f"all {N} connections, takes new ones, and STATUS= and tcpctl status name the error"):
            pid = main_pid(box)
            if how == "restart":
                box.run(["systemctl", "restart", "tcpd"])
            else:
                load.ask("relaxed", "relaxed")
                box.run(["kill", "-SEGV", str(pid)])
            deadline = time.monotonic() + 20
            while main_pid(box) in (0, pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert main_pid(box) not in (0, pid), "no new main process"
            while unit_props(box, "tcpd.service", "ActiveState")["ActiveState"] == "activating" and \
                    time.monotonic() < deadline:
                time.sleep(0.1)  # a crash: the new process is up before its READY=1
            all_active(box)
            status = unit_props(box, "tcpd.service", "StatusText")["StatusText"]
            assert "max_conections" in status and "last settings that loaded" in status, status
            st = box.run(["tcpctl", "status"]).stdout
            assert "running on the last settings that loaded" in st and "max_conections" in st, st
            time.sleep(1)
            n = len(list_connections(box))
            assert n == N, f"tcpctl list shows {n} of {N}"
            r = load.ask("report", "echoes")
            assert r["eof"] == 0 and r["reset"] == 0, f"connections lost: {r}"
            assert load.ask("probe", "probe")["probe"] == "ok", "a new client was not served"
            r = box.run(["/usr/libexec/tcpd/tcpd", "--check-config"], check=False)
            assert r.returncode == 1 and "max_conections" in r.stderr, f"--check-config: {r.returncode} {r.stderr}"

    with t.check("the fix, then systemctl reload: it succeeds, and the error is gone"):
        fix_settings(box)
        box.run(["systemctl", "reload", "tcpd"])
        st = box.run(["tcpctl", "status"]).stdout
        assert "settings:" not in st, st
        r = load.ask("report", "echoes")
        assert r["eof"] == 0 and r["reset"] == 0, str(r)


def stop_drains(box, t):
    """systemctl stop (not a restart): tcpd sends every byte it owes, then a
    FIN, although the connection is also in systemd's fd store, which
    systemd empties once the unit is down."""
    with t.check("systemctl stop tcpd.service with a client owed bytes: the client reads all of them, then a "
                 "FIN; the journal says it drained rather than handed over"):
        c = EchoClient(box)
        try:
            c.fill()
            conns = list_connections(box)
            assert len(conns) == 1, f"{len(conns)} connections"
            owed = conns[0]["bytes_in"] - conns[0]["bytes_out"]
            assert owed > 0, f"nothing owed: {conns[0]}"
            since = box_time(box)
            done = threading.Event()

            def stop():
                box.run(["systemctl", "stop", "tcpd.service"], timeout=40)
                done.set()
            threading.Thread(target=stop, daemon=True).start()
            time.sleep(0.5)
            got, end = c.read_all(timeout=30)
            assert end == "eof", f"the stream ended with a {end} after {got} bytes"
            assert got == conns[0]["bytes_in"], f"got {got} of the {conns[0]['bytes_in']} bytes tcpd read"
            assert done.wait(30), "systemctl stop did not return"
            log = journal_since(box, since)
            assert "not restarting it: draining" in log, log[-2000:]
            assert "handing" not in log, log[-2000:]
        finally:
            c.close()


def broken_settings_at_first_start(box, t):
    """No earlier settings (the service was stopped, so systemd emptied its
    store) and a typo: tcpd stays up and refuses clients rather than fail
    until the sockets do; a reload after the fix serves them."""
    with t.check("first start with a typo: tcpd.service stays up, the sockets do not fail, clients are "
                 "refused and counted, tcpctl answers; the fix and a reload bring the echo up"):
        box.run(["systemctl", "stop", "tcpd.service"])
        break_settings(box)
        box.run(["systemctl", "start", "tcpd.socket", "tcpd-control.socket"])
        for _ in range(3):  # each client would have started tcpd again had it exited
            try:
                c = EchoClient(box)
            except BoxError:
                continue  # refused before it could say hello: as good
            try:
                try:
                    got = c.echo("hello\n", timeout=5)
                except BoxError as e:
                    got = repr(e)
                assert got != "hello\n", "a client was served on no settings"
            finally:
                c.close()
        all_active(box)
        status = unit_props(box, "tcpd.service", "StatusText")["StatusText"]
        assert "refusing clients" in status and "max_conections" in status, status
        st = box.run(["tcpctl", "status"]).stdout
        assert "NONE LOADED" in st and "settings 3" in st, st
        fix_settings(box)
        box.run(["systemctl", "reload", "tcpd"])
        c = EchoClient(box)
        try:
            assert c.echo("hello\n") == "hello\n"
        finally:
            c.close()


def run(box, t, pkg, debs, versions):
    v1, v2 = versions
    broken_window = [None, None]
    deb1, deb2 = (os.path.join(DEB_DIR, os.path.basename(debs[v][pkg])) for v in versions)
    before = None

    with t.check("the box has Debian's TCP Wrappers (package tcpd) and no network"):
        st = box.run(["dpkg-query", "-W", "-f", "${Status}", "tcpd"]).stdout
        assert st == "install ok installed", f"tcpd: {st}"
        links = [line.split(":")[0].strip() for line in box.run(["cat", "/proc/net/dev"]).stdout.splitlines()[2:]]
        assert links == ["lo"], f"network interfaces in the box: {links}"
        before = snapshot(box)

    with t.check(f"apt-get install {deb1}: offline, the tree has every dependency"):
        r = apt_get(box, "install", deb1)
        st = box.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", pkg]).stdout
        assert st == f"install ok installed {v1}", st
        for line in r.stdout.splitlines() + r.stderr.splitlines():
            if re.match(r"^(E|W):", line):
                print(f"#    {line}")

    if t.failed:
        return
    with t.check("no file in common with TCP Wrappers: /usr/sbin/tcpd and tcpd(8) are still tcpd's"):
        ours, theirs = package_files(box, pkg), package_files(box, "tcpd")
        common = ours & theirs
        assert not common, f"both packages ship {sorted(common)}"
        for path in ("/usr/sbin/tcpd", "/usr/share/man/man8/tcpd.8.gz"):
            owner = box.run(["dpkg-query", "-S", path]).stdout.split(":")[0]
            assert owner == "tcpd", f"{path} belongs to {owner}"
        box.run(["dpkg", "--verify", "tcpd"])

    with t.check("the daemon is /usr/libexec/tcpd/tcpd, its page tcpd-echo(8), the settings file a conffile"):
        exec_start = box.run(["systemctl", "show", "tcpd.service", "-p", "ExecStart"]).stdout
        assert "path=/usr/libexec/tcpd/tcpd " in exec_start, exec_start
        box.run(["test", "-x", "/usr/libexec/tcpd/tcpd"])
        box.run(["test", "-f", "/usr/share/man/man8/tcpd-echo.8.gz"])
        docs = unit_props(box, "tcpd.service", "Documentation")["Documentation"]
        assert "man:tcpd-echo(8)" in docs and "man:tcpd(8)" not in docs, docs
        conffiles = box.run(["dpkg-query", "-W", "-f", "${Conffiles}", pkg]).stdout
        assert re.search(r"^ /etc/tcpd/tcpd\.ini [0-9a-f]{32}$", conffiles, re.M), conffiles

    with t.check("the package ships the template units for instances, which read /etc/tcpd/NAME.ini"):
        files = package_files(box, pkg)
        for unit in ("tcpd@.service", "tcpd@.socket", "tcpd-control@.socket"):
            assert any(f.endswith("/systemd/system/" + unit) for f in files), f"no {unit} in {sorted(files)}"
        exec_start = box.run(["systemctl", "show", "tcpd@web.service", "-p", "ExecStart"]).stdout
        assert "/usr/libexec/tcpd/tcpd -c /etc/tcpd/web.ini" in exec_start.replace(" ; ", " "), exec_start

    with t.check("the install made the admin group tcpd and enabled and started both sockets; "
                 "tcpd.service waits for its first client"):
        box.run(["getent", "group", "tcpd"])
        for u in SOCKETS:
            p = unit_props(box, u, "ActiveState", "UnitFileState")
            assert p == {"ActiveState": "active", "UnitFileState": "enabled"}, f"{u}: {p}"
        p = unit_props(box, "tcpd.service", "ActiveState", "UnitFileState")
        assert p == {"ActiveState": "inactive", "UnitFileState": "disabled"}, f"tcpd.service: {p}"
        st = box.run(["stat", "-c", "%A %U %G", "/run/tcpd/control"]).stdout.split()
        assert st == ["srw-rw----", "root", "tcpd"], f"/run/tcpd/control is {' '.join(st)}"

    with t.check("with no other step, tcpctl status answers and echo works on port 7788"):
        r = box.run(["tcpctl", "status"])
        assert "7788" in r.stdout, f"no listener on 7788 in:\n{r.stdout}"
        c = EchoClient(box)
        try:
            assert c.echo("hello\n") == "hello\n"
        finally:
            c.close()

    if t.failed:
        return
    load = Load(box, N)
    try:
        ids = pid = sockets = None
        with t.check(f"{N} clients connected and echoing"):
            load.wait("ready", timeout=60)
            ids = {c["peer_port"]: c["id"] for c in list_connections(box)}
            assert len(ids) == N, f"tcpctl list shows {len(ids)}"
            pid = main_pid(box)
            sockets = socket_starts(box)

        with t.check(f"apt-get install {deb2} with {N} clients connected: tcpd.service restarted, "
                     "the sockets not, no connection dropped, new ones accepted throughout"):
            assert ids, "no clients"
            done = threading.Event()
            err = []

            def upgrade():
                try:
                    apt_get(box, "install", deb2)
                except Exception as e:  # noqa: BLE001
                    err.append(e)
                done.set()
            started = time.monotonic()
            threading.Thread(target=upgrade, daemon=True).start()
            probes = []
            while not done.is_set() or len(probes) < 5:
                probes.append(load.ask("probe", "probe")["probe"])
                time.sleep(0.05)
            took = time.monotonic() - started
            assert not err, str(err[0])
            st = box.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", pkg]).stdout
            assert st == f"install ok installed {v2}", st
            new_pid = main_pid(box)
            assert new_pid not in (0, pid), f"tcpd.service's main process is {new_pid}, was {pid}"
            assert socket_starts(box) == sockets, f"a socket unit was restarted: {sockets} -> {socket_starts(box)}"
            after = {c["peer_port"]: c["id"] for c in list_connections(box)}
            lost = [p for p in ids if p not in after]
            assert not lost, f"{len(lost)} connections lost, e.g. port {lost[:3]}"
            changed = [p for p in ids if after[p] != ids[p]]
            assert not changed, f"{len(changed)} ids changed"
            r = load.ask("report", "echoes")
            assert r["eof"] == 0 and r["reset"] == 0 and r["mismatch"] == 0, str(r)
            assert all(p == "ok" for p in probes), f"new connections during the upgrade: {probes}"
            print(f"#    upgrade took {took:.1f} s; tcpd pid {pid} -> {new_pid}; "
                  f"longest echo wait {r['max_wait_ms']:.0f} ms; {len(probes)} probes", flush=True)

        with t.check("the echo goes on after the upgrade, byte-exact"):
            r1 = load.ask("report", "echoes")
            time.sleep(1)
            r2 = load.ask("report", "echoes")
            assert r2["echoes"] > r1["echoes"] + N, f"echoes {r1['echoes']} -> {r2['echoes']}"
            assert r2["eof"] == 0 and r2["reset"] == 0 and r2["mismatch"] == 0, str(r2)

        if not t.failed:
            broken_window[0] = box_time(box)
            broken_settings_with_clients(box, t, load)
    finally:
        try:
            load.ask("stop", "final")
        except Exception:  # noqa: BLE001
            pass
        load.close()

    if not t.failed:
        stop_drains(box, t)
        broken_settings_at_first_start(box, t)
    broken_window[1] = box_time(box)

    with t.check(f"apt-get purge {pkg}: nothing left behind, TCP Wrappers untouched"):
        apt_get(box, "purge", pkg)
        r = box.run(["dpkg-query", "-W", "-f", "${Status}", pkg], check=False)
        assert r.returncode != 0 or "not-installed" in r.stdout, f"{pkg}: {r.stdout}"
        for u in SOCKETS + ["tcpd.service"]:
            p = unit_props(box, u, "LoadState", "ActiveState")
            assert p == {"LoadState": "not-found", "ActiveState": "inactive"}, f"{u}: {p}"
        r = box.run(["getent", "group", "tcpd"], check=False)
        assert r.returncode == 2, f"the group tcpd is still there: {r.stdout}"
        left = sorted(snapshot(box) - before) if before is not None else ["(no snapshot before the install)"]
        assert not left, "left behind: " + " ".join(left)
        box.run(["dpkg", "--verify", "tcpd"])
        box.run(["test", "-x", "/usr/sbin/tcpd"])

    with t.check("no unit failed; tcpd logged nothing at err or worse (but for the broken settings on purpose)"):
        r = box.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
        assert not r.stdout.strip(), r.stdout
        window = [["--until", f"@{broken_window[0]}"], ["--since", f"@{broken_window[1]}"]] \
            if broken_window[0] and broken_window[1] else [[]]
        for w in window:
            r = box.run(["journalctl", "-u", "tcpd", "-p", "err", "-o", "cat", "--no-pager", *w], check=False)
            assert not r.stdout.strip(), r.stdout


def main():
    preconditions()

    def on_term(signum, frame):
        raise SystemExit(f"signal {signum}: tearing the box down")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    t = Checks()
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="tcpd-deb-")
    try:
        os.chmod(work, 0o755)  # apt in the box reads the .debs as _apt
        src = os.path.join(work, "src")
        debs = {}
        versions = []
        pkg = None
        with t.check("dpkg-buildpackage -us -uc -b builds the package from the tree, "
                     "and again with a changelog entry of a higher version"):
            shutil.copytree(SOURCE, src, ignore=_ignore(SOURCE), symlinks=True)
            name, v1, _ = changelog_head(src)
            v2 = v1 + "+upgrade1"
            subprocess.run(["dpkg", "--compare-versions", v2, "gt", v1], check=True)
            first = dpkg_buildpackage(src)
            add_changelog_entry(src, v2, "Rebuilt by the systemd-deb test, to upgrade to.")
            second = dpkg_buildpackage(src)
            debs = {v1: debs_of(first), v2: debs_of(second)}
            versions = [v1, v2]
            pkg = name
            assert pkg in debs[v1] and pkg in debs[v2], f"no {pkg} .deb in {debs}"
            for f in os.listdir(work):
                if f.endswith(".deb"):
                    os.chmod(os.path.join(work, f), 0o644)

        if t.failed:
            print(f"{t.passed} passed, {t.failed} failed")
            return 1
        with t.check(f"lintian {os.path.basename(first)}: no error and no warning"):
            r = subprocess.run(["lintian", "-I", "--fail-on", "error,warning", first],
                               capture_output=True, text=True, timeout=300)
            tags = [line for line in r.stdout.splitlines() if re.match(r"^[EWIPX]: ", line)]
            for line in tags:
                print(f"#    {line}")
            bad = [line for line in tags if line.startswith(("E:", "W:"))]
            assert not bad and r.returncode == 0, f"exit {r.returncode}:\n" + "\n".join(bad or [r.stderr])

        tree = None
        with t.check("a bookworm tree with systemd, TCP Wrappers and every dependency of the package"):
            binaries = [b for b in (os.environ.get("TCPD"), os.environ.get("TCPCTL")) if b]
            # The meson suite's tree, when it holds all the package needs.
            wanted = set(nspawn.runtime_packages(binaries)) if binaries else set()
            deps = depends(debs[versions[0]][pkg])
            tree = nspawn.ensure_tree(sorted(wanted))
            missing = deps - nspawn.tree_packages(tree)
            if missing:
                print(f"#    the package needs {' '.join(sorted(missing))} too: another tree")
                tree = nspawn.ensure_tree(sorted(wanted | deps))

        if t.failed:
            print(f"{t.passed} passed, {t.failed} failed")
            return 1
        with nspawn.own_cgroup():
            box = nspawn.Box(tree, {work: DEB_DIR})
            try:
                with t.check("the box boots"):
                    box.start()
                if not t.failed:
                    run(box, t, pkg, debs, versions)
                if t.failed:
                    r = box.run(["journalctl", "-u", "tcpd", "-u", "tcpd.socket", "-u", "tcpd-control.socket",
                                 "--no-pager", "-n", "40"], check=False)
                    print(r.stdout)
            except BoxError as e:
                t.failed += 1
                print(f"FAIL {e}")
            finally:
                box.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# {time.monotonic() - started:.1f} s in all")
    print(f"{t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
