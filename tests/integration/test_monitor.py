#!/usr/bin/env python3
"""tcpctl monitor: a live stream of connections, closes, refusals and
reloads; a monitor that does not read loses events (and is told how many),
never slows the daemon, and is not dropped for it."""

import json
import os
import select
import signal
import socket
import subprocess
import time

from tcpdtest import TCPCTL, Daemon, check, connect, echo_roundtrip, main, read_available, sanitized, wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"


class Monitor:
    """tcpctl [--json] monitor as a child process, read line by line."""

    def __init__(self, d, json_out=True):
        cmd = [TCPCTL, "-s", d.control] + (["--json"] if json_out else []) + ["monitor"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.json = json_out
        self.lines = []
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        if json_out:
            first = self.next()
            check(first["type"] == "started", f"the stream starts with 'started': {first}")

    def next(self, timeout=10):
        # our own buffer: select() cannot see lines already in a file
        # object's buffer
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            r, _, _ = select.select([self.fd], [], [], max(0, deadline - time.monotonic()))
            check(r, "no event within the timeout")
            data = os.read(self.fd, 65536)
            check(data, f"monitor ended: {self.proc.stderr.read() if self.proc.poll() is not None else ''}")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.decode() + "\n"
        self.lines.append(line)
        return json.loads(line) if self.json else line

    def until(self, pred, limit=100):
        for _ in range(limit):
            e = self.next()
            if pred(e):
                return e
        raise AssertionError("event not seen")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(10)
        check(rc == 0, f"monitor exits 0 on Ctrl-C, not {rc}: {self.proc.stderr.read()}")


def test_events():
    d = Daemon("[tcpd]\nadmin_group = root\ndeny = 127.0.0.9\n" + LISTEN)
    port = d.port()
    m = Monitor(d)
    s = connect(port)
    echo_roundtrip(s, b"hello")
    e = m.next()
    check(e["type"] == "connected" and e["peer"] == f"127.0.0.1:{s.getsockname()[1]}" and e["service"] == "echo"
          and e["id"] > 0 and e["time_usec"] > 0, f"connected: {e}")
    cid = e["id"]
    s.close()
    e = m.next()
    check(e["type"] == "closed" and e["id"] == cid and e["reason"] == "closed by peer" and e["bytes_in"] == 5
          and e["bytes_out"] == 5, f"closed: {e}")
    k = connect(port)
    echo_roundtrip(k, b"x")
    kid = m.next()["id"]
    d.ctl("kick", str(kid))
    e = m.next()
    check(e["type"] == "kicked" and e["id"] == kid and e["reason"] == "kicked", f"kicked: {e}")
    try:
        r = socket.socket()
        r.bind(("127.0.0.9", 0))
        r.connect(("127.0.0.1", port))
        r.recv(1)
    except OSError:
        pass
    e = m.next()
    check(e["type"] == "refused" and e["rule"] == "deny" and e["peer"].startswith("127.0.0.9:"), f"refused: {e}")
    d.ctl("reload")
    e = m.next()
    check(e == {**e, "type": "reload", "ok": True}, f"reload: {e}")
    with open(d.config, "a") as f:
        f.write("bogus_key = 1\n")
    d.ctl("reload", ok=(1,))
    e = m.next()
    check(e["type"] == "reload" and e["ok"] is False and "bogus_key" in e["error"], f"failed reload: {e}")
    m.stop()
    d.stop()


def test_human_lines():
    d = Daemon(LISTEN)
    m = Monitor(d, json_out=False)
    wait_for(lambda: "monitoring tcpd" in (m.proc.stderr.readline() or ""), what="the header on stderr")
    s = connect(d.port())
    echo_roundtrip(s, b"abc")
    line = m.next()
    check(" connected " in line and f"127.0.0.1:{s.getsockname()[1]} echo" in line, line)
    s.close()
    line = m.next()
    check(" closed " in line and "closed by peer, 3B in, 3B out" in line, line)
    m.stop()
    d.stop()


def test_every_worker_reports():
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN)
    m = Monitor(d)
    port = d.port()
    conns = []
    for i in range(200):
        conns.append(connect(port))
        echo_roundtrip(conns[-1], b"w")
    seen = set()
    for _ in range(200):
        e = m.next()
        check(e["type"] == "connected", f"{e}")
        seen.add(e["worker"])
    check(seen == {0, 1}, f"events from both workers: {seen}")
    m.stop()
    d.stop()


