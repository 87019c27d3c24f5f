"""A real systemd for the tests: a cached Debian tree booted with systemd-nspawn.

The tree (debootstrap --variant=minbase, bookworm, with systemd and the
libraries tcpd links) is made once under /var/cache/tcpd-tests and never
written again: the box boots it with --volatile=overlay, so every write goes
to a tmpfs that dies with the box.

The project goes in the way an admin installs it: `meson install --destdir`
into a temporary directory on the host, bind-mounted read-only into the box
at /mnt/tcpd-install and copied into place there, at the paths the build was
configured with. So the paths in the units are right for any --prefix
(/usr/local, as `./dev.sh test` builds, or /usr), and the cached tree stays
clean.

Commands run fully inside the box with `nsenter -t LEADER -a`. Clients of
the echo service are the host's python3 in the box's network namespace only
(`nsenter -t LEADER -n`): the box has a private network, so its port 7788 is
reachable on the box's loopback and nowhere else.

Facts this relies on (systemd 252, a host where systemd is not PID 1): both
--register=no and --keep-unit are needed; the box's PID 1 is a child of the
nspawn process; nspawn leaves empty cgroups behind in its caller's cgroup, so
the harness moves itself into cgroups of its own and removes them after; a
SIGKILLed nspawn leaves the box's systemd running, so teardown kills PID 1 too.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

CACHE_DIR = os.environ.get("TCPD_TEST_CACHE", "/var/cache/tcpd-tests")
SUITE = "bookworm"
MIRROR = os.environ.get("TCPD_TEST_MIRROR", "http://deb.debian.org/debian")
# systemd as PID 1, dbus for systemctl, procps for ps and pkill in a pinch,
# passwd for useradd; util-linux (setpriv, runuser) and tar are essential.
# tcpd is Debian's TCP Wrappers (/usr/sbin/tcpd, tcpd(8)), which inetd
# packages depend on: the project's Debian package must install beside it.
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "procps", "passwd", "tcpd"]
# What tcpd and tcpctl link today (checked with ldd); libraries found by ldd
# on the built binaries are added to these at run time.
RUNTIME_PACKAGES = ["libinih1", "libjansson4", "libsystemd0"]
INSTALL_DIR = "/mnt/tcpd-install"
BOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}
HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(msg, flush=True)


class BoxError(Exception):
    pass


# -- the cached tree ---------------------------------------------------------

def _packages_of(paths):
    """{library path: the Debian package that ships it}. dpkg's database has
    some libraries under /lib and some under /usr/lib (merged /usr), so ask
    for each spelling, all in one dpkg -S."""
    spellings = {}
    for path in paths:
        for p in (path, os.path.realpath(path)):
            for s in (p, p[4:] if p.startswith("/usr/") else "/usr" + p):
                spellings.setdefault(s, path)
    r = subprocess.run(["dpkg", "-S"] + list(spellings), capture_output=True, text=True)
    found = {}
    for line in r.stdout.splitlines():
        pkgs, _, p = line.partition(": ")
        if p in spellings and "," not in pkgs:
            found[spellings[p]] = pkgs.split(":")[0].strip()
    return found


def runtime_packages(binaries):
    """RUNTIME_PACKAGES plus the package of every library ldd finds in the
    binaries (so a new dependency of tcpd makes a new tree, not a box where
    tcpd cannot start)."""
    libs = set()
    for b in binaries:
        r = subprocess.run(["ldd", b], capture_output=True, text=True)
        if r.returncode != 0:
            raise BoxError(f"ldd {b} failed: {r.stderr.strip()}")
        for line in r.stdout.splitlines():
            if "not found" in line:
                raise BoxError(f"{b}: {line.strip()}")
            parts = line.split("=>")
            if len(parts) == 2 and parts[1].strip().startswith("/"):
                libs.add(parts[1].strip().split(" (")[0])
    found = _packages_of(sorted(libs))
    for lib in sorted(libs - set(found)):
        log(f"# no Debian package ships {lib}: the box may lack it")
    return sorted(set(RUNTIME_PACKAGES) | set(found.values()))


def _mounts_under(path):
    prefix = path.rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == path or mnt.startswith(prefix):
                found.append(mnt)
    return found


def _remove_stale(path):
    """Removes a tree an interrupted debootstrap left behind, after
    unmounting what it mounted inside (proc, sys): rmtree must never walk
    into those."""
    for mnt in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    if _mounts_under(path):
        log(f"# leaving {path}: something is still mounted inside")
        return
    shutil.rmtree(path, ignore_errors=True)


def ensure_tree(packages):
    """Returns the path of a bookworm tree with the packages, making it if
    there is none yet. It is built in a temporary directory next to its
    final place and renamed into it, so a tree that exists is complete; a
    lock keeps two test runs from building it twice."""
    pkgs = sorted(set(BASE_PACKAGES) | set(packages))
    key = hashlib.sha256(" ".join([SUITE] + pkgs).encode()).hexdigest()[:12]
    tree = os.path.join(CACHE_DIR, f"{SUITE}-{key}")
    if os.path.isfile(os.path.join(tree, ".tcpd-tree")):
        return tree
    os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
    with open(os.path.join(CACHE_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(os.path.join(tree, ".tcpd-tree")):
            return tree
        # Under the lock no other run is building: a temporary tree is stale.
        for name in os.listdir(CACHE_DIR):
            if name.startswith(".tmp-"):
                _remove_stale(os.path.join(CACHE_DIR, name))
        tmp = tempfile.mkdtemp(prefix=f".tmp-{SUITE}-{key}-", dir=CACHE_DIR)
        os.chmod(tmp, 0o755)
        log(f"# debootstrap {SUITE} into {tree} (once; about a minute): {' '.join(pkgs)}")
        started = time.monotonic()
        try:
            r = subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=" + ",".join(pkgs),
                 SUITE, tmp, MIRROR],
                stdin=subprocess.DEVNULL, capture_output=True, text=True)
            if r.returncode != 0:
                sys.stdout.write(r.stdout[-4000:])
                sys.stdout.write(r.stderr[-4000:])
                raise BoxError(f"debootstrap failed with exit {r.returncode}")
            # A getty on the console would wait on nspawn's pipe for nothing.
            os.symlink("/dev/null", os.path.join(tmp, "etc/systemd/system/console-getty.service"))
            with open(os.path.join(tmp, ".tcpd-tree"), "w") as f:
                f.write(json.dumps({"suite": SUITE, "packages": pkgs, "mirror": MIRROR}) + "\n")
            if _mounts_under(tmp):
                raise BoxError(f"debootstrap left mounts under {tmp}")
            os.rename(tmp, tree)
        except BaseException:
            _remove_stale(tmp)
            raise
        log(f"# tree ready in {time.monotonic() - started:.0f} s")
    return tree


def tree_packages(tree):
    """The names of the packages installed in a tree, from its dpkg status."""
    names = set()
    with open(os.path.join(tree, "var/lib/dpkg/status")) as f:
        for stanza in f.read().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                          if ": " in line and not line.startswith(" "))
            if fields.get("Status") == "install ok installed" and "Package" in fields:
                names.add(fields["Package"])
    return names


# -- a cgroup of our own -----------------------------------------------------

def _cgroup_hierarchies():
    """(mount point, our path in it) for the hierarchies nspawn writes to:
    the unified one and v1's name=systemd, or just /sys/fs/cgroup on a pure
    cgroup v2 host."""
    found = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and controllers == "":
                root = "/sys/fs/cgroup/unified"
                if not os.path.exists(os.path.join(root, "cgroup.procs")):
                    root = "/sys/fs/cgroup"
            elif controllers == "name=systemd":
                root = "/sys/fs/cgroup/systemd"
            else:
                continue
            if os.path.exists(os.path.join(root, "cgroup.procs")):
                found.append((root, path))
    return found


class CgroupScope:
    # Seconds to wait at the end for the cgroups to empty before killing
    # what is left; a test cut short lowers it, and what it leaves behind
    # the next run removes (see _reap_stale).
    grace = 5


@contextlib.contextmanager
def own_cgroup():
    """Runs the body in cgroups of our own (nspawn --keep-unit puts the box's
    cgroups below its caller's), then moves back and removes them. Yields a
    CgroupScope."""
    scope = CgroupScope()
    name = f"tcpd-test-{os.getpid()}"
    made = []
    for root, path in _cgroup_hierarchies():
        orig = os.path.join(root, path.lstrip("/"))
        mine = os.path.join(orig, name)
        _reap_stale(orig)
        try:
            os.mkdir(mine)
            with open(os.path.join(mine, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            made.append((orig, mine))
        except OSError as e:
            log(f"# cannot use a cgroup of our own in {root}: {e}")
            with contextlib.suppress(OSError):
                os.rmdir(mine)
    try:
        yield scope
    finally:
        for orig, mine in made:
            with contextlib.suppress(OSError):
                with open(os.path.join(orig, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
            _remove_cgroup(mine, grace=scope.grace, kill=scope.grace > 1)


def _cgroup_pids(cg):
    pids = set()
    for dirpath, _, files in os.walk(cg):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError), open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids.update(int(p) for p in f.read().split())
    pids.discard(os.getpid())
    return pids


def _reap_stale(parent):
    """Removes the cgroups of earlier runs whose test process is gone (killed
    by meson's timeout, say), with the boxes still running in them: the box's
    systemd is in a session of its own, so a signal to the test's process
    group does not reach it."""
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            if not name.startswith("tcpd-test-") or not name[10:].isdigit():
                continue
            try:
                with open(f"/proc/{name[10:]}/cgroup") as f:
                    if f"/{name}\n" in f.read():
                        continue  # its test is still running
            except OSError:
                pass
            log(f"# removing {os.path.join(parent, name)}, left by a run that did not finish")
            _remove_cgroup(os.path.join(parent, name), grace=0)


def _remove_cgroup(cg, grace=5, kill=True):
    """Removes cg and the cgroups below it once they are empty. Processes
    still in them after grace seconds are killed (if kill), and waited for
    another 5 s: only this harness puts processes there (itself, nspawn,
    the box)."""
    deadline = time.monotonic() + grace
    killed = not kill
    while True:
        for dirpath, _, _ in sorted(os.walk(cg), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not os.path.exists(cg):
            return
        if time.monotonic() > deadline:
            if killed:
                log(f"# cgroup {cg} is not empty yet: the next run removes it")
                return
            # Everything in this cgroup was started by this test.
            for pid in _cgroup_pids(cg):
                log(f"# killing leftover process {pid} in {cg}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + 5
        time.sleep(0.05)


# -- installing the project --------------------------------------------------

def meson_install(build_dir):
    """Installs the build into a new temporary DESTDIR and returns it."""
    dest = tempfile.mkdtemp(prefix="tcpd-destdir-")
    os.chmod(dest, 0o755)
    r = subprocess.run(["meson", "install", "-C", build_dir, "--destdir", dest,
                        "--no-rebuild", "--quiet"], capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise BoxError(f"meson install failed:\n{r.stdout}{r.stderr}")
    return dest


# -- the box -----------------------------------------------------------------

def _ns_id(pid, ns):
    try:
        return os.readlink(f"/proc/{pid}/ns/{ns}")
    except OSError:
        return None


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


class Box:
    """One booted box. Use as a context manager: it is always torn down."""

    def __init__(self, tree, bind_ro=None, boot_timeout=90):
        self.tree = tree
        self.bind_ro = dict(bind_ro or {})
        self.boot_timeout = boot_timeout
        self.proc = None
        self.leader = None
        self.leader_pidns = None
        self.workdir = tempfile.mkdtemp(prefix="tcpd-nspawn-")
        self.console_path = os.path.join(self.workdir, "console.log")
        self.nsenter = shutil.which("nsenter") or "/usr/bin/nsenter"

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        argv = ["systemd-nspawn", "-q", "-D", self.tree, "--boot", "--register=no",
                "--keep-unit", "--volatile=overlay", "--private-network", "--console=pipe"]
        for src, dst in self.bind_ro.items():
            argv.append(f"--bind-ro={src}:{dst}")
        started = time.monotonic()
        with open(self.console_path, "wb") as console:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                         stderr=subprocess.STDOUT)
        self._find_leader()
        state = self.wait_running()
        log(f"# box up in {time.monotonic() - started:.1f} s: {state}")
        return state

    def _find_leader(self):
        """The box's PID 1 is the child of nspawn that lives in another PID
        namespace; it is ready for nsenter once it runs systemd."""
        ours = _ns_id(os.getpid(), "pid")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BoxError(f"systemd-nspawn exited with {self.proc.returncode}:\n"
                               + self.console_tail())
            for child in _children(self.proc.pid):
                ns = _ns_id(child, "pid")
                if ns and ns != ours and _comm(child) == "systemd":
                    self.leader, self.leader_pidns = child, ns
                    return
            time.sleep(0.02)
        raise BoxError("the box's PID 1 did not appear within 30 s:\n" + self.console_tail())

    def wait_running(self):
        """Waits for is-system-running to say running or degraded (then
        prints what failed). Returns the state."""
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BoxError(f"systemd-nspawn exited with {self.proc.returncode}:\n"
                               + self.console_tail())
            r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state = r.stdout.strip()
            if state == "running":
                return state
            if state == "degraded":
                failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False)
                log("# box is degraded; failed units:\n" + failed.stdout)
                return state
            time.sleep(0.05)
        raise BoxError(f"the box was not up within {self.boot_timeout} s (state {state!r}):\n"
                       + self.console_tail())

    def run(self, argv, check=True, timeout=60, input=None, env=None):
        """Runs argv fully inside the box (all its namespaces, its root).
        Returns the CompletedProcess (text); raises BoxError if check and the
        exit status is not 0."""
        if self.leader is None:
            raise BoxError("the box is not running")
        e = dict(BOX_ENV)
        e.update(env or {})
        try:
            r = subprocess.run([self.nsenter, "-t", str(self.leader), "-a", "--"] + list(argv),
                               input=input, capture_output=True, text=True, timeout=timeout,
                               env=e, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as ex:
            raise BoxError(f"{' '.join(argv)}: no end within {timeout} s") from ex
        if check and r.returncode != 0:
            raise BoxError(f"{' '.join(argv)} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def sh(self, script, **kw):
        return self.run(["sh", "-ec", script], **kw)

    def netns_argv(self, argv):
        """argv run on the host but in the box's network namespace only."""
        return [self.nsenter, "-t", str(self.leader), "-n", "--"] + list(argv)

    def install(self, destdir):
        """Copies a DESTDIR bind-mounted at INSTALL_DIR into the box's root.
        Existing directories keep their metadata and symlinks to directories
        (/lib -> usr/lib) stay symlinks."""
        if self.bind_ro.get(destdir) != INSTALL_DIR:
            raise BoxError(f"{destdir} is not bound at {INSTALL_DIR}")
        self.sh(f"tar -C {INSTALL_DIR} -cf - . | "
                "tar -C / -xf - --keep-directory-symlink --no-overwrite-dir")

    def console_tail(self, n=40):
        try:
            with open(self.console_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def _leader_alive(self):
        """Whether the box's PID 1 still runs. A killed PID 1 stays a zombie
        (with its namespace links) until the kernel has ended the rest of
        its PID namespace, which can take a second or two: that counts as
        ended."""
        if self.leader is None or _ns_id(self.leader, "pid") != self.leader_pidns:
            return False
        try:
            with open(f"/proc/{self.leader}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False

    def stop(self, timeout=20, graceful=True):
        """Powers the box off; kills nspawn and the box's PID 1 (by PID) if
        they are still there after timeout seconds, or at once if not
        graceful (meson gives a test 0.5 s between SIGTERM and SIGKILL).
        Safe to call twice."""
        if self.proc is not None and self.proc.poll() is None and not graceful:
            self.proc.kill()
        elif self.proc is not None and self.proc.poll() is None:
            started = time.monotonic()
            if self._leader_alive():
                with contextlib.suppress(BoxError):
                    self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
            try:
                self.proc.wait(timeout=timeout)
                log(f"# box powered off in {time.monotonic() - started:.1f} s")
            except subprocess.TimeoutExpired:
                log(f"# box still up after {timeout} s: killing nspawn and its PID 1\n"
                    + self.console_tail())
                self.proc.kill()
        # A SIGKILLed nspawn leaves the box's systemd running: end it too, by
        # PID, after checking the PID still names the box's PID 1.
        # In a hurry, leave the kernel to finish the box (a second or two).
        if self._leader_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)
            deadline = time.monotonic() + (10 if graceful else 0)
            while self._leader_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10 if graceful else 0.1)
        self.leader = None
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- clients of the echo service ---------------------------------------------

class EchoClient:
    """One TCP connection to the box's echo service, held by a small client
    (echo_client.py) that the host's python3 runs in the box's network
    namespace. It stays open across calls, so a test can check the same
    connection before and after a reload or a kick."""

    def __init__(self, box, port=7788, host="127.0.0.1"):
        argv = box.netns_argv([sys.executable, "-u", os.path.join(HERE, "echo_client.py"),
                               host, str(port)])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        hello = self._read()
        if hello.get("error"):
            self.close()
            raise BoxError(f"cannot connect to {host}:{port} in the box: {hello['error']}")
        self.local_port = hello["local_port"]
        self.peer = f"{host}:{self.local_port}"

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            raise BoxError(f"the echo client ended: {err.strip()}")
        return json.loads(line)

    def _call(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def echo(self, text, timeout=10):
        """Sends text; returns what came back (the same text if all is well)
        or raises BoxError with what happened instead."""
        r = self._call(op="echo", data=text, timeout=timeout)
        if "error" in r:
            raise BoxError(r["error"])
        return r["data"]

    def fill(self):
        """Sends without reading until every buffer is full; returns how much."""
        return self._call(op="fill")["sent"]

    def read_all(self, timeout=20):
        """Reads to the end: (bytes, "eof" | "reset" | "timeout")."""
        r = self._call(op="read_all", timeout=timeout)
        return r["got"], r["result"]

    def wait_closed(self, timeout=10):
        """Returns "eof", "reset" or "timeout"."""
        return self._call(op="wait_closed", timeout=timeout)["result"]

    def close(self):
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                f.close()
