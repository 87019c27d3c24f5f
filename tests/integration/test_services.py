#!/usr/bin/env python3
"""inetd's other built-ins: discard (RFC 863), chargen (RFC 864), daytime
(RFC 867) and time (RFC 868), a banner per service, each chosen by the
settings or by systemd's FileDescriptorName."""

import re
import socket
import struct
import time

from tcpdtest import (Daemon, activated, check, connect, echo_roundtrip, free_port, main, reads_eof, recv_exact, refused,
                      run_config_check, wait_for)

SERVICES = ("[echo]\nlisten = 127.0.0.1:0\n[discard]\nlisten = 127.0.0.1:0\n"
            "[chargen]\nlisten = 127.0.0.1:0\n")


def service_port(d, name):
    for li in d.status()["listeners"]:
        if li["service"] == name:
            return int(li["address"].rsplit(":", 1)[1])
    raise AssertionError(f"no {name} listener")


def chargen_expected(n, start_line=0):
    """The first n bytes of RFC 864's pattern as tcpd (and inetd) send it."""
    out = bytearray()
    line = start_line
    while len(out) < n:
        out += bytes(32 + (line + i) % 95 for i in range(72)) + b"\r\n"
        line += 1
    return bytes(out[:n])


def test_discard():
    d = Daemon(SERVICES)
    s = connect(service_port(d, "discard"))
    s.sendall(b"x" * 200000)
    s.settimeout(0.5)
    try:
        data = s.recv(10)
        check(False, f"discard sent something back: {data!r}")
    except socket.timeout:
        pass
    wait_for(lambda: d.status()["bytes_in"] == 200000, what="200000 bytes counted in")
    check(d.status()["bytes_out"] == 0, "nothing out")
    conns = d.ctl("list", "--service", "discard", json_out=True)
    check(len(conns) == 1 and conns[0]["service"] == "discard", f"{conns}")
    s.shutdown(socket.SHUT_WR)
    check(reads_eof(s), "discard closes after the client's FIN")
    d.stop()


def test_chargen_pattern_and_fin():
    d = Daemon(SERVICES)
    s = connect(service_port(d, "chargen"))
    data = recv_exact(s, 300000)
    check(data == chargen_expected(300000), "the RFC 864 pattern, byte for byte, across several cycles")
    s.sendall(b"ignored input")  # thrown away
    check(len(recv_exact(s, 1000)) == 1000, "still generating after input")
    s.shutdown(socket.SHUT_WR)
    check(reads_eof(s, timeout=10), "chargen closes after the client's FIN")
    d.stop()


def test_chargen_back_pressure():
    """A client that does not read costs tcpd nothing but its socket buffer:
    tcpd stops sending (bytes out stay put) and its memory does not grow."""
    d = Daemon(SERVICES)
    slow = [connect(service_port(d, "chargen")) for _ in range(20)]
    for s in slow:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(1)
    out1 = d.status()["bytes_out"]
    rss1 = int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    time.sleep(1)
    out2 = d.status()["bytes_out"]
    rss2 = int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    check(out2 == out1, f"nothing more sent to clients that do not read: {out1} -> {out2}")
    check(rss2 - rss1 < 256, f"tcpd's memory stays put: {rss1} -> {rss2} KiB")
    check(d.status()["connections_open"] == 20, "they stay open")
    # and the loop still serves others
    e = connect(service_port(d, "echo"))
    echo_roundtrip(e, b"still served")
    # a slow reader gets the pattern intact once it reads
    check(recv_exact(slow[0], 50000) == chargen_expected(50000), "intact after the stall")
    r = d.ctl("kick", "--service", "chargen", json_out=True)
    check(r["kicked"] == 20, f"{r}")
    d.stop()


def test_banners():
    d = Daemon("[echo]\nlisten = 127.0.0.1:0\nbanner = welcome to echo\n"
               "[chargen]\nlisten = 127.0.0.1:0\nbanner = chargen: RFC 864\n"
               "[discard]\nlisten = 127.0.0.1:0\nbanner = discard\n")
    e = connect(service_port(d, "echo"))
    check(recv_exact(e, 17) == b"welcome to echo\r\n", "echo's banner first")
    echo_roundtrip(e, b"then the echo")
    c = connect(service_port(d, "chargen"))
    check(recv_exact(c, 18) == b"chargen: RFC 864\r\n", "chargen's banner first")
    check(recv_exact(c, 5000) == chargen_expected(5000), "then the pattern from its start")
    x = connect(service_port(d, "discard"))
    check(recv_exact(x, 9) == b"discard\r\n", "discard's banner")
    # a reload changes the banner for new connections
    d.write_config("[echo]\nlisten = 127.0.0.1:%d\nbanner = new banner\n" % service_port(d, "echo"))
    d.ctl("reload")
    e2 = connect(service_port(d, "echo"))
    check(recv_exact(e2, 12) == b"new banner\r\n", "the reloaded banner")
    echo_roundtrip(e, b"the old connection echoes on")
    d.stop()


