#!/usr/bin/env python3
"""Closing from tcpd's side loses no byte: on SIGTERM and on a kick, tcpd
stops reading, sends every byte it owes (read but not yet echoed), then a
FIN. Clients that read slowly still get all of it within shutdown_timeout;
only a client that takes nothing by then is reset, and that is counted."""

import json
import re
import signal
import socket
import threading
import time

from tcpdtest import Daemon, check, connect, fill_until_blocked, main, sanitized, wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"


class SlowClient:
    """An echo client that keeps sending while it reads at a bounded rate,
    in threads, until the server's FIN; counts what it got, and whether the
    end was a FIN or a reset."""

    def __init__(self, port, rate=2 << 20, send=True):
        self.s = connect(port)
        self.port = self.s.getsockname()[1]
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.rate = rate
        self.received = 0
        self.sent = 0
        self.end = None
        self.done = threading.Event()
        self.stop_sending = threading.Event()
        self.threads = [threading.Thread(target=self._read, daemon=True)]
        if send:
            self.threads.append(threading.Thread(target=self._send, daemon=True))
        for t in self.threads:
            t.start()

    def _send(self):
        chunk = b"s" * 16384
        deadline = time.monotonic() + 60
        while not self.stop_sending.is_set() and not self.done.is_set() and time.monotonic() < deadline:
            try:
                self.sent += self.s.send(chunk)
            except socket.timeout:
                continue
            except OSError:
                return

    def _read(self):
        start = time.monotonic()
        deadline = start + 60
        try:
            while time.monotonic() < deadline:
                data = self.s.recv(16384)
                if not data:
                    self.end = "fin"
                    break
                self.received += len(data)
                # no faster than rate bytes a second
                ahead = self.received / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        except ConnectionResetError:
            self.end = "reset"
        except socket.timeout:
            self.end = "timeout"
        self.done.set()

    def wait(self, timeout=40):
        check(self.done.wait(timeout), f"no end of stream within {timeout}s ({self.received} bytes read)")
        self.stop_sending.set()
        self.s.close()


def closed_bytes_in(d, peer_port):
    """bytes_in of the connection from peer_port when tcpd closed it, from
    its log line (log_connections = yes)."""
    m = re.findall(rf"connection \d+ from 127\.0\.0\.1:{peer_port}: \w+ after (\d+) bytes in", d.stderr())
    check(m, f"no close logged for port {peer_port}")
    return int(m[-1])


def test_sigterm_sends_everything_owed_to_a_slow_reader():
    # a client reading at 2 MB/s while still sending: tcpd has read far
    # more than the socket buffers hold when SIGTERM comes
    d = Daemon("[tcpd]\nshutdown_timeout = 30s\nlog_connections = yes\n" + LISTEN)
    c = SlowClient(d.port(), rate=1 << 20)
    wait_for(lambda: d.status()["bytes_in"] > 3 << 20, what="3 MB echoed")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    c.wait()
    took = time.monotonic() - t0
    d.wait_exit(40)
    check(d.returncode == 0, f"exit status {d.returncode}")
    got_in = closed_bytes_in(d, c.port)
    print(f"  tcpd read {got_in} bytes; the client got {c.received} back, ending with a {c.end}, "
          f"{took:.1f}s after SIGTERM")
    check(c.end == "fin", f"the stream ended with a {c.end}")
    check(c.received == got_in, f"the client got {c.received} of the {got_in} bytes tcpd read")
    check(took > 2.5, "the slow reader took longer than the old 2 s bound (the test tests that)")


def test_kick_sends_everything_owed():
    d = Daemon("[tcpd]\nshutdown_timeout = 30s\n" + LISTEN)
    # the client's view from the monitor: bytes_in of the kicked connection
    mon = socket.socket(socket.AF_UNIX)
    mon.connect(d.control)
    mon.sendall(b'{"method":"org.tcpd.Daemon.Monitor","more":true}\0')
    mon.settimeout(10)
    c = SlowClient(d.port(), rate=1 << 20)
    wait_for(lambda: d.status()["bytes_in"] > 3 << 20, what="3 MB echoed")
    t0 = time.monotonic()
    kicked = d.ctl("kick", "--all", json_out=True)
    check(kicked["kicked"] == 1, f"{kicked}")
    c.wait()
    took = time.monotonic() - t0
    buf = b""
    while b'"kicked"' not in buf:
        chunk = mon.recv(65536)
        check(chunk, "monitor ended")
        buf += chunk
    ev = [json.loads(x)["parameters"]["event"] for x in buf.split(b"\0") if x]
    bytes_in = [e for e in ev if e["type"] == "kicked"][0]["bytes_in"]
    print(f"  tcpd read {bytes_in} bytes; the client got {c.received} back, ending with a {c.end}, "
          f"{took:.1f}s after the kick")
    check(c.end == "fin", f"the stream ended with a {c.end}")
    check(c.received == bytes_in, f"the client got {c.received} of the {bytes_in} bytes tcpd read")
    st = d.status()
    check(st["connections_aborted"] == 0 and st["connections_kicked"] == 1, f"{st}")
    mon.close()
    d.stop()


