#!/usr/bin/env python3
"""The PROXY protocol, both ways, against HAProxy itself (Debian's haproxy,
started here by PID on loopback with a configuration of the test's own):
HAProxy with send-proxy-v2 in front of tcpd (proxy_protocol_from), and a
tcpd relay with proxy_protocol = v1/v2 in front of HAProxy with
accept-proxy. Also what tcpd refuses: a header from a peer outside the
list, a broken one, none in time."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from tcpdtest import Daemon, check, connect, echo_roundtrip, free_port, main, reads_eof, wait_for

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class Haproxy:
    """haproxy -db (foreground) with one tcp-mode frontend and server."""

    def __init__(self, server, server_opts="", bind_opts=""):
        check(os.path.exists(HAPROXY), "haproxy is missing: ./dev.sh installs Debian's haproxy package")
        self.dir = tempfile.mkdtemp(prefix="tcpd-haproxy-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 200\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
                    f"frontend front\n  bind 127.0.0.1:{self.port} {bind_opts}\n  default_backend back\n"
                    f"backend back\n  server s1 {server} {server_opts}\n")
        check(subprocess.run([HAPROXY, "-c", "-q", "-f", cfg], capture_output=True, timeout=30).returncode == 0,
              "haproxy's configuration")
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log)
        wait_for(self.listening, what="haproxy listening")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def service_port(d, name):
    for li in d.status()["listeners"]:
        if li["service"] == name:
            return int(li["address"].rsplit(":", 1)[1])
    raise AssertionError(f"no {name} listener")


def test_haproxy_in_front_of_tcpd():
    """HAProxy sends a v2 header: tcpd sees the real client everywhere
    (list, allow/deny, per-source limits, logs, a program's environment)."""
    script = tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False)
    script.write('#!/bin/sh\necho "remote=$TCPREMOTEIP:$TCPREMOTEPORT"\n')
    script.close()
    os.chmod(script.name, 0o755)
    d = Daemon("[tcpd]\nlog_connections = yes\n"
               "[echo]\nlisten = 127.0.0.1:0\nproxy_protocol_from = 127.0.0.1/32\ndeny = 127.0.0.66\n"
               "max_connections_per_source = 1\n"
               f"[service who]\ntype = exec\nlisten = 127.0.0.1:0\nexec = {script.name}\n"
               "proxy_protocol_from = 127.0.0.1\n")
    echo_port, who_port = service_port(d, "echo"), service_port(d, "who")
    h_echo = Haproxy(f"127.0.0.1:{echo_port}", "send-proxy-v2")
    h_who = Haproxy(f"127.0.0.1:{who_port}", "send-proxy")
    try:
        c = connect(h_echo.port, source="127.0.0.5")
        echo_roundtrip(c, b"through haproxy")
        conns = [x for x in d.connections() if x["service"] == "echo"]
        check(len(conns) == 1 and conns[0]["peer_address"] == "127.0.0.5" and
              conns[0]["peer_port"] == c.getsockname()[1], f"the real client in list: {conns}")
        check(f"from 127.0.0.5:{c.getsockname()[1]}" in d.stderr(), "and in the log")
        # per source: the same real client a second time is refused
        c2 = connect(h_echo.port, source="127.0.0.5")
        check(reads_eof(c2), "max_connections_per_source counts the real client")
        # another real client is not
        c3 = connect(h_echo.port, source="127.0.0.6")
        echo_roundtrip(c3, b"another")
        # deny= holds for the real client
        c4 = connect(h_echo.port, source="127.0.0.66")
        check(reads_eof(c4), "deny= refuses the real client")
        st = d.status()
        check(st["refused"]["deny"] == 1 and st["refused"]["max_connections_per_source"] == 1, f"{st['refused']}")
        # a program's environment (v1 this time)
        p = connect(h_who.port, source="127.0.0.7")
        got = b""
        p.settimeout(10)
        while b"\n" not in got:
            got += p.recv(100)
        check(got.startswith(f"remote=127.0.0.7:{p.getsockname()[1]}".encode()), f"{got!r}")
        for s in (c, c2, c3, c4, p):
            s.close()
    finally:
        h_echo.stop()
        h_who.stop()
        os.unlink(script.name)
    d.stop()