def test_banner_errors():
    p, path = run_config_check("[echo]\nbanner = " + "x" * 161 + "\n")
    check(p.returncode == 1 and f"{path}:2" in p.stderr and "160" in p.stderr, p.stderr)
    p, path = run_config_check("[chargen]\nbanner = a\tb\n")
    check(p.returncode == 1 and f"{path}:2" in p.stderr and "control" in p.stderr, p.stderr)
    p, path = run_config_check("[echo]\nmotd = hi\n")
    check(p.returncode == 1 and "banner" in p.stderr, f"the known keys are named: {p.stderr}")
    p, _ = run_config_check("[echo]\nbanner = hello there\n")
    check(p.returncode == 0 and "banner = hello there" in p.stdout, p.stdout)
    # " ;" starts an inline comment for inih: a banner that begins with ';'
    # (written "banner =;-)") must print back the same way (found by fuzz_config)
    p, _ = run_config_check("[echo]\nbanner =;-)\n")
    check(p.returncode == 0 and "banner =;-)\n" in p.stdout, p.stdout)
    again, _ = run_config_check(p.stdout)
    check(again.returncode == 0 and again.stdout.split("\n", 1)[1] == p.stdout.split("\n", 1)[1],
          "the printed settings load back to the same")


def test_activated_by_name():
    # systemd-socket-activate binds both and starts tcpd at the first
    # connection; tcpd names its own control socket
    ports = {"chargen": free_port(), "discard": free_port()}
    d = Daemon("", activate=[f"127.0.0.1:{ports['chargen']}", f"127.0.0.1:{ports['discard']}"],
               fdnames=["chargen", "discard"], wait_ready=False)
    c = None

    def connected():
        nonlocal c
        try:
            c = connect(ports["chargen"])
            return True
        except ConnectionRefusedError:
            return False
    wait_for(connected, what="systemd-socket-activate listening")
    d.wait_notify("READY=1")
    check(recv_exact(c, 1000) == chargen_expected(1000), "chargen from FileDescriptorName=chargen")
    listeners = d.status()["listeners"]
    check(sorted(li["service"] for li in listeners) == ["chargen", "discard"] and
          all(li["activated"] for li in listeners), f"{listeners}")
    x = connect(ports["discard"])
    x.sendall(b"dropped")
    wait_for(lambda: d.status()["bytes_in"] >= 7, what="discard counted the bytes")
    d.stop()


def read_all(s, timeout=5):
    s.settimeout(timeout)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_daytime_and_time():
    d = Daemon("[tcpd]\nlog_connections = yes\ndeny = 127.0.0.9\n[daytime]\nlisten = 127.0.0.1:0\n"
               "[time]\nlisten = 127.0.0.1:0\nbanner = hello\n")
    # daytime: one line of the local date and time, then the server closes
    before = time.time()
    s = connect(service_port(d, "daytime"))
    line = read_all(s)
    s.close()
    check(re.fullmatch(rb"[A-Z][a-z]{2} [A-Z][a-z]{2} [ 1-3][0-9] \d\d:\d\d:\d\d \d{4}\r\n", line), repr(line))
    when = time.mktime(time.strptime(line.decode().strip(), "%a %b %d %H:%M:%S %Y"))
    check(before - 2 <= when <= time.time() + 1, f"{line!r} is not now")
    # time: 32 bits, seconds since 1900 in network byte order, after the banner
    s = connect(service_port(d, "time"))
    data = read_all(s)
    s.close()
    check(data.startswith(b"hello\r\n") and len(data) == 7 + 4, repr(data))
    since_1900 = struct.unpack("!I", data[7:])[0]
    check(abs(since_1900 - 2208988800 - time.time()) < 3, f"{since_1900} is not now")
    # a client that sends first is not answered with a reset
    s = connect(service_port(d, "time"))
    s.sendall(b"what time is it?\n")
    check(len(read_all(s)) == 11, "the answer, then a FIN")
    s.close()
    wait_for(lambda: d.status()["connections_open"] == 0, what="every connection closed")
    check("done after" in d.stderr(), "the log gives the reason 'done'")
    st = d.status()
    check(st["connections_total"] == 3 and st["connections_reset"] == 0, f"{st}")
    # each service with its own counters
    svc = {s["name"]: s for s in st["services"]}
    check({"daytime", "time"} <= set(svc), f"{st['services']}")
    check(svc["daytime"]["connections_total"] == 1 and svc["daytime"]["bytes_out"] == len(line), f"{svc}")
    check(svc["time"]["connections_total"] == 2 and svc["time"]["bytes_out"] == 22 and
          svc["time"]["connections_open"] == 0, f"{svc}")
    check(refused(service_port(d, "daytime"), source="127.0.0.9"), "denied")
    svc = {s["name"]: s for s in d.status()["services"]}
    check(svc["daytime"]["connections_refused"] == 1 and svc["time"]["connections_refused"] == 0, f"{svc}")
    human = d.ctl("status").stdout
    check(re.search(r"^ +daytime 0 open, 1 total, 1 refused, 0B in, 26B out", human, re.M) and
          re.search(r"^ +time +0 open, 2 total, 0 refused, \d+B in, 22B out", human, re.M) and
          "services:" in human, human)
    d.stop()