def test_many_blocked_clients_get_everything_on_sigterm():
    # clients that filled every buffer and read nothing yet: each is owed
    # what tcpd read from it; after SIGTERM each reads it all, then a FIN
    # (at scale: a hundred connections draining at once)
    n = 100 if not sanitized() else 40
    d = Daemon("[tcpd]\nshutdown_timeout = 30s\nmax_buffered = 256K\n" + LISTEN)
    port = d.port()
    clients = []
    for _ in range(n):
        s = connect(port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.setblocking(False)
        try:
            for _ in range(64):  # up to 4 MB, until every buffer is full
                s.send(b"b" * 65536)
        except BlockingIOError:
            pass
        s.setblocking(True)
        s.settimeout(10)
        clients.append(s)

    def settled():
        # tcpd has read all it will read (its buffers and ours are full)
        a = {c["peer_port"]: c["bytes_in"] for c in d.connections()}
        time.sleep(0.3)
        b = {c["peer_port"]: c["bytes_in"] for c in d.connections()}
        return a == b and len(a) == n and a
    owed = wait_for(settled, what="tcpd has read what it can")
    d.signal(signal.SIGTERM)
    time.sleep(0.5)
    check(d.proc.poll() is None, "tcpd waits for its clients to read")
    short, resets = [], 0
    for s in clients:
        port_ = s.getsockname()[1]
        got = 0
        try:
            while True:
                data = s.recv(1 << 20)
                if not data:
                    break
                got += len(data)
        except ConnectionResetError:
            resets += 1
        if got != owed[port_]:
            short.append((port_, got, owed[port_]))
        s.close()
    check(not resets and not short, f"{resets} reset, short: {short[:5]}")
    d.wait_exit(30)
    check(d.returncode == 0, f"exit status {d.returncode}")


def test_a_client_that_takes_nothing_is_reset_at_the_timeout():
    d = Daemon("[tcpd]\nshutdown_timeout = 1s\nmax_buffered = 256K\n" + LISTEN)
    s = connect(d.port())
    fill_until_blocked(s, limit_s=5)
    t0 = time.monotonic()
    d.ctl("kick", "--all")
    wait_for(lambda: d.status()["connections_aborted"] == 1, what="the abort counted")
    took = time.monotonic() - t0
    check(0.8 < took < 5, f"reset {took:.1f}s after the kick, shutdown_timeout 1s")
    check("reset after shutdown_timeout with bytes still unsent" in d.stderr(), "a warning names it")
    st = d.ctl("status").stdout
    check("1 aborted" in st, st)
    s.close()
    d.stop()


def test_idle_clients_do_not_hold_up_a_stop():
    # nothing owed: every connection ends at once, whether or not the
    # client ever closes its side
    d = Daemon("[tcpd]\nshutdown_timeout = 30s\n" + LISTEN)
    conns = [connect(d.port()) for _ in range(20)]
    wait_for(lambda: d.status()["connections_open"] == 20, what="20 open")
    t0 = time.monotonic()
    d.stop(timeout=10)
    check(time.monotonic() - t0 < 2, f"stop took {time.monotonic() - t0:.1f}s")
    for s in conns:
        s.settimeout(5)
        check(s.recv(10) == b"", "a FIN")
        s.close()


if __name__ == "__main__":
    main([test_sigterm_sends_everything_owed_to_a_slow_reader, test_kick_sends_everything_owed,
          test_many_blocked_clients_get_everything_on_sigterm, test_a_client_that_takes_nothing_is_reset_at_the_timeout,
          test_idle_clients_do_not_hold_up_a_stop])
