#!/usr/bin/env python3
"""type = forward: clients relayed to backends. The backends are sockets
of the test's own on loopback, so that each side of a relay can be driven
and watched: bytes both ways, half-close, resets passed on, failover,
no backend at all, a backend that never reads, kick, idle time."""

import json
import os
import queue
import resource
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

from tcpdtest import TCPCTL, TCPD, Daemon, check, connect, main, read_to_eof, reads_eof, sanitized, wait_for


class Backend:
    """A listening socket on 127.0.0.1; accepted connections go to a queue.
    With echo, each is answered by a thread of its own instead."""

    def __init__(self, echo=False, name=b"", backlog=128, port=0):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.conns = queue.Queue()
        self.echo, self.name = echo, name
        self.accepted = 0
        self.stopped = False
        if backlog:
            threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stopped:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.echo:
                threading.Thread(target=self.serve, args=(s,), daemon=True).start()
            else:
                self.conns.put(s)

    def serve(self, s):
        try:
            if self.name:
                s.sendall(self.name)
            while True:
                data = s.recv(65536)
                if not data:
                    break
                s.sendall(data)
        except OSError:
            pass
        finally:
            s.close()

    def take(self, timeout=10):
        """The next relay's connection. One that a health check made ends
        at once without a byte (check = connect): it is passed over, so
        that a check that comes first does not stand in for the relay."""
        end = time.monotonic() + timeout
        while True:
            s = self.conns.get(timeout=max(0.1, end - time.monotonic()))
            s.settimeout(10)
            if select.select([s], [], [], 0.2)[0]:
                try:
                    ended = s.recv(1, socket.MSG_PEEK) == b""
                except ConnectionResetError:
                    ended = True
                if ended:
                    s.close()
                    continue
            return s

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
        except OSError:
            pass
        self.sock.close()


def forward_ini(backends, extra=""):
    # [echo] on a port of its own: the default, 7788, is another test's
    return ("[echo]\nlisten = 127.0.0.1:0\n[service fw]\ntype = forward\nlisten = 127.0.0.1:0\nbackend = " + " ".join(backends) + "\n" + extra)


def fw_port(d):
    for li in d.status()["listeners"]:
        if li["service"] == "fw":
            return int(li["address"].rsplit(":", 1)[1])
    raise AssertionError("no fw listener")


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        got = s.recv(min(65536, n - len(buf)))
        if not got:
            break
        buf += got
    return buf


def svc(d, name="fw"):
    return next(x for x in d.status()["services"] if x["name"] == name)


def test_bytes_both_ways_and_list():
    b = Backend()
    d = Daemon(forward_ini([b.addr]))
    c = connect(fw_port(d))
    be = b.take()
    c.sendall(b"from the client")
    check(recv_exact(be, 15) == b"from the client", "the backend gets the client's bytes")
    be.sendall(b"from the backend")
    check(recv_exact(c, 16) == b"from the backend", "the client gets the backend's bytes")
    # a megabyte each way at once: back-pressure, nothing lost or reordered
    blob = bytes(range(256)) * 4096
    got_be, got_c = [], []
    t1 = threading.Thread(target=lambda: got_be.append(recv_exact(be, len(blob))))
    t2 = threading.Thread(target=lambda: got_c.append(recv_exact(c, len(blob))))
    t1.start()
    t2.start()
    c.sendall(blob)
    be.sendall(blob[::-1])
    t1.join(30)
    t2.join(30)
    check(got_be == [blob] and got_c == [blob[::-1]], "a megabyte each way, in order")
    conns = [x for x in d.connections() if x["service"] == "fw"]
    check(len(conns) == 1 and conns[0]["backend"] == b.addr and conns[0]["state"] == "open", f"{conns}")
    check(conns[0]["bytes_in"] == 15 + len(blob) and conns[0]["bytes_out"] == 16 + len(blob), f"{conns}")
    table = d.ctl("list").stdout
    check("BACKEND" in table and b.addr in table, table)
    # -i: what the kernel knows of both sockets
    ti = [x for x in json.loads(d.ctl("--json", "list", "-i").stdout) if x["service"] == "fw"][0]
    check(set(ti["tcp"]) == set(ti["backend_tcp"]) == {"rtt_usec", "rttvar_usec", "retransmits", "cwnd", "unacked"} and
          ti["backend_tcp"]["cwnd"] > 0, f"{ti}")
    # kick closes both sides
    d.ctl("kick", str(conns[0]["id"]))
    check(reads_eof(c), "the kicked client sees the end")
    check(reads_eof(be), "so does its backend")
    st = svc(d)
    check(st["connections_total"] == 1 and st["connections_open"] == 0, f"{st}")
    b.close()
    d.stop()


