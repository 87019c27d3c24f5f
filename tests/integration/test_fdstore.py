#!/usr/bin/env python3
"""Restarts that lose no connection, with a stand-in for systemd's fd store:
this test plays systemd's part (notify socket, FDSTORE=1, LISTEN_FDS) so the
hand-over runs in every CI pass; tests/systemd does it under the real one."""

import array
import os
import select
import shutil
import signal
import struct
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tcpdtest import SANITIZER_MARKS, TCPCTL, TCPD, TIMEOUT, TestFailure, check, connect, main, reads_eof, wait_for

LAUNCH = r"""
import fcntl, os, sys
src = [int(x) for x in os.environ.pop("TCPDTEST_FDS").split(",")]
high = [fcntl.fcntl(f, fcntl.F_DUPFD, 1000) for f in src]
for f in src:
    os.close(f)
for i, h in enumerate(high):
    os.dup2(h, 3 + i, inheritable=True)
    os.close(h)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(high))
os.execv(sys.argv[1], sys.argv[1:])
"""


def pattern(start, n):
    """Bytes of a stream where byte i is i % 251: a lost, doubled or
    reordered byte shows."""
    return bytes((start + i) % 251 for i in range(n))


class FakeSystemd:
    def __init__(self, workers=1, service="echo", extra=()):
        self.service = service  # the listening socket's FileDescriptorName=
        # more listening sockets, by name (FileDescriptorName=): name -> socket
        self.extra = {}
        for name in extra:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.bind(("127.0.0.1", 0))
            ls.listen(128)
            self.extra[name] = ls
        self.dir = tempfile.mkdtemp(prefix="tcpd-fdstore-")
        self.notify_path = os.path.join(self.dir, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self.echo = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.echo.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.echo.bind(("127.0.0.1", 0))
        self.echo.listen(128)
        self.port = self.echo.getsockname()[1]
        self.control_path = os.path.join(self.dir, "control")
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(self.control_path)
        self.control.listen(16)
        self.config = os.path.join(self.dir, "tcpd.ini")
        self.set_workers(workers)
        self.store = []  # (name, fd)
        self.messages = []
        self.proc = None
        self.procs = []
        # systemd reads its notify socket all the time; so must we, or
        # tcpd's sd_notify() blocks once the datagram queue is full
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._pump_forever, daemon=True)
        self.thread.start()

    def _pump_forever(self):
        while self.running:
            select.select([self.notify], [], [], 0.05)
            self.pump()

    def set_workers(self, n):
        """The settings for the next start."""
        with open(self.config, "w") as f:
            f.write(f"[tcpd]\nlog_connections = yes\nworkers = {n}\n")

    def start(self):
        with self.lock:
            return self._start()

    def _start(self):
        names = [self.service, "control"] + list(self.extra) + [n for n, _ in self.store]
        fds = [self.echo.fileno(), self.control.fileno()] + [ls.fileno() for ls in self.extra.values()] + \
            [fd for _, fd in self.store]
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, FDSTORE="4096", LISTEN_FDNAMES=":".join(names),
                   TCPDTEST_FDS=",".join(map(str, fds)))
        env.pop("JOURNAL_STREAM", None)
        self.stderr_path = os.path.join(self.dir, f"stderr{len(self.procs)}")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, TCPD, "-c", self.config], pass_fds=fds,
                                         env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.procs.append(self.proc)
        n = len(self.messages)
        self.lock.release()  # let the pump run while we wait
        try:
            wait_for(lambda: any("READY=1" in m for m in self.messages[n:]) or self.dead(), what="READY=1")
        finally:
            self.lock.acquire()
        check(self.proc.poll() is None, f"tcpd exited: {self.stderr()}")

    def dead(self):
        if self.proc.poll() is not None:
            raise TestFailure(f"tcpd exited {self.proc.returncode}: {self.stderr()}")
        return False

    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def pump(self):
        """Receives notify messages; keeps stored fds as systemd does,
        dropping one when it reports POLLHUP or POLLERR."""
        with self.lock:
            self._pump()
        return False

    def _pump(self):
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(self.notify, 65536, 253)
            except BlockingIOError:
                break
            text = msg.decode()
            self.messages.append(text)
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            if fields.get("FDSTORE") == "1":
                self.store += [(fields.get("FDNAME", "stored"), fd) for fd in fds]
            else:
                for fd in fds:
                    os.close(fd)
            if fields.get("FDSTOREREMOVE") == "1":
                for name, fd in [x for x in self.store if x[0] == fields.get("FDNAME")]:
                    os.close(fd)
                    self.store.remove((name, fd))
        if self.store:
            p = select.poll()
            for _, fd in self.store:
                p.register(fd, select.POLLHUP | select.POLLERR)
            hung = {fd for fd, ev in p.poll(0)}
            for name, fd in [x for x in self.store if x[1] in hung]:
                os.close(fd)
                self.store.remove((name, fd))

    def stored(self, name):
        self.pump()
        return sum(1 for n, _ in self.store if n == name)

    def ctl(self, *args):
        p = subprocess.run([TCPCTL, "-s", self.control_path, "--json", *args], capture_output=True, text=True,
                           timeout=TIMEOUT)
        check(p.returncode == 0, f"tcpctl {args}: {p.stderr}")
        import json
        return json.loads(p.stdout)

    def stop_tcpd(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        rc = self.proc.wait(TIMEOUT)
        self.pump()
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            check(mark not in err, f"sanitizer report in tcpd's stderr:\n{err}")
        return rc

    def cleanup(self):
        self.running = False
        self.thread.join(5)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for _, fd in self.store:
            os.close(fd)
        self.store = []
        for s in (self.notify, self.echo, self.control, *self.extra.values()):
            s.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """An echo client sending a patterned stream and checking what returns."""

    def __init__(self, port):
        self.s = connect(port)
        self.sent = 0
        self.got = 0

    def send(self, n):
        self.s.sendall(pattern(self.sent, n))
        self.sent += n

    def fill(self, limit_s=20):
        """Sends without reading until nothing moves: tcpd then holds bytes
        it cannot send."""
        self.s.setblocking(False)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                self.sent += self.s.send(pattern(self.sent, 65536))
            except BlockingIOError:
                if not select.select([], [self.s], [], 0.5)[1]:
                    break
        self.s.setblocking(True)

    def receive_all(self, timeout=TIMEOUT):
        self.s.settimeout(timeout)
        while self.got < self.sent:
            d = self.s.recv(min(1 << 20, self.sent - self.got))
            check(d, f"EOF after {self.got} of {self.sent} bytes")
            check(d == pattern(self.got, len(d)), f"echo differs at byte {self.got}")
            self.got += len(d)

    def no_eof(self):
        """Nothing pending and not closed (a peek that must block)."""
        self.s.setblocking(False)
        try:
            d = self.s.recv(1, socket.MSG_PEEK)
            check(d != b"", "the connection was closed")
        except BlockingIOError:
            pass
        finally:
            self.s.setblocking(True)


def echoing_clients(sd, n, size):
    """n clients, each with size bytes echoed, and their sockets in the store."""
    clients = [Client(sd.port) for _ in range(n)]
    for c in clients:
        c.send(size)
        c.receive_all()
    wait_for(lambda: sd.stored("conn") == n, what=f"{n} connections in the store")
    return clients


def test_restart_keeps_connections_ids_and_bytes():
    # two workers hand over; three adopt: each old worker saves its own
    # state, and the new ones share the connections out
    sd = FakeSystemd(workers=2)
    try:
        sd.start()
        clients = [Client(sd.port) for _ in range(50)]
        for i, c in enumerate(clients):
            c.send(1000 + i)
            c.receive_all()
        wait_for(lambda: sd.stored("conn") == 50, what="50 connections in the store")
        before = {x["peer_port"]: x for x in sd.ctl("list")}
        # mid-conversation: these bytes are sent while the restart happens
        for c in clients[:25]:
            c.send(5000)
        check(sd.stop_tcpd() == 0, f"hand-over exit status {sd.proc.returncode}")
        check(sd.stored("tcpd-state") == 2, f"one state memfd per worker stored: {sd.messages[-3:]}")
        for c in clients:
            c.no_eof()
        for c in clients[25:]:
            c.send(700)  # while no tcpd runs at all
        sd.set_workers(3)
        sd.start()
        check(sd.stored("tcpd-state") == 0, "the state is removed from the store once read")
        spread = sd.ctl("status")["worker_connections"]
        check(len(spread) == 3 and sum(spread) == 50 and min(spread) > 0, f"adopted over 3 workers: {spread}")
        after = {x["peer_port"]: x for x in sd.ctl("list")}
        check(len(after) == 50, f"{len(after)} connections adopted of 50")
        for port, x in before.items():
            check(after[port]["id"] == x["id"], f"id changed: {x['id']} -> {after[port]['id']}")
            check(after[port]["bytes_in"] >= x["bytes_in"], "counters carried on")
        for c in clients:
            c.receive_all()
            c.send(333)
            c.receive_all()
        fresh = Client(sd.port)
        fresh.send(10)
        fresh.receive_all()
        new_id = max(x["id"] for x in sd.ctl("list"))
        check(new_id > max(x["id"] for x in before.values()), "new ids do not collide with adopted ones")
        # a kick ends the connection although the store holds a copy
        victim = clients[0]
        kid = after[victim.s.getsockname()[1]]["id"]
        sd.ctl("kick", str(kid))
        victim.s.settimeout(TIMEOUT)
        check(victim.s.recv(10) == b"", "kicked client reads EOF")
        wait_for(lambda: sd.stored("conn") == 50, what="the kicked socket dropped from the store")  # 49 + fresh
        check("adopted 50 connections from the fd store (50 with their saved state)" in sd.stderr(), sd.stderr())
        sd.stop_tcpd()
    finally:
        sd.cleanup()


def test_store_after():
    """A connection goes into the store once it is store_after old: one
    that closes sooner never reaches systemd (no message, no work for PID
    1); at a hand-over every connection goes, whatever its age, and lives
    on; after a crash only those old enough to be stored do."""
    sd = FakeSystemd()
    try:
        with open(sd.config, "a") as f:
            f.write("store_after = 1h\n")
        sd.start()
        clients = [Client(sd.port) for _ in range(20)]
        for c in clients:
            c.send(100)
            c.receive_all()
        for c in clients[10:]:
            c.s.close()
        wait_for(lambda: sd.ctl("status")["connections_open"] == 10, what="10 closed")
        time.sleep(0.3)
        check(sd.stored("conn") == 0 and not any("FDNAME=conn" in m for m in sd.messages),
              "nothing stored within store_after, not even the ones that closed")
        before = {x["peer_port"]: x["id"] for x in sd.ctl("list")}
        check(sd.stop_tcpd() == 0, "hand-over")
        check(sd.stored("conn") == 10, f"every connection stored at the hand-over: {sd.stored('conn')}")
        sd.start()
        after = {x["peer_port"]: x["id"] for x in sd.ctl("list")}
        check(after == before, f"the same connections, the same ids: {before} -> {after}")
        for c in clients[:10]:
            c.send(200)
            c.receive_all()
        # a crash: the ten stored ones live on, a young one does not
        young = Client(sd.port)
        young.send(10)
        young.receive_all()
        sd.stop_tcpd(signal.SIGKILL)
        check(reads_eof(young.s), "a connection younger than store_after ends with the crash")
        sd.start()
        check(sorted(x["id"] for x in sd.ctl("list")) == sorted(before.values()), f"{sd.ctl('list')}")
        for c in clients[:10]:
            c.send(300)
            c.receive_all()
        sd.stop_tcpd()
    finally:
        sd.cleanup()
    # a short store_after: stored soon after accept
    sd = FakeSystemd()
    try:
        with open(sd.config, "a") as f:
            f.write("store_after = 200ms\n")
        sd.start()
        clients = [Client(sd.port) for _ in range(5)]
        t0 = time.monotonic()
        wait_for(lambda: sd.stored("conn") == 5, what="5 stored")
        waited = time.monotonic() - t0
        check(0.15 < waited < 2, f"stored after {waited:.2f} s")
        for c in clients:
            c.s.close()
        sd.stop_tcpd()
    finally:
        sd.cleanup()


def test_owed_bytes_survive_the_handover():
    sd = FakeSystemd()
    try:
        sd.start()
        c = Client(sd.port)
        c.fill()
        info = sd.ctl("list")[0]
        check(info["bytes_in"] > info["bytes_out"], f"bytes owed before the restart: {info}")
        wait_for(lambda: sd.stored("conn") == 1, what="stored")
        check(sd.stop_tcpd() == 0, "hand-over")
        sd.start()
        c.receive_all(timeout=20)  # every byte back exactly once, in order
        check(c.got == c.sent, f"{c.got} of {c.sent}")
        sd.stop_tcpd()
    finally:
        sd.cleanup()


def test_kick_reset_with_a_copy_in_the_store():
    """systemd's copy keeps the socket open: SO_LINGER 0 would not reset it,
    connect(AF_UNSPEC) does; a plain kick still ends with a FIN."""
    sd = FakeSystemd()
    try:
        sd.start()
        rst, fin = Client(sd.port), Client(sd.port)
        for c in (rst, fin):
            c.send(10)
            c.receive_all()
        wait_for(lambda: sd.stored("conn") == 2, what="both connections in the store")
        ids = {x["peer_port"]: x["id"] for x in sd.ctl("list")}
        sd.ctl("kick", "--reset", str(ids[rst.s.getsockname()[1]]))
        rst.s.settimeout(TIMEOUT)
        try:
            rst.s.recv(100)
            raise TestFailure("kick --reset ended the connection without an RST")
        except ConnectionResetError:
            pass
        sd.ctl("kick", str(ids[fin.s.getsockname()[1]]))
        fin.s.settimeout(TIMEOUT)
        check(fin.s.recv(100) == b"", "a plain kick ends with a FIN")
        wait_for(lambda: sd.stored("conn") == 0, what="systemd dropped both copies")
        check(sd.stop_tcpd() == 0, "clean stop")
    finally:
        sd.cleanup()


def test_crash_keeps_connections():
    sd = FakeSystemd()
    try:
        sd.start()
        clients = echoing_clients(sd, 10, 4000)
        sd.stop_tcpd(signal.SIGKILL)  # no hand-over at all
        check(sd.stored("tcpd-state") == 0, "nothing saved by a crash")
        for c in clients:
            c.no_eof()
            c.send(100)
        sd.start()
        check(len(sd.ctl("list")) == 10, "all adopted after the crash")
        for c in clients:
            c.receive_all()
        check("adopted 10 connections from the fd store (0 with their saved state)" in sd.stderr(), sd.stderr())
        sd.stop_tcpd()
    finally:
        sd.cleanup()


def test_a_kicked_connection_at_a_restart_ends_with_a_fin():
    """A kicked client that reads nothing is still owed bytes when the
    restart comes: what fits goes out, then a FIN (never a reset); the rest
    is lost with the process, and logged."""
    sd = FakeSystemd()
    try:
        sd.start()
        c = Client(sd.port)
        c.fill()
        info = sd.ctl("list")[0]
        check(info["bytes_in"] > info["bytes_out"], f"bytes owed: {info}")
        sd.ctl("kick", "--all")
        check(sd.stop_tcpd() == 0, "hand-over")
        c.s.settimeout(TIMEOUT)
        got = 0
        while True:
            d = c.s.recv(1 << 20)  # a reset would raise here
            if not d:
                break
            got += len(d)
        check(got <= info["bytes_in"], f"{got} of {info['bytes_in']}")
        check("closed at a restart with bytes still unsent" in sd.stderr(), sd.stderr())
    finally:
        sd.cleanup()


# The saved state's layout (daemon/fdstore.c): a header, then per connection
# a record and its owed bytes. Version 2 saves the service by name.
STATE_HEADER = struct.Struct("=8sQQ")
STATE_V3 = struct.Struct("=QQQQ28s28s32sIIBB6x")
STATE_V2 = struct.Struct("=QQQQ28s28s32sII")
STATE_V1 = struct.Struct("=QQQQ28s28sB3xI")


def rewrite_state(sd, convert):
    """Replaces each stored tcpd-state memfd by convert(records) of it: a
    list of [id, connected, in, out, peer, local, service name, owed]."""
    with sd.lock:
        for k, (name, fd) in enumerate(list(sd.store)):
            if name != "tcpd-state":
                continue
            data = os.pread(fd, 1 << 24, 0)
            magic, count, next_id = STATE_HEADER.unpack_from(data)
            check(magic == b"TCPDSTA3", f"a version 3 state: {magic}")
            recs, off = [], STATE_HEADER.size
            for _ in range(count):
                f = list(STATE_V3.unpack_from(data, off))
                off += STATE_V3.size
                owed = data[off:off + f[7]]
                off += f[7] + f[8]  # the type's bytes: none for echo
                recs.append(f[:6] + [f[6].rstrip(b"\0").decode(), owed])
            new = convert(recs, next_id)
            mfd = os.memfd_create("tcpd-state")
            os.write(mfd, new)
            os.close(fd)
            sd.store[k] = (name, mfd)


def test_state_from_the_previous_version_and_gone_services():
    """A hand-over from the previous release's tcpd (state version 1, the
    service by index) keeps ids and bytes; a connection saved for a service
    this tcpd does not have is closed and logged, the others stay."""
    sd = FakeSystemd()
    try:
        sd.start()
        clients = echoing_clients(sd, 3, 500)
        before = {x["peer_port"]: x["id"] for x in sd.ctl("list")}
        check(sd.stop_tcpd() == 0, "hand-over")

        def to_v1(recs, next_id):
            out = STATE_HEADER.pack(b"TCPDSTA1", len(recs), next_id)
            for r in recs:
                out += STATE_V1.pack(*r[:6], {"echo": 0, "discard": 1, "chargen": 2}[r[6]], len(r[7])) + r[7]
            return out
        rewrite_state(sd, to_v1)
        sd.start()
        after = {x["peer_port"]: x["id"] for x in sd.ctl("list")}
        check(after == before, f"ids kept across a version 1 state: {before} -> {after}")
        check("adopted 3 connections from the fd store (3 with their saved state)" in sd.stderr(), sd.stderr())
        for c in clients:
            c.send(100)
            c.receive_all()
        # a service the next tcpd does not have
        check(sd.stop_tcpd() == 0, "hand-over")
        gone = clients[1].s.getsockname()[1]

        def drop_one(recs, next_id):
            out = STATE_HEADER.pack(b"TCPDSTA2", len(recs), next_id)
            for r in recs:
                svc = "gopher" if struct.unpack("!H", r[4][2:4])[0] == gone else r[6]
                out += STATE_V2.pack(*r[:6], svc.encode(), len(r[7]), 0) + r[7]
            return out
        rewrite_state(sd, drop_one)
        sd.start()
        check(reads_eof(clients[1].s), "the connection of the gone service is closed")
        check("was for service 'gopher', which this tcpd does not have" in sd.stderr(), sd.stderr())
        check("closed 1 stored connection whose service" in sd.stderr(), sd.stderr())
        left = {x["peer_port"] for x in sd.ctl("list")}
        check(gone not in left and len(left) == 2, f"{left}")
        for c in (clients[0], clients[2]):
            c.send(10)
            c.receive_all()
        sd.stop_tcpd()
    finally:
        sd.cleanup()


def test_named_service_across_a_restart():
    sd = FakeSystemd(service="git")
    try:
        with open(sd.config, "a") as f:
            f.write("[service git]\ntype = echo\n")
        sd.start()
        c = Client(sd.port)
        c.send(100)
        c.receive_all()
        wait_for(lambda: sd.stored("conn") == 1, what="stored")
        before = sd.ctl("list")
        check(before[0]["service"] == "git", f"{before}")
        check(sd.stop_tcpd() == 0, "hand-over")
        sd.start()
        after = sd.ctl("list")
        check([(x["id"], x["service"]) for x in after] == [(before[0]["id"], "git")], f"{after}")
        c.send(50)
        c.receive_all()
        svc = {x["name"]: x for x in sd.ctl("status")["services"]}
        check(svc["git"]["connections_open"] == 1, f"{svc}")
        sd.stop_tcpd()
    finally:
        sd.cleanup()


def test_relays_and_drained_backends_across_a_restart():
    """A relay (type = forward) lives through a hand-over with the bytes it
    held, both ways, in order; what an admin drained stays drained in the
    next tcpd (kept in the store)."""
    from test_forward import Backend
    a, b = Backend(echo=True, name=b"A"), Backend(echo=True, name=b"B")
    sd = FakeSystemd(service="db")
    try:
        with open(sd.config, "a") as f:
            f.write(f"[tcpd]\nmax_buffered = 64K\n[service db]\ntype = forward\nbackend = {a.addr} {b.addr}\n")
        sd.start()
        c = socket.create_connection(("127.0.0.1", sd.port), timeout=TIMEOUT)
        first = c.recv(1)
        check(first in (b"A", b"B"), "relayed")
        wait_for(lambda: sum(1 for n, _ in sd.store if n.startswith("fwd.")) == 2, what="both halves stored")
        before = sd.ctl("list")
        out = sd.ctl("backend", "drain", "db", b.addr)
        check(out["admin"] == "drain" and out["previous"] == "enabled", f"{out}")
        wait_for(lambda: sd.stored("tcpd-backends") == 1, what="the admin states in the store")
        check(sd.stop_tcpd() == 0, "hand-over")
        sd.start()
        after = sd.ctl("list")
        check([(x["id"], x["backend"]) for x in after] == [(before[0]["id"], before[0]["backend"])],
              f"the same relay: {before} -> {after}")
        blob = bytes(range(256)) * 400
        c.sendall(blob)
        got = b""
        while len(got) < len(blob):
            got += c.recv(65536)
        check(got == blob, "the relay goes on, every byte in order")
        bk = {x["backend"]: x for x in sd.ctl("backends")}
        check(bk[b.addr]["admin"] == "drain" and bk[a.addr]["admin"] == "enabled", f"{bk}")
        check("1 backend drained or disabled before the restart" in sd.stderr(), sd.stderr())
        check("adopted 1 relay from the fd store (1 with their saved state)" in sd.stderr(), sd.stderr())
        sd.ctl("backend", "enable", "db", b.addr)
        wait_for(lambda: sd.stored("tcpd-backends") == 1, what="one copy, replaced")
        c.close()
        wait_for(lambda: not any(n.startswith("fwd.") for n, _ in sd.store), what="a closed relay leaves the store")
        sd.stop_tcpd()
    finally:
        sd.cleanup()
        a.close()
        b.close()


def test_relay_bytes_in_flight_and_a_crash():
    """Bytes a relay holds at a hand-over (a backend that does not read, a
    client that does not read) arrive once and in order after it; after a
    crash (SIGKILL) the halves are paired again by their names; a half
    whose other half is gone is reset."""
    from test_forward import Backend
    be = Backend()
    sd = FakeSystemd(service="db")
    try:
        with open(sd.config, "a") as f:
            f.write(f"[tcpd]\nmax_buffered = 64K\n[service db]\ntype = forward\nbackend = {be.addr}\n"
                    "check_interval = 1h\n")
        sd.start()
        c = socket.create_connection(("127.0.0.1", sd.port), timeout=TIMEOUT)
        s = be.take()
        # each side sends a lot and reads nothing yet: tcpd holds some of it
        up, down = pattern(0, 3 << 20), pattern(7, 3 << 20)
        c.setblocking(False)
        s.setblocking(False)
        sent_up = sent_down = 0
        end = time.monotonic() + 5
        while time.monotonic() < end and (sent_up < len(up) or sent_down < len(down)):
            moved = False
            for sock, data, attr in ((c, up, "u"), (s, down, "d")):
                off = sent_up if attr == "u" else sent_down
                if off < len(data):
                    try:
                        n = sock.send(data[off:off + 65536])
                        moved = True
                    except BlockingIOError:
                        n = 0
                    if attr == "u":
                        sent_up += n
                    else:
                        sent_down += n
            if not moved:
                time.sleep(0.02)
        wait_for(lambda: sum(1 for n, _ in sd.store if n.startswith("fwd.")) == 2, what="both halves stored")
        rel = sd.ctl("list")[0]
        check(rel["state"] in ("to-backend", "to-client", "open"), f"{rel}")
        check(sd.stop_tcpd() == 0, "hand-over")
        sd.start()
        # now both read: each gets exactly what the other sent
        c.setblocking(True)
        s.setblocking(True)
        c.settimeout(TIMEOUT)
        s.settimeout(TIMEOUT)
        got_s, got_c = [], []
        t1 = threading.Thread(target=lambda: got_s.append(recv_all_n(s, sent_up)))
        t2 = threading.Thread(target=lambda: got_c.append(recv_all_n(c, sent_down)))
        t1.start()
        t2.start()
        t1.join(60)
        t2.join(60)
        check(got_s == [up[:sent_up]], f"the backend got the client's {sent_up} bytes once, in order")
        check(got_c == [down[:sent_down]], f"the client got the backend's {sent_down} bytes once, in order")
        # a crash: no state, the halves paired by name
        sd.stop_tcpd(signal.SIGKILL)
        sd.start()
        lst = sd.ctl("list")
        check(len(lst) == 1 and lst[0]["id"] == rel["id"] and lst[0]["backend"] == be.addr, f"re-paired: {lst}")
        c.sendall(b"after the crash")
        check(recv_all_n(s, 15) == b"after the crash", "the relay goes on")
        s.sendall(b"and back")
        check(recv_all_n(c, 8) == b"and back", "both ways")
        check("adopted 1 relay from the fd store (0 with their saved state)" in sd.stderr(), sd.stderr())
        # a half without the other: reset
        sd.stop_tcpd(signal.SIGKILL)
        with sd.lock:
            for name, fd in [x for x in sd.store if x[0].endswith(".b")]:
                os.close(fd)
                sd.store.remove((name, fd))
        sd.start()
        check(sd.ctl("list") == [], "nothing to relay to")
        check(reads_eof(c), "the client whose backend half is gone is reset")
        check("reset 1 stored relay socket" in sd.stderr(), sd.stderr())
        sd.stop_tcpd()
    finally:
        sd.cleanup()
        be.close()


def accept_sender(be, taken, limit=30):
    """The next connection to the backend that sends something (a relay's),
    its first bytes left unread; a health check's (which sends nothing and
    closes) is passed over. Every one accepted goes into taken."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        x, _ = be.sock.accept()
        x.settimeout(TIMEOUT)
        taken.append(x)
        if x.recv(1, socket.MSG_PEEK):
            return x
    raise TestFailure("no relay's connect reached the backend")


def test_relay_still_connecting_across_a_restart():
    """A relay whose backend has not answered yet at a hand-over (its
    accept queue is full, so the SYN waits for a retransmission) is in the
    store already, and the next tcpd waits for the answer as the first
    would have: once the backend takes it, the bytes the client sent
    before the restart arrive, and the relay keeps its id."""
    from test_forward import Backend
    be = Backend(backlog=0)  # nothing accepts: one queued connection fills it
    filler = socket.create_connection(("127.0.0.1", be.port), timeout=TIMEOUT)
    sd = FakeSystemd(service="db")
    try:
        with open(sd.config, "a") as f:
            f.write(f"[service db]\ntype = forward\nbackend = {be.addr}\nconnect_timeout = 60s\n"
                    "check_interval = 1h\n")
        sd.start()
        c = socket.create_connection(("127.0.0.1", sd.port), timeout=TIMEOUT)
        c.sendall(b"sent while connecting")
        wait_for(lambda: sum(1 for n, _ in sd.store if n.startswith("fwd.")) == 2, what="both halves stored")
        before = sd.ctl("list")
        check(len(before) == 1 and before[0]["state"] == "connecting", f"{before}")
        check(sd.stop_tcpd() == 0, "hand-over")
        sd.start()
        after = sd.ctl("list")
        check([(x["id"], x["state"]) for x in after] == [(before[0]["id"], "connecting")],
              f"the same relay, still connecting: {before} -> {after}")
        # room in the queue: the relay's next SYN gets in (a health
        # check's may come first: it sends nothing and closes)
        be.sock.settimeout(30)
        taken = [be.sock.accept()[0]]  # the filler
        s = accept_sender(be, taken)
        check(recv_all_n(s, 21) == b"sent while connecting", "what the client sent before the restart")
        s.sendall(b"answered")
        check(recv_all_n(c, 8) == b"answered", "and back")
        wait_for(lambda: sd.ctl("list")[0]["state"] == "open", what="open")
        check(sd.ctl("list")[0]["backend"] == be.addr, "the backend is known once it answered")
        check("adopted 1 relay from the fd store (1 with their saved state)" in sd.stderr(), sd.stderr())
        c.close()
        check(reads_eof(s), "the relay ends as any")
        s.close()
        wait_for(lambda: not any(n.startswith("fwd.") for n, _ in sd.store), what="the relay left the store")
        # the same through a crash: no state, the halves paired by name
        filler2 = socket.create_connection(("127.0.0.1", be.port), timeout=TIMEOUT)
        taken.append(filler2)
        c = socket.create_connection(("127.0.0.1", sd.port), timeout=TIMEOUT)
        c.sendall(b"before the crash")
        wait_for(lambda: sum(1 for n, _ in sd.store if n.startswith("fwd.")) == 2, what="both halves stored")
        rid = sd.ctl("list")[0]["id"]
        sd.stop_tcpd(signal.SIGKILL)
        sd.start()
        check([(x["id"], x["state"]) for x in sd.ctl("list")] == [(rid, "connecting")], f"{sd.ctl('list')}")
        taken.append(be.sock.accept()[0])  # filler2's end: room for the relay's SYN
        s = accept_sender(be, taken)
        check(recv_all_n(s, 16) == b"before the crash",
              "after a crash too, the relay connects and the client's bytes arrive")
        c.close()
        for x in taken:
            x.close()
        sd.stop_tcpd()
    finally:
        sd.cleanup()
        filler.close()
        be.close()


def test_relay_refused_while_no_tcpd_watched():
    """A relay stored while its connect was under way, refused while no
    tcpd ran (its backend went away after a crash): the next tcpd adopts it
    and tries the next backend for it, as the first would have; the
    client's bytes, never read, reach that one."""
    from test_forward import Backend
    gone = Backend(backlog=0)
    filler = socket.create_connection(("127.0.0.1", gone.port), timeout=TIMEOUT)
    alive = Backend(echo=True)
    sd = FakeSystemd(service="db")
    base = open(sd.config).read()
    try:
        with open(sd.config, "a") as f:
            f.write(f"[service db]\ntype = forward\nbackend = {gone.addr}\nconnect_timeout = 60s\n"
                    "check_interval = 1h\n")
        sd.start()
        c = socket.create_connection(("127.0.0.1", sd.port), timeout=TIMEOUT)
        c.sendall(b"hello")
        wait_for(lambda: sum(1 for n, _ in sd.store if n.startswith("fwd.")) == 2, what="both halves stored")
        check(sd.ctl("list")[0]["state"] == "connecting", f"{sd.ctl('list')}")
        sd.stop_tcpd(signal.SIGKILL)
        gone.close()  # the next SYN is answered with a reset
        with sd.lock:
            half = next(fd for n, fd in sd.store if n.endswith(".b"))

        def refused():
            p = select.poll()
            p.register(half, select.POLLOUT)
            return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))
        wait_for(refused, timeout=30, what="the stored connect refused")
        with open(sd.config, "w") as f:
            f.write(base + f"[service db]\ntype = forward\nbackend = {gone.addr} {alive.addr}\n"
                           "connect_timeout = 60s\ncheck_interval = 1h\n")
        sd.start()
        check(recv_all_n(c, 5) == b"hello", "the client's bytes went to the next backend and back")
        lst = sd.ctl("list")
        check(len(lst) == 1 and lst[0]["backend"] == alive.addr and lst[0]["state"] == "open", f"{lst}")
        c.close()
        wait_for(lambda: not sd.ctl("list"), what="the relay closed")
        # a relay whose backend resets it while no tcpd runs: the client is reset too
        be = Backend()
        with open(sd.config, "w") as f:
            f.write(base + f"[service db]\ntype = forward\nbackend = {be.addr}\ncheck_interval = 1h\n")
        sd.stop_tcpd()
        sd.start()
        c = socket.create_connection(("127.0.0.1", sd.port), timeout=TIMEOUT)
        s = be.take()
        c.sendall(b"x")
        check(recv_all_n(s, 1) == b"x", "relayed")
        wait_for(lambda: sum(1 for n, _ in sd.store if n.startswith("fwd.")) == 2, what="both halves stored")
        sd.stop_tcpd(signal.SIGKILL)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a reset, and no tcpd to see it
        sd.start()
        check(reads_eof(c), "the client of a relay broken meanwhile is reset")
        check(sd.ctl("list") == [], f"{sd.ctl('list')}")
        sd.stop_tcpd()
        be.close()
    finally:
        sd.cleanup()
        filler.close()
        alive.close()