def test_named_services():
    """[service NAME] sections: any number, each of a type; list, kick and
    status by name; a reload adds and removes services without touching the
    connections of those that stay; systemd's FileDescriptorName= by name."""
    d = Daemon("[echo]\nlisten =\n[service git]\ntype = echo\nlisten = 127.0.0.1:0\nbanner = git here\n"
               "[service mirror]\ntype = echo\nlisten = 127.0.0.1:0\n"
               "[service clock]\ntype = daytime\nlisten = 127.0.0.1:0\n")
    git, mirror = connect(service_port(d, "git")), connect(service_port(d, "mirror"))
    check(recv_exact(git, 10) == b"git here\r\n", "the service's own banner")
    echo_roundtrip(git, b"to git\n")
    echo_roundtrip(mirror, b"to mirror\n")
    s = connect(service_port(d, "clock"))
    check(read_all(s).endswith(b"\r\n"), "daytime under its own name")
    s.close()
    st = d.status()
    svc = {x["name"]: x for x in st["services"]}
    check(svc["git"]["type"] == "echo" and svc["clock"]["type"] == "daytime" and svc["git"]["connections_open"] == 1,
          f"{st['services']}")
    human = d.ctl("status").stdout
    check(re.search(r"^services: +git \(echo\) +1 open, 1 total", human, re.M), human)
    listed = d.ctl("list", "--service", "git", json_out=True)
    check([c["service"] for c in listed] == ["git"], f"{listed}")
    kicked = d.ctl("kick", "--service", "mirror", json_out=True)
    check(kicked["kicked"] == 1 and reads_eof(mirror), f"{kicked}")
    # a reload: clock goes, relay comes, git stays and keeps its connection
    d.write_config("[echo]\nlisten =\n[service git]\ntype = echo\nlisten = 127.0.0.1:0\nbanner = git here\n"
                   "[service relay]\ntype = discard\nlisten = 127.0.0.1:0\n")
    port_clock = service_port(d, "clock")
    d.ctl("reload")
    names = {li["service"] for li in d.status()["listeners"]}
    check(names == {"git", "relay"}, f"{names}")
    check(refused_port(port_clock), "clock's listener closed")
    echo_roundtrip(git, b"still git after the reload\n")
    check(d.connections()[0]["service"] == "git", "the connection keeps its service")
    git.close()
    d.stop()
    # a socket from systemd picks the service by its name
    port = free_port()
    d = Daemon("[service git]\ntype = echo\nbanner = git here\n", activate=[f"127.0.0.1:{port}"],
               fdnames=["git"], wait_ready=False)
    s = activated(d, port)
    check(recv_exact(s, 10) == b"git here\r\n", "the named service's banner on systemd's socket")
    echo_roundtrip(s, b"activated git\n")
    check(d.status()["listeners"][0]["service"] == "git", f"{d.status()['listeners']}")
    s.close()
    d.stop()


def refused_port(port):
    try:
        connect(port, timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


if __name__ == "__main__":
    main([test_discard, test_chargen_pattern_and_fin, test_chargen_back_pressure, test_banners, test_banner_errors,
          test_activated_by_name, test_daytime_and_time, test_named_services])