def test_half_close_both_ways():
    b = Backend()
    d = Daemon(forward_ini([b.addr]))
    port = fw_port(d)
    # the client is done sending first; the backend still answers
    c = connect(port)
    be = b.take()
    c.sendall(b"question")
    c.shutdown(socket.SHUT_WR)
    check(recv_exact(be, 8) == b"question" and reads_eof(be), "the backend reads the question, then the FIN")
    time.sleep(0.2)
    be.sendall(b"a long answer")
    check(recv_exact(c, 13) == b"a long answer", "the other way stays open after the client's FIN")
    be.close()
    check(read_to_eof(c) == 0, "then the backend's FIN reaches the client")
    # the backend is done first; the client still sends
    c = connect(port)
    be = b.take()
    be.sendall(b"banner")
    be.shutdown(socket.SHUT_WR)
    check(recv_exact(c, 6) == b"banner" and reads_eof(c), "the client reads the banner, then the FIN")
    c.sendall(b"still talking")
    check(recv_exact(be, 13) == b"still talking", "the client's way stays open after the backend's FIN")
    c.close()
    check(reads_eof(be), "and ends with the client's FIN")
    wait_for(lambda: svc(d)["connections_open"] == 0, what="both relays closed")
    b.close()
    d.stop()


def rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_resets_are_passed_on():
    b = Backend()
    d = Daemon(forward_ini([b.addr]))
    port = fw_port(d)
    c = connect(port)
    be = b.take()
    c.sendall(b"x")
    recv_exact(be, 1)
    rst(be)
    try:
        data = c.recv(10)
        check(False, f"a reset, not {data!r}")
    except ConnectionResetError:
        pass
    c = connect(port)
    be = b.take()
    c.sendall(b"y")
    recv_exact(be, 1)
    rst(c)
    try:
        data = be.recv(10)
        check(False, f"a reset, not {data!r}")
    except ConnectionResetError:
        pass
    wait_for(lambda: svc(d)["connections_open"] == 0, what="both relays closed")
    b.close()
    d.stop()