def recv_all_n(s, n):
    buf = bytearray()
    while len(buf) < n:
        got = s.recv(min(1 << 20, n - len(buf)))
        if not got:
            break
        buf += got
    return bytes(buf)


def test_programs_are_not_handed_over():
    """A restart hands echo connections over and closes those of programs
    (type = exec): their programs get SIGTERM, their clients see the end,
    and nothing of them is stored or saved."""
    sd = FakeSystemd(extra=("cat",))
    try:
        with open(sd.config, "a") as f:
            f.write("[service cat]\ntype = exec\nexec = /bin/cat\n")
        sd.start()
        echo = Client(sd.port)
        echo.send(100)
        echo.receive_all()
        prog = socket.create_connection(("127.0.0.1", sd.extra["cat"].getsockname()[1]), timeout=TIMEOUT)
        prog.sendall(b"through cat\n")
        check(prog.recv(100) == b"through cat\n", "cat runs")
        listed = {x["service"]: x for x in sd.ctl("list")}
        pid = listed["cat"]["pid"]
        wait_for(lambda: sd.stored("conn") == 1, what="the echo connection stored")
        time.sleep(0.3)
        check(sd.stored("conn") == 1, "the program's connection is not stored")
        check(sd.stop_tcpd() == 0, "hand-over")
        check("are not kept across a restart" in sd.stderr(), sd.stderr())
        prog.settimeout(TIMEOUT)
        check(prog.recv(100) == b"", "the program's client sees the end")
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                 open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z", what="cat ended")
        sd.start()
        after = sd.ctl("list")
        check([x["service"] for x in after] == ["echo"], f"only the echo connection came back: {after}")
        echo.send(50)
        echo.receive_all()
        prog2 = socket.create_connection(("127.0.0.1", sd.extra["cat"].getsockname()[1]), timeout=TIMEOUT)
        prog2.sendall(b"again\n")
        check(prog2.recv(100) == b"again\n", "the new tcpd runs programs")
        prog2.close()
        sd.stop_tcpd()
    finally:
        sd.cleanup()