def test_what_tcpd_refuses():
    d = Daemon("[echo]\nlisten = 127.0.0.1:0\nproxy_protocol_from = 127.0.0.2\n")
    port = d.port()
    # from the load balancer: a broken header, none at all, a late one
    s = connect(port, source="127.0.0.2")
    s.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")
    check(reads_eof(s), "a broken header: reset")
    s = connect(port, source="127.0.0.2")
    s.sendall(b"hello, no header\r\n")
    check(reads_eof(s), "no header: reset")
    s = connect(port, source="127.0.0.2")
    s.sendall(b"PROXY TCP4 1.2.3.4 ")  # and then nothing
    start = time.monotonic()
    check(reads_eof(s, timeout=10) and time.monotonic() - start < 6, "a truncated header: reset after 3 s")
    # a good one, in two pieces, with the client's first bytes after it
    s = connect(port, source="127.0.0.2")
    s.sendall(b"PROXY TCP4 192.0.2.9 192.0.2.1 4000 7")
    time.sleep(0.2)
    s.sendall(b"788\r\nfirst bytes")
    s.settimeout(10)
    got = b""
    while len(got) < 11:
        got += s.recv(100)
    check(got == b"first bytes", f"the bytes after the header are the client's: {got!r}")
    conns = d.connections()
    check([(x["peer"]) for x in conns] == ["192.0.2.9:4000"], f"{conns}")
    s.close()
    # from a peer not in the list: served as itself, but a header is refused
    t = connect(port, source="127.0.0.3")
    echo_roundtrip(t, b"direct")
    u = connect(port, source="127.0.0.3")
    u.sendall(b"PROXY TCP4 6.6.6.6 1.1.1.1 1 2\r\n")
    check(reads_eof(u), "a header from a peer outside the list: reset")
    t.close()
    st = d.status()
    check(st["refused"]["proxy"] == 4, f"{st['refused']}")
    check("no PROXY header within 3 s" in d.stderr() and "not in proxy_protocol_from" in d.stderr(), d.stderr())
    d.stop()


class Reporter:
    """A server that reads the PROXY v1 line HAProxy sends it, then
    answers with it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            try:
                s.settimeout(10)
                got = b""
                while b"\r\n" not in got:
                    data = s.recv(200)
                    if not data:
                        break
                    got += data
                s.sendall(got.split(b"\r\n")[0] + b"\n")
            except OSError:
                pass
            finally:
                s.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def test_tcpd_in_front_of_haproxy():
    """A tcpd relay sends v1 or v2; HAProxy (accept-proxy) takes it and
    passes the client it names on to its own server as v1: what that
    server reads is the client tcpd saw."""
    rep = Reporter()
    h = Haproxy(f"127.0.0.1:{rep.port}", "send-proxy", bind_opts="accept-proxy")
    try:
        for version in ("v1", "v2"):
            d = Daemon(f"[echo]\nlisten = 127.0.0.1:0\n[service db]\ntype = forward\nlisten = 127.0.0.1:0\nbackend = 127.0.0.1:{h.port}\n"
                       f"proxy_protocol = {version}\ncheck = connect\n")
            port = service_port(d, "db")
            c = connect(port, source="127.0.0.9")
            c.settimeout(10)
            line = b""
            while not line.endswith(b"\n"):
                data = c.recv(200)
                if not data:
                    break
                line += data
            want = f"PROXY TCP4 127.0.0.9 127.0.0.1 {c.getsockname()[1]} {port}".encode()
            check(line.strip() == want, f"{version}: HAProxy took tcpd's header: {line!r}, want {want!r}")
            c.close()
            d.stop()
    finally:
        h.stop()
        rep.close()


if __name__ == "__main__":
    main([test_haproxy_in_front_of_tcpd, test_what_tcpd_refuses, test_tcpd_in_front_of_haproxy])