def pipes(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
        except OSError:
            pass
    return n


def test_large_transfers_are_spliced():
    """Large transfers go through a pipe of the worker's (splice), with
    readers that stall now and then, so that a socket takes only part of
    what the pipe holds and the rest waits in memory: 8 MiB each way on
    two relays of one worker at once arrive byte-exact and counted, and a
    third relay reset in the middle of its transfer leaves no byte of its
    own behind for the others."""
    b = Backend()
    d = Daemon("[tcpd]\nworkers = 1\n" + forward_ini([b.addr]))
    port = fw_port(d)
    pipes0 = pipes(d.proc.pid)
    size = 8 << 20

    def pattern(seed):
        return (bytes([seed]) + os.urandom(4095)) * (size // 4096)

    def reader(s, n, out, stall):
        got, k = bytearray(), 0
        while len(got) < n:
            data = s.recv(1 << 16)
            if not data:
                break
            got += data
            k += 1
            if stall and k % 40 == 0:
                time.sleep(0.02)  # the other socket fills: partial splices
        out.append(bytes(got))

    relays = []
    for i in range(2):
        c = connect(port)
        relays.append((c, b.take(), pattern(i), pattern(100 + i)))
    victim_c = connect(port)
    victim_be = b.take()
    threads, results = [], {}
    for i, (c, be, up, down) in enumerate(relays):
        for name, sock, blob in ((f"be{i}", be, up), (f"c{i}", c, down)):
            results[name] = []
            threads.append(threading.Thread(target=reader, args=(sock, size, results[name], True)))
        threads.append(threading.Thread(target=c.sendall, args=(up,)))
        threads.append(threading.Thread(target=be.sendall, args=(down,)))
    junk = b"\xee" * (4 << 20)
    victim_c.setblocking(False)
    for t in threads:
        t.start()
    sent = 0
    end = time.monotonic() + 2
    while sent < len(junk) and time.monotonic() < end:
        try:
            sent += victim_c.send(junk[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.005)
    rst(victim_be)  # the backend resets while the client is still sending
    for t in threads:
        t.join(60)
    for i, (c, be, up, down) in enumerate(relays):
        check(results[f"be{i}"] == [up], f"relay {i}: the backend got the client's 8 MiB exactly")
        check(results[f"c{i}"] == [down], f"relay {i}: the client got the backend's 8 MiB exactly")
    conns = [x for x in d.connections() if x["service"] == "fw"]
    check(len(conns) == 2 and all(x["bytes_in"] == size and x["bytes_out"] == size for x in conns),
          f"each relay counted 8 MiB each way: {conns}")
    check(pipes(d.proc.pid) == pipes0 + 2, f"one pipe for the worker ({pipes0} -> {pipes(d.proc.pid)} pipe ends)")
    try:
        victim_c.setblocking(True)
        victim_c.settimeout(10)
        while victim_c.recv(65536):
            pass
        check(False, "the reset reached the client")
    except ConnectionResetError:
        pass
    # small messages after large ones: read and written again, still exact
    c, be = relays[0][0], relays[0][1]
    for k in range(50):
        c.sendall(b"ping %d" % k)
        check(recv_exact(be, len(b"ping %d" % k)) == b"ping %d" % k, "small messages after large")
    for c, be, _, _ in relays:
        c.close()
        be.close()
    wait_for(lambda: svc(d)["connections_open"] == 0, what="the relays closed")
    d.stop()

    # splice = no: the same through memory, and no pipe is made
    d = Daemon("[tcpd]\nworkers = 1\n" + forward_ini([b.addr], "splice = no\n"))
    pipes0 = pipes(d.proc.pid)
    c = connect(fw_port(d))
    be = b.take()
    up, down, results = pattern(7), pattern(8), {"be": [], "c": []}
    threads = [threading.Thread(target=reader, args=(be, size, results["be"], True)),
               threading.Thread(target=reader, args=(c, size, results["c"], True)),
               threading.Thread(target=c.sendall, args=(up,)), threading.Thread(target=be.sendall, args=(down,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(results == {"be": [up], "c": [down]}, "splice = no: 8 MiB each way exactly")
    check(pipes(d.proc.pid) == pipes0, f"splice = no made a pipe ({pipes0} -> {pipes(d.proc.pid)})")
    c.close()
    be.close()
    b.close()
    d.stop()


def test_relays_at_the_descriptor_ceiling():
    """Under an open-files limit of 200, 100 clients of a relay: tcpd takes
    as many as its budget has room for with both descriptors, every one of
    them a whole relay (the backend sees each, none refused as no_backend
    half made); the rest are refused at once (reset) and counted as
    fd_limit, without tcpd spinning; once some leave, new clients are
    relayed again. An echo client meanwhile waits in the listen queue, as
    it does at the budget, and is served once there is room."""
    backend = Daemon("[echo]\nlisten = 127.0.0.1:0\n")
    # one worker: two could each take the last room at the same moment
    # (the reserve under the budget is there for that)
    d = Daemon("[tcpd]\nworkers = 1\nbacklog = 1024\n" +
               forward_ini([f"127.0.0.1:{backend.port()}"], "check_interval = 1h\n"),
               prefix=["prlimit", "--nofile=200:200", "--"])
    port = fw_port(d)
    clients = [connect(port) for _ in range(100)]
    served, refused = [], []
    for c in clients:
        try:
            c.sendall(b"?")
            c.settimeout(5)
            got = c.recv(1)
        except ConnectionResetError:
            got = None
        if got == b"?":
            served.append(c)
        else:
            check(got in (None, b""), f"a refused client reads an end, not {got!r}")
            refused.append(c)
    st, be = svc(d), backend.status()
    status = d.status()
    print(f"#   {len(served)} of 100 relayed under a limit of 200 descriptors, {len(refused)} refused", flush=True)
    check(40 < len(served) < 100 and len(served) + len(refused) == 100, f"{len(served)} relayed")
    check(st["connections_open"] == len(served) == be["connections_open"],
          f"every relay whole: {st['connections_open']} open, {be['connections_open']} at the backend")
    check(status["refused"]["no_backend"] == 0, f"none half made: {status['refused']}")
    check(status["refused"]["fd_limit"] == len(refused) == st["connections_refused"],
          f"each refused client counted as fd_limit: {status['refused']}, service: {st}")
    budget = int(d.stderr().split("room for ")[1].split()[0])
    check(2 * len(served) <= budget < 2 * len(served) + 2,
          f"{len(served)} relays take {2 * len(served)} of the budget of {budget} descriptors, and no more fit")
    check("refused connection from 127.0.0.1" in d.stderr() and "fd_limit" in d.stderr(), "logged")
    # an echo client waits in the queue instead, and is served once there is room
    echo_port = next(int(li["address"].rsplit(":", 1)[1]) for li in status["listeners"] if li["service"] == "echo")
    fillers, waiting = [], None
    for _ in range(3):  # an echo client takes one descriptor: the budget may have one left
        e = connect(echo_port)
        e.sendall(b"e")
        if select.select([e], [], [], 1.0)[0]:
            check(e.recv(1) == b"e", "echo")
            fillers.append(e)
        else:
            waiting = e
            break
    check(waiting is not None, "an echo client waits in the listen queue at the budget")
    before = d.cpu_seconds()
    time.sleep(1.0)
    check(d.cpu_seconds() - before < 0.2, "tcpd does not spin at the ceiling")
    for c in served[:10]:
        c.close()
    waiting.settimeout(10)
    check(waiting.recv(1) == b"e", "the echo client is served once relays left")
    wait_for(lambda: svc(d)["connections_open"] == len(served) - 10, what="10 relays closed")
    again = [connect(port) for _ in range(5)]
    for c in again:
        c.sendall(b"!")
        c.settimeout(10)
        check(c.recv(1) == b"!", "new clients are relayed again once others left")
    for c in clients + again + fillers + [waiting]:
        c.close()
    wait_for(lambda: svc(d)["connections_open"] == 0, what="all closed")
    d.stop()
    backend.stop()


def test_failover_and_no_backend():
    dead = Backend()
    dead.close()  # a port where nothing listens: refused
    live = Backend(echo=True)
    d = Daemon(forward_ini([dead.addr, live.addr], "connect_timeout = 2s\n"))
    port = fw_port(d)
    for _ in range(4):  # round robin starts at either: each gets through
        c = connect(port)
        c.sendall(b"ping")
        check(recv_exact(c, 4) == b"ping", "relayed to the live backend")
        c.close()
    check(live.accepted == 4, f"every client reached the live backend ({live.accepted})")
    check("connect failed" in d.stderr() and dead.addr in d.stderr(), d.stderr())
    live.close()
    # nothing listens anywhere now: the clients are refused, and counted
    for _ in range(3):
        try:
            c = connect(port)
            data = c.recv(10)
            check(data == b"", f"nothing relayed: {data!r}")
            c.close()
        except ConnectionResetError:
            pass
    st = d.status()
    check(st["refused"]["no_backend"] == 3, f"{st['refused']}")
    check(svc(d)["connections_refused"] == 3, f"{svc(d)}")
    d.stop()


def test_connect_timeout():
    # a backend whose queue is full drops SYNs: the connect hangs
    full = Backend(backlog=0)
    full.sock.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", full.port))
        fillers.append(s)
    time.sleep(0.3)
    live = Backend(echo=True)
    d = Daemon(forward_ini([full.addr, live.addr], "connect_timeout = 300ms\n"))
    port = fw_port(d)
    start = time.monotonic()
    ok = 0
    for _ in range(3):
        c = connect(port)
        c.sendall(b"late")
        ok += recv_exact(c, 4) == b"late"
        c.close()
    took = time.monotonic() - start
    check(ok == 3, "every client got through")
    check(took < 5, f"at most a connect_timeout each ({took:.2f} s)")
    check("Connection timed out" in d.stderr(), d.stderr())
    for s in fillers:
        s.close()
    full.close()
    live.close()
    d.stop()


def test_balance():
    a, b = Backend(echo=True, name=b"A"), Backend(echo=True, name=b"B")
    d = Daemon(forward_ini([a.addr, b.addr]))
    port = fw_port(d)
    names = []
    for _ in range(6):
        c = connect(port)
        names.append(recv_exact(c, 1))
        c.close()
    check(names.count(b"A") == 3 and names.count(b"B") == 3, f"round robin: {names}")
    d.write_config(forward_ini([a.addr, b.addr], "balance = source\n"))
    d.ctl("reload")
    for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        seen = set()
        for _ in range(4):
            c = connect(port, source=src)
            seen.add(recv_exact(c, 1))
            c.close()
        check(len(seen) == 1, f"source: {src} always to the same backend ({seen})")
    # leastconn: with one connection held on A, the next two go to B first
    d.write_config(forward_ini([a.addr, b.addr], "balance = leastconn\n"))
    d.ctl("reload")
    held = connect(port)
    first = recv_exact(held, 1)
    other = b"B" if first == b"A" else b"A"
    c = connect(port)
    check(recv_exact(c, 1) == other, "leastconn: the backend with fewer connections")
    c.close()
    held.close()
    a.close()
    b.close()
    d.stop()


def test_backend_that_never_reads():
    b = Backend()
    d = Daemon("[tcpd]\nmax_buffered = 64K\n" + forward_ini([b.addr]))
    c = connect(fw_port(d))
    be = b.take()  # accepted, never read
    rss0 = int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    c.setblocking(False)
    sent, end = 0, time.monotonic() + 3
    chunk = b"z" * 65536
    while time.monotonic() < end:
        try:
            sent += c.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
    rss1 = int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    check(sent < 64 * 1024 * 1024, f"the client is slowed ({sent} bytes in 3 s)")
    check(rss1 - rss0 < 4096, f"tcpd holds at most max_buffered for it ({rss0} -> {rss1} KiB)")
    conns = [x for x in d.connections() if x["service"] == "fw"]
    check(conns[0]["state"] == "to-backend", f"{conns}")
    # the client goes: once the backend has read what came before the
    # client's FIN, the FIN reaches it, and its close ends the relay
    c.close()
    be.setblocking(True)
    got = 0
    while True:
        data = be.recv(1 << 20)
        if not data:
            break
        got += len(data)
    check(got == sent, f"every byte the client sent reached the backend ({got} of {sent})")
    be.close()
    wait_for(lambda: svc(d)["connections_open"] == 0, what="the relay closed")
    b.close()
    d.stop()


def test_idle_counts_both_directions():
    b = Backend()
    d = Daemon(forward_ini([b.addr], "idle_timeout = 1s\n"))
    port = fw_port(d)
    quiet = connect(port)
    b.take()
    talky = connect(port)
    be = b.take()
    for _ in range(8):  # only the backend talks, every 0.25 s, for 2 s
        be.sendall(b".")
        time.sleep(0.25)
    check(reads_eof(quiet, timeout=5), "the quiet relay timed out")
    check(recv_exact(talky, 8) == b"........", "the one whose backend talks did not")
    talky.close()
    b.close()
    d.stop()


def backends(d):
    return {b["backend"]: b for b in json.loads(d.ctl("--json", "backends").stdout)}


def test_health_checks():
    a = Backend(echo=True, name=b"A")
    b = Backend(echo=True, name=b"B")
    port_b = b.port
    d = Daemon(forward_ini([a.addr, b.addr], "check_interval = 200ms\nrise = 2\nfall = 2\n"))
    mon = subprocess.Popen([TCPCTL, "-s", d.control, "--json", "monitor"], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: all(x["check"] == "ok" for x in backends(d).values()), what="both checked ok")
        b.close()  # B goes away: its checks fail, it goes down
        wait_for(lambda: backends(d)[b.addr]["state"] == "down", what="B down")
        bk = backends(d)[b.addr]
        check(bk["check"] == "refused" and bk["check_error"] == "Connection refused" and bk["checks_failed"] >= 2,
              f"{bk}")
        check(f"backend {b.addr} is down" in d.stderr(), d.stderr())
        port = fw_port(d)
        for _ in range(4):  # no client goes to a backend that is down
            c = connect(port)
            check(recv_exact(c, 1) == b"A", "every client to A")
            c.close()
        check(backends(d)[b.addr]["connect_failures"] == 0, "not even tried")
        b = Backend(echo=True, name=b"B", port=port_b)  # back: rise checks bring it up
        wait_for(lambda: backends(d)[b.addr]["state"] == "up", what="B up again")
        check(f"backend {b.addr} is up" in d.stderr(), d.stderr())
        table = d.ctl("backends", "fw").stdout
        check(table.splitlines()[0].split()[:5] == ["SERVICE", "BACKEND", "STATE", "ADMIN", "CHECK"] and
              a.addr in table and b.addr in table, table)
        check("backends 2 of 2 up" in d.ctl("status").stdout, d.ctl("status").stdout)
        metrics = d.ctl("metrics").stdout
        for line in (f'tcpd_backend_up{{service="fw",backend="{a.addr}"}} 1',
                     f'tcpd_backend_connections_total{{service="fw",backend="{a.addr}"}} 4',
                     'tcpd_connections_refused_total{rule="no_backend"} 0'):
            check(line in metrics, f"{line} in {metrics}")
        lint = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=metrics,
                              capture_output=True, text=True, timeout=30)
        check(lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(),
              f"promtool: {lint.stdout}{lint.stderr}")
    finally:
        mon.terminate()
        out = mon.communicate(timeout=10)[0]
    events = [json.loads(x) for x in out.splitlines() if x.strip()]
    states = [(e["backend"], e["state"]) for e in events if e["type"] == "backend"]
    check(states == [(b.addr, "down"), (b.addr, "up")], f"monitor: {states}")
    closed = [e for e in events if e["type"] == "closed" and e["service"] == "fw"]
    check(len(closed) == 4 and all(e["backend"] == a.addr for e in closed), f"closes name the backend: {closed}")
    a.close()
    b.close()
    d.stop()


def test_check_send_expect():
    class Pong(Backend):
        def __init__(self, answer):
            self.answer = answer
            super().__init__(echo=True)

        def serve(self, s):
            try:
                if s.recv(100).startswith(b"PING\r\n"):
                    s.sendall(self.answer)
                s.recv(100)
            except OSError:
                pass
            finally:
                s.close()
    good, bad = Pong(b"+PONG\r\n"), Pong(b"-NOPE\r\n")
    d = Daemon(forward_ini([good.addr, bad.addr], 'check = send "PING\\r\\n" expect +PONG\ncheck_interval = 200ms\n'
                                                    "fall = 1\n"))
    wait_for(lambda: backends(d)[bad.addr]["state"] == "down", what="the one that does not answer PONG down")
    bk = backends(d)
    check(bk[good.addr]["state"] == "up" and bk[good.addr]["check"] == "ok", f"{bk}")
    check(bk[bad.addr]["check"] == "mismatch", f"{bk}")
    # --check-config writes the check back as it reads it
    out = subprocess.run([TCPD, "--check-config", "-c", d.config],
                         capture_output=True, text=True, timeout=10).stdout
    check('check = send "PING\\r\\n" expect +PONG' in out, out)
    good.close()
    bad.close()
    d.stop()


def test_admin_drain_disable_enable():
    a, b = Backend(echo=True, name=b"A"), Backend(echo=True, name=b"B")
    d = Daemon("[tcpd]\ncontrol_socket_mode = 0666\n" + forward_ini([a.addr, b.addr]))
    port = fw_port(d)
    held = []
    for _ in range(2):  # one on each
        c = connect(port)
        held.append((recv_exact(c, 1), c))
    on_b = [c for n, c in held if n == b"B"][0]
    out = d.ctl("backend", "drain", "fw", b.addr).stdout
    check(f"service fw: backend {b.addr} drain (was enabled)" in out, out)
    for _ in range(4):
        c = connect(port)
        check(recv_exact(c, 1) == b"A", "no new client to the drained backend")
        c.close()
    on_b.sendall(b"still")
    check(recv_exact(on_b, 5) == b"still", "its open connection stays")
    check(backends(d)[b.addr]["admin"] == "drain", f"{backends(d)}")
    d.ctl("reload")
    check(backends(d)[b.addr]["admin"] == "drain", "kept across a reload")
    d.ctl("backend", "disable", "fw", "127.0.0.1:%d" % b.port)  # by address too
    check(backends(d)[b.addr]["admin"] == "disabled", f"{backends(d)}")
    d.ctl("backend", "enable", "fw", b.addr)
    names = set()
    for _ in range(4):
        c = connect(port)
        names.add(recv_exact(c, 1))
        c.close()
    check(names == {b"A", b"B"}, f"enabled again: {names}")
    p = d.ctl("backend", "drain", "fw", "10.9.9.9:1", ok=(2,))
    check("has no backend 10.9.9.9:1" in p.stderr, p.stderr)
    p = d.ctl("backend", "drain", "nope", b.addr, ok=(2,))
    check("no service named 'nope'" in p.stderr, p.stderr)
    p = d.ctl("backend", "pause", "fw", b.addr, ok=(2,))
    check("drain, disable or enable" in p.stderr, p.stderr)
    ctl = os.path.join(d.dir, "tcpctl")  # reachable for nobody: the build tree may not be
    shutil.copy(TCPCTL, ctl)
    os.chmod(ctl, 0o755)
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ctl, "-s", d.control,
                        "backend", "drain", "fw", b.addr], capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "permission denied" in p.stderr, f"nobody cannot drain: {p.stderr}")
    check(backends(d)[b.addr]["admin"] == "enabled", "and nothing changed")
    check("drain (was enabled) by uid 0" in d.stderr(), d.stderr())
    for _, c in held:
        c.close()
    a.close()
    b.close()
    d.stop()


def test_relays_by_the_thousand():
    """9,900 relays at once, as close to 10,000 as an open-files limit of
    20,000 allows (19,800 of tcpd's descriptors; the unit's fd store would
    keep 8,192 pairs): each relays a byte both ways, and when the clients
    go every relay and descriptor is gone again. The backend is another
    tcpd's echo. Fewer under a sanitizer, or a lower limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the clients are this process's
    n = min(2000 if sanitized() else 9900, (hard - 200) // 2)
    backend = Daemon("[echo]\nlisten = 127.0.0.1:0\n")
    d = Daemon(forward_ini([f"127.0.0.1:{backend.port()}"], "check_interval = 10s\n"))
    port = fw_port(d)
    fds0 = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
    conns = []
    try:
        start = time.monotonic()
        while len(conns) < n and time.monotonic() - start < 120:
            batch = [connect(port) for _ in range(min(200, n - len(conns)))]
            for s in batch:
                s.sendall(b"r")
            for s in batch:
                check(s.recv(1) == b"r", "relayed both ways")
            conns += batch
        check(len(conns) == n, f"{len(conns)} of {n} relays in 120 s")
        st = svc(d)
        check(st["connections_open"] == n, f"{st['connections_open']} open")
        fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        # (a health check's socket may come or go meanwhile: one either way)
        check(fds - fds0 >= 2 * n - 1, f"two descriptors a relay ({fds0} -> {fds})")
        bk = backends(d)[f"127.0.0.1:{backend.port()}"]
        check(bk["connections_open"] == n, f"{bk}")
        print(f"#   {n} relays in {time.monotonic() - start:.1f} s, tcpd holds {fds} descriptors", flush=True)
    finally:
        for s in conns:
            s.close()
    wait_for(lambda: svc(d)["connections_open"] == 0, timeout=60, what="every relay closed")
    wait_for(lambda: len(os.listdir(f"/proc/{d.proc.pid}/fd")) <= fds0 + 1, timeout=30, what="descriptors back")
    check(backend.status()["connections_open"] == 0 or
          wait_for(lambda: backend.status()["connections_open"] == 0, what="the backend's side closed too"), "")
    d.stop()
    backend.stop()


if __name__ == "__main__":
    main([test_relays_by_the_thousand, test_health_checks, test_check_send_expect, test_admin_drain_disable_enable, test_bytes_both_ways_and_list, test_half_close_both_ways, test_resets_are_passed_on,
          test_large_transfers_are_spliced, test_relays_at_the_descriptor_ceiling,
          test_failover_and_no_backend, test_connect_timeout, test_balance, test_backend_that_never_reads,
          test_idle_counts_both_directions])