def test_broken_settings_at_restart_and_crash_keep_the_service():
    """A typo in the file, then a restart (and a crash): tcpd runs on the
    last settings that loaded, kept in the store, keeps every connection,
    and says what is wrong; a reload after the fix loads the file."""
    sd = FakeSystemd()
    try:
        with open(sd.config, "a") as f:
            f.write("max_buffered = 128K\n")
        sd.start()
        wait_for(lambda: sd.stored("tcpd-settings") == 1, what="the settings in the store")
        clients = [Client(sd.port) for _ in range(5)]
        for c in clients:
            c.send(1000)
            c.receive_all()
        good = open(sd.config).read()
        with open(sd.config, "a") as f:
            f.write("max_conections = 10\n")
        for how in (signal.SIGTERM, signal.SIGKILL):  # a restart, then a crash
            n = len(sd.messages)
            sd.stop_tcpd(how)
            sd.start()
            st = sd.ctl("status")
            check(st["settings"] == "previous", f"{how.name}: {st['settings']}")
            check("tcpd.ini:5: unknown key 'max_conections'" in st["settings_error"], st["settings_error"])
            check(st["limits"]["max_buffered"] == 131072, f"the stored settings apply: {st['limits']}")
            status = [m for m in sd.messages[n:] if "STATUS=" in m]
            check(any("max_conections" in m and "last settings that loaded" in m for m in status),
                  f"STATUS= names it: {status[-1:]}")
            check(len(sd.ctl("list")) == 5, f"{how.name}: connections kept")
            for c in clients:
                c.send(100)
                c.receive_all()
            fresh = Client(sd.port)
            fresh.send(10)
            fresh.receive_all()
            fresh.s.close()
            check(sd.stored("tcpd-settings") == 1, "still one copy of the settings in the store")
        # the fix, then a reload: the file's settings apply, the error is gone
        with open(sd.config, "w") as f:
            f.write(good.replace("128K", "96K"))
        p = subprocess.run([TCPCTL, "-s", sd.control_path, "reload"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        check(p.returncode == 0, p.stderr)
        st = sd.ctl("status")
        check(st["settings"] == "loaded" and st["settings_error"] is None, f"{st['settings']}")
        check(st["limits"]["max_buffered"] == 96 * 1024, f"{st['limits']}")
        wait_for(lambda: sd.stored("tcpd-settings") == 1, what="the new settings replace the old in the store")
        sd.stop_tcpd()
    finally:
        sd.cleanup()


if __name__ == "__main__":
    main([test_store_after, test_restart_keeps_connections_ids_and_bytes, test_owed_bytes_survive_the_handover,
          test_kick_reset_with_a_copy_in_the_store, test_crash_keeps_connections,
          test_a_kicked_connection_at_a_restart_ends_with_a_fin, test_state_from_the_previous_version_and_gone_services,
          test_broken_settings_at_restart_and_crash_keep_the_service, test_programs_are_not_handed_over,
          test_named_service_across_a_restart, test_relays_and_drained_backends_across_a_restart,
          test_relay_bytes_in_flight_and_a_crash, test_relay_still_connecting_across_a_restart,
          test_relay_refused_while_no_tcpd_watched])