def test_monitor_that_does_not_read():
    d = Daemon("[tcpd]\ncontrol_socket_mode = 0666\n" + LISTEN)
    port = d.port()

    def rss():
        return int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0])

    def flood(n=3000):
        start = time.monotonic()
        for _ in range(n):
            connect(port).close()
        return time.monotonic() - start

    # the same flood without a monitor first: what it costs anyway (under
    # ASan, freed memory sits in quarantine and RSS grows with any churn)
    rss_a = rss()
    time_a = flood()
    growth_a = rss() - rss_a
    lazy = socket.socket(socket.AF_UNIX)
    lazy.connect(d.control)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.sendall(b'{"method":"org.tcpd.Daemon.Monitor","more":true}\0')
    time.sleep(0.3)
    rss0 = rss()
    time_b = flood()  # 6000 events, far past what the lazy monitor holds
    t = time.monotonic()
    st = d.status()
    check(time.monotonic() - t < 1.0, "status answers at once")
    # every client has gone, but tcpd may still be accepting the last of
    # them (a loaded machine, a sanitizer): all are counted, soon
    if st["connections_total"] != 6000:
        wait_for(lambda: d.status()["connections_total"] == 6000, timeout=20, what="6000 connections counted")
    s = connect(port)
    echo_roundtrip(s, b"echo is not slowed")
    growth_b = rss() - rss0
    # under ASan every event's freed JSON waits in the allocator's quarantine
    # (up to 256 MB), and TSan's allocator keeps its own caches, so only the
    # plain build can show the bound tightly
    slack = 65536 if sanitized() else 4096
    check(growth_b < growth_a + slack, f"memory bounded: {growth_b} KiB with the monitor, {growth_a} without")
    check(time_b < 2 * time_a + 2, f"the flood took {time_b:.1f}s with the monitor, {time_a:.1f}s without")
    # now read: the monitor was kept, and is told what it missed
    # Read all that waits, then make new events: the first that finds room
    # carries the count of what was missed (a few rounds, as the backlog
    # drains while we read)
    buf = b""
    for _ in range(6):
        s.close()
        s = connect(port)
        got = read_available(lazy)
        buf += got
        if b'"dropped"' in buf and b'"dropped"' not in got:
            break  # a round with nothing missed: every count is in
    events = [json.loads(x)["parameters"]["event"] for x in buf.split(b"\0") if x]
    dropped = [e for e in events if e["type"] == "dropped"]
    check(dropped and dropped[0]["count"] > 0, f"a 'dropped' event with the count: {events[-3:]}")
    check(sum(e["count"] for e in dropped) + len([e for e in events if e["type"] in ("connected", "closed")]) >= 6000,
          f"every event either delivered or counted as dropped: {[e['count'] for e in dropped]} dropped, "
          f"{len([e for e in events if e['type'] in ('connected', 'closed')])} delivered")
    lazy.close()
    d.stop()


def _raw_monitor(d):
    m = socket.socket(socket.AF_UNIX)
    m.connect(d.control)
    m.sendall(b'{"method":"org.tcpd.Daemon.Monitor","more":true}\0')
    m.settimeout(5)
    first = m.recv(4096)
    check(b'"started"' in first, f"the stream started: {first!r}")
    return m


def _rss_kib(d):
    return int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0])


def test_monitor_input_is_bounded():
    """What a monitor sends after its call is never answered: tcpd holds at
    most one message's worth of it (64 KiB), then ends the stream with an
    error and closes."""
    d = Daemon(LISTEN)
    m = _raw_monitor(d)
    rss0 = _rss_kib(d)
    sent = 0
    m.settimeout(0.5)
    try:
        while sent < 64 << 20:  # 64 MiB without a NUL, at most
            sent += m.send(b"x" * 65536)
    except (BrokenPipeError, ConnectionResetError, socket.timeout, BlockingIOError):
        pass
    check(sent < 16 << 20, f"tcpd kept reading: {sent >> 20} MiB taken")
    growth = _rss_kib(d) - rss0
    check(growth < 8192, f"RSS grew by {growth} KiB")
    buf = b""
    m.settimeout(5)
    try:
        while True:
            chunk = m.recv(65536)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    replies = [json.loads(x) for x in buf.split(b"\0") if x]
    check(replies and replies[-1].get("error") == "org.varlink.service.InvalidParameter",
          f"an error ends the stream: {replies[-1:]}")
    m.close()
    check(d.status()["state"] == "running", "tcpd still answers")
    d.stop()


def test_half_closed_monitor_costs_nothing():
    """A monitor that shuts down its writing side and never reads: tcpd
    stops watching its input (no spinning on the EOF), and events still
    reach a half-closed monitor that does read."""
    d = Daemon(LISTEN)
    port = d.port()
    lazy = _raw_monitor(d)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    lazy.shutdown(socket.SHUT_WR)
    reader = _raw_monitor(d)
    reader.shutdown(socket.SHUT_WR)
    for _ in range(300):  # fills the lazy one's socket
        connect(port).close()
    time.sleep(0.3)
    cpu0 = d.cpu_seconds()
    time.sleep(2)
    cpu = d.cpu_seconds() - cpu0
    check(cpu < 0.3, f"tcpd used {cpu:.2f} s of CPU in 2 s with a half-closed monitor")
    # the reader read nothing during the flood either: take what waits,
    # then a new connection's events reach it
    buf = read_available(reader)
    reader.settimeout(5)
    s = connect(port)
    echo_roundtrip(s, b"x")
    s.close()
    while b'"id":301' not in buf:
        chunk = reader.recv(1 << 20)
        check(chunk, "the half-closed monitor's stream ended")
        buf += chunk
    check(d.status()["state"] == "running", "tcpd still answers")
    lazy.close()
    reader.close()
    d.stop()


def test_monitor_needs_more():
    d = Daemon(LISTEN)
    c = socket.socket(socket.AF_UNIX)
    c.connect(d.control)
    c.sendall(b'{"method":"org.tcpd.Daemon.Monitor"}\0')
    c.settimeout(5)
    reply = json.loads(c.recv(4096).rstrip(b"\0"))
    check(reply.get("error") == "org.varlink.service.ExpectedMore", f"{reply}")
    p = subprocess.run([TCPCTL, "-s", d.control, "monitor", "extra"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2, f"usage error: {p.returncode}")
    d.stop()


if __name__ == "__main__":
    main([test_events, test_human_lines, test_every_worker_reports, test_monitor_that_does_not_read,
          test_monitor_input_is_bounded, test_half_closed_monitor_costs_nothing, test_monitor_needs_more])
