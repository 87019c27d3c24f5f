"""Integration test harness: starts the real tcpd and tcpctl on loopback,
the way an admin would, and cleans up after every test (by PID)."""

import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

TCPD = os.environ.get("TCPD", "build/daemon/tcpd")
TCPCTL = os.environ.get("TCPCTL", "build/ctl/tcpctl")
# Anything here in tcpd's stderr fails the test: a sanitizer report in the
# daemon itself must not pass quietly.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer", "SUMMARY: ")
TIMEOUT = 10.0

_live = []


class TestFailure(AssertionError):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def wait_for(pred, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise TestFailure(f"timed out after {timeout}s waiting for {what}")


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def connect(port, host="127.0.0.1", source=None, timeout=TIMEOUT):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def activated(d, port):
    """The first connection to a socket of systemd-socket-activate, which
    starts tcpd with it, once tcpd said READY=1."""
    def attempt():
        try:
            return connect(port)
        except ConnectionRefusedError:
            return None
    s = wait_for(attempt, what="systemd-socket-activate")
    d.wait_notify("READY=1")
    return s


def read_available(s, quiet=0.5):
    """All that arrives until nothing has for quiet seconds; fails on EOF."""
    s.settimeout(quiet)
    got = b""
    try:
        while True:
            chunk = s.recv(1 << 20)
            check(chunk, "the peer closed the stream")
            got += chunk
    except socket.timeout:
        return got


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise TestFailure(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def echo_roundtrip(s, payload):
    s.sendall(payload)
    got = recv_exact(s, len(payload))
    check(got == payload, "echo differs from what was sent")


def open_many(d, n, batch=100):
    """n connections to d's (first IPv4) listener, opened in batches the
    listen backlog holds (a dropped SYN costs a second), each accepted
    before the next batch."""
    port = d.port()
    conns = []
    while len(conns) < n:
        conns += [connect(port) for _ in range(min(batch, n - len(conns)))]
        wait_for(lambda: d.status()["connections_open"] == len(conns), what=f"{len(conns)} connections open")
    return conns


def sanitized():
    """True when tcpd was built with a sanitizer (ASan or TSan): slower, and
    its allocator keeps freed memory around, so RSS bounds are looser."""
    with open(TCPD, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def refused(port, host="127.0.0.1", source=None):
    """True if tcpd refused this connection at once (a reset, or a close
    before any echo) instead of serving it."""
    try:
        s = connect(port, host=host, source=source, timeout=5)
    except ConnectionResetError:
        return True
    try:
        s.sendall(b"?")
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()


def reads_eof(s, timeout=TIMEOUT):
    """True if the peer closed: recv returns b'' (a reset counts as closed too)."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def fill_until_blocked(s, limit_s=20):
    """Sends without reading until nothing moves for half a second: every
    buffer between client and tcpd is full and tcpd has stopped reading."""
    import select
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            sent += s.send(b"b" * 65536)
        except BlockingIOError:
            if not select.select([], [s], [], 0.5)[1]:
                break
    s.setblocking(True)
    s.settimeout(TIMEOUT)
    return sent


def read_to_eof(s, timeout=TIMEOUT):
    """Everything until EOF; raises on a reset (a FIN was expected)."""
    s.settimeout(timeout)
    got = 0
    while True:
        d = s.recv(1 << 20)
        if not d:
            return got
        got += len(d)


class Daemon:
    """One tcpd process with its own directory, settings and control socket."""

    def __init__(self, ini="", control=True, activate=None, fdnames=None, extra_args=(), wait_ready=True,
                 env=None, prefix=()):
        self.dir = tempfile.mkdtemp(prefix="tcpd-test-")
        os.chmod(self.dir, 0o755)
        self.control = os.path.join(self.dir, "control")
        self.config = os.path.join(self.dir, "tcpd.ini")
        self.proc = None
        self.returncode = None
        self.notify_msgs = []
        _live.append(self)
        self.write_config(ini, control)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_path = os.path.join(self.dir, "notify")
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        # sd_notify() blocks once the socket holds its queue of unread
        # datagrams (10 by default): read them as they come, all the time,
        # so that a long test never stalls tcpd on a full queue
        self._notify_lock = threading.Lock()
        self._notify_stop = threading.Event()
        self._notify_thread = threading.Thread(target=self._drain_notify, daemon=True)
        self._notify_thread.start()
        self.stderr_path = os.path.join(self.dir, "stderr")
        cmd = [*prefix, TCPD, "-c", self.config, *extra_args]
        if activate:
            sa = ["systemd-socket-activate"]
            for a in activate:
                sa += ["-l", a]
            if fdnames:
                sa += ["--fdname=" + ":".join(fdnames)]
            sa += ["-E", "NOTIFY_SOCKET=" + self.notify_path]
            for k, v in (env or {}).items():
                sa += ["-E", f"{k}={v}"]
            cmd = sa + cmd
        full_env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, **(env or {}))
        full_env.pop("JOURNAL_STREAM", None)
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=full_env)
        if wait_ready:
            self.wait_notify("READY=1")

    def write_config(self, ini, control=True):
        text = ini
        if control and not re.search(r"^control_socket\s*=", ini, re.M):
            text = f"[tcpd]\ncontrol_socket = {self.control}\n" + ini.replace("[tcpd]\n", "", 1) \
                if "[tcpd]" in ini else f"[tcpd]\ncontrol_socket = {self.control}\n" + ini
        with open(self.config, "w") as f:
            f.write(text)

    def _take_notify(self):
        # with the lock held: everything queued now, in order
        while True:
            try:
                self.notify_msgs.append(self.notify.recv(4096, socket.MSG_DONTWAIT).decode())
            except (BlockingIOError, OSError):
                return

    def _drain_notify(self):
        import select
        while not self._notify_stop.is_set():
            try:
                ready = select.select([self.notify], [], [], 0.1)[0]
            except (OSError, ValueError):
                return
            if ready:
                with self._notify_lock:
                    self._take_notify()

    def poll_notify(self):
        """Every sd_notify message so far, in order."""
        with self._notify_lock:
            self._take_notify()
            return list(self.notify_msgs)

    def wait_notify(self, what, timeout=TIMEOUT, after=0):
        def seen():
            if self.proc.poll() is not None:
                raise TestFailure(f"tcpd exited with {self.proc.returncode} before {what}:\n{self.stderr()}")
            return any(what in m.split("\n") for m in self.poll_notify()[after:])
        wait_for(seen, timeout, f"sd_notify {what}")

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def ctl(self, *args, json_out=False, user=None, ok=(0,), socket_path=None, timeout=TIMEOUT):
        cmd = [TCPCTL, "-s", socket_path or self.control] + (["--json"] if json_out else []) + list(args)
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        check(p.returncode in ok, f"tcpctl {' '.join(args)} exited {p.returncode}: {p.stderr}{p.stdout}")
        if json_out and p.returncode == 0:
            return json.loads(p.stdout)
        return p

    def status(self):
        return self.ctl("status", json_out=True)

    def connections(self):
        return self.ctl("list", json_out=True)

    def port(self, family="ipv4"):
        for li in self.status()["listeners"]:
            addr = li["address"]
            if (family == "ipv6") == addr.startswith("["):
                return int(addr.rsplit(":", 1)[1])
        raise TestFailure(f"no {family} listener")

    def cpu_seconds(self):
        """User + system CPU time tcpd has used so far, from /proc."""
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, expect=0, timeout=TIMEOUT):
        """SIGTERM, wait, check the exit status and that stderr is clean."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"tcpd did not stop within {timeout}s")
        check(self.returncode == expect, f"tcpd exited {self.returncode}, expected {expect}:\n{self.stderr()}")
        self.check_clean()
        return self.returncode

    def wait_exit(self, timeout=TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"tcpd still running after {timeout}s")
        return self.returncode

    def check_clean(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            check(mark not in err, f"sanitizer report in tcpd's stderr:\n{err}")

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # our own child, by PID
            self.proc.wait()
        self._notify_stop.set()
        self._notify_thread.join()
        self.notify.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_config_check(ini_text, *extra):
    d = tempfile.mkdtemp(prefix="tcpd-test-")
    try:
        path = os.path.join(d, "tcpd.ini")
        with open(path, "w") as f:
            f.write(ini_text)
        p = subprocess.run([TCPD, "--check-config", "-c", path, *extra], capture_output=True, text=True,
                           timeout=TIMEOUT)
        return p, path
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(tests):
    """Runs each test function; prints a line per test and 'N passed, N failed'."""
    passed = failed = 0
    only = sys.argv[1:]
    for t in tests:
        if only and t.__name__ not in only:
            continue
        start = time.monotonic()
        try:
            t()
            for d in _live:
                if d.proc and d.proc.poll() is not None:
                    d.check_clean()
            passed += 1
            print(f"ok   {t.__name__} ({time.monotonic() - start:.2f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}", flush=True)
            traceback.print_exc()
            for d in _live:
                print(f"--- tcpd stderr ({d.dir}):\n{d.stderr() if os.path.exists(d.stderr_path) else ''}")
        finally:
            while _live:
                _live.pop().cleanup()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or passed == 0 else 0)
