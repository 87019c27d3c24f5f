#!/usr/bin/env python3
"""Who may connect, and for how long: allow/deny, per-source limits, the
connection rate, max_lifetime, keepalive. Refusals are resets, counted by
rule in tcpctl status."""

import socket
import struct
import threading
import time

from tcpdtest import Daemon, activated, check, connect, echo_roundtrip, free_port, main, reads_eof, refused, wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0 [::1]:0\n"


def test_allow_and_deny():
    d = Daemon("[tcpd]\nallow = 127.0.0.0/29 ::1\ndeny = 127.0.0.3\n" + LISTEN)
    port = d.port()
    check(not refused(port, source="127.0.0.2"), "allowed address admitted")
    check(refused(port, source="127.0.0.3"), "deny wins over allow")
    check(refused(port, source="127.0.0.9"), "outside allow= refused")
    check(not refused(d.port("ipv6"), host="::1"), "IPv6 allowed")
    st = d.status()
    check(st["refused"]["deny"] == 1 and st["refused"]["allow"] == 1, str(st["refused"]))
    check(st["limits"]["allow"] == ["127.0.0.0/29", "::1/128"] and st["limits"]["deny"] == ["127.0.0.3/32"],
          str(st["limits"]))
    check("refused connection from 127.0.0.3" in d.stderr() and "deny" in d.stderr(), "refusals are logged")
    human = d.ctl("status").stdout
    check("refused" in human and "deny 1" in human, human)
    d.stop()


def test_dual_stack_peers_count_as_ipv4():
    d = Daemon("[tcpd]\ndeny = 127.0.0.5\n[echo]\nlisten = 0\n")
    port = int(d.status()["listeners"][0]["address"].rsplit(":", 1)[1])
    check(refused(port, source="127.0.0.5"), "a mapped IPv4 peer matches an IPv4 deny")
    check(not refused(port, source="127.0.0.6"), "others admitted")
    d.stop()


def test_max_connections_per_source():
    d = Daemon("[tcpd]\nmax_connections_per_source = 2\n" + LISTEN)
    port = d.port()
    a = [connect(port, source="127.0.0.2") for _ in range(2)]
    for s in a:
        echo_roundtrip(s, b"ok")
    check(refused(port, source="127.0.0.2"), "third from the same source refused")
    b = connect(port, source="127.0.0.3")
    echo_roundtrip(b, b"another source is fine")
    a[0].close()
    wait_for(lambda: d.status()["connections_open"] == 2, what="slot freed")
    c = connect(port, source="127.0.0.2")
    echo_roundtrip(c, b"room again")
    check(d.status()["refused"]["max_connections_per_source"] == 1, "counted")
    for s in (a[1], b, c):
        s.close()
    d.stop()


def test_ipv6_sources_grouped_by_prefix():
    d = Daemon("[tcpd]\nmax_connections_per_source = 1\nsource_prefix_ipv6 = 0\n" + LISTEN, wait_ready=False)
    check(d.wait_exit() == 1, "prefix 0 is out of range")
    d = Daemon("[tcpd]\nmax_connections_per_source = 1\nsource_prefix_ipv6 = 64\n" + LISTEN)
    s = connect(d.port("ipv6"), host="::1")
    echo_roundtrip(s, b"v6")
    check(refused(d.port("ipv6"), host="::1"), "second from the same /64 refused")
    s.close()
    d.stop()


def test_connection_rate_per_source():
    d = Daemon("[tcpd]\nmax_connection_rate = 3/s\n" + LISTEN)
    port = d.port()
    results = [refused(port, source="127.0.0.2") for _ in range(6)]
    check(results[:3] == [False] * 3, f"a burst of 3 admitted: {results}")
    check(all(results[3:]), f"then refused: {results}")
    check(not refused(port, source="127.0.0.3"), "another source has its own bucket")
    time.sleep(1.1)  # refills at 3 a second
    check(not refused(port, source="127.0.0.2"), "admitted again after the bucket refilled")
    check(d.status()["refused"]["max_connection_rate"] == 3, str(d.status()["refused"]))
    d.stop()


def _rate_flood(d, port, seconds=1.5, threads=4):
    """Connects from one source in several threads at once, so that both
    workers accept at the same time; returns (admitted, elapsed) as tcpd
    counted them."""
    before = d.status()
    stop = time.monotonic() + seconds

    def client():
        while time.monotonic() < stop:
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
            s.close()

    start = time.monotonic()
    ts = [threading.Thread(target=client) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    after = d.status()
    refused_n = after["refused"]["max_connection_rate"] - before["refused"]["max_connection_rate"]
    admitted = after["connections_total"] - before["connections_total"]
    print(f"  {admitted} admitted, {refused_n} refused by the rate in {elapsed:.1f}s")
    check(refused_n > 50, f"the flood was a flood: {refused_n} refused")
    return admitted, elapsed


def test_connection_rate_with_two_workers():
    # workers share a source's bucket: a worker whose clock is older than
    # another's last refill must not refill it (the per-second and the
    # per-minute form; sockets tcpd binds, one per worker, and one socket
    # from systemd that both workers share)
    for rate, burst, per_s in (("5/s", 5, 5.0), ("600/min", 600, 10.0)):
        d = Daemon(f"[tcpd]\nworkers = 2\nmax_connection_rate = {rate}\n" + LISTEN)
        admitted, elapsed = _rate_flood(d, d.port())
        allowed = burst + per_s * (elapsed + 0.2) + 2
        check(admitted <= allowed, f"{rate}: {admitted} admitted in {elapsed:.1f}s, at most {allowed:.0f} allowed")
        d.stop()
    port = free_port()
    d = Daemon("[tcpd]\nworkers = 2\nmax_connection_rate = 5/s\n", activate=[f"127.0.0.1:{port}"],
               fdnames=["echo"], wait_ready=False)

    activated(d, port).close()
    time.sleep(1.1)  # the first connection's token back
    admitted, elapsed = _rate_flood(d, port)
    allowed = 5 + 5 * (elapsed + 0.2) + 2
    check(admitted <= allowed, f"activated: {admitted} admitted in {elapsed:.1f}s, at most {allowed:.0f} allowed")
    d.stop()


def test_limits_of_a_service_of_its_own():
    """A service's own max_connections, allow and deny replace [tcpd]'s for
    it; the other services keep [tcpd]'s, and the daemon's max_connections
    still holds over all."""
    d = Daemon("[tcpd]\nallow = 127.0.0.0/8\n[echo]\nlisten = 127.0.0.1:0\n"
               "[service guarded]\ntype = echo\nlisten = 127.0.0.1:0\nmax_connections = 2\n"
               "allow = 127.0.0.2 127.0.0.3\ndeny = 127.0.0.3\n")
    ports = {li["service"]: int(li["address"].rsplit(":", 1)[1]) for li in d.status()["listeners"]}
    g = ports["guarded"]
    check(refused(g, source="127.0.0.1"), "not in the service's allow")
    check(refused(g, source="127.0.0.3"), "in the service's deny")
    held = [connect(g, source="127.0.0.2") for _ in range(2)]
    for s in held:
        echo_roundtrip(s, b"in")
    check(refused(g, source="127.0.0.2"), "a third: the service's max_connections is 2")
    # the echo service has [tcpd]'s rules: 127.0.0.1 and many connections
    others = [connect(ports["echo"], source="127.0.0.1") for _ in range(4)]
    for s in others:
        echo_roundtrip(s, b"echo is not limited to 2")
    st = d.status()
    svc = {x["name"]: x for x in st["services"]}
    check(svc["guarded"]["max_connections"] == 2 and svc["guarded"]["allow"] == ["127.0.0.2/32", "127.0.0.3/32"] and
          svc["guarded"]["connections_refused"] == 3 and "max_connections" not in svc["echo"], f"{svc}")
    check(st["refused"]["max_connections"] == 1 and st["refused"]["allow"] == 1 and st["refused"]["deny"] == 1,
          f"{st['refused']}")
    held[0].close()
    wait_for(lambda: not refused(g, source="127.0.0.2"), what="room again after one closed")
    for s in held[1:] + others:
        s.close()
    d.stop()


def test_per_source_rate_and_timeouts_of_a_service():
    """A service's own max_connections_per_source, max_connection_rate,
    idle_timeout and max_lifetime: its clients are counted apart from the
    other services', and the others keep [tcpd]'s."""
    d = Daemon("[tcpd]\nmax_connections_per_source = 3\nidle_timeout = 1h\n[echo]\nlisten = 127.0.0.1:0\n"
               "[service strict]\ntype = echo\nlisten = 127.0.0.1:0\nmax_connections_per_source = 1\n"
               "max_connection_rate = 3/min\nidle_timeout = 1s\n"
               "[service short]\ntype = echo\nlisten = 127.0.0.1:0\nmax_lifetime = 1s\n"
               "max_connections_per_source = 0\n")
    ports = {li["service"]: int(li["address"].rsplit(":", 1)[1]) for li in d.status()["listeners"]}
    # strict: one at a time from a source, whatever the echo service holds
    echo_held = [connect(ports["echo"], source="127.0.0.5") for _ in range(3)]
    for s in echo_held:
        echo_roundtrip(s, b"e")
    check(refused(ports["echo"], source="127.0.0.5"), "[tcpd]'s 3 per source hold for echo")
    a = connect(ports["strict"], source="127.0.0.5")
    echo_roundtrip(a, b"strict")
    check(refused(ports["strict"], source="127.0.0.5"), "the service's own 1 per source")
    # its idle timeout is 1s, [tcpd]'s an hour: a closes, the echo ones stay
    check(reads_eof(a, timeout=4), "closed by the service's idle timeout")
    for s in echo_held:
        echo_roundtrip(s, b"still")
    # its rate, 3 a minute from one source: one was admitted and one refused
    # above (a refusal takes no token), so one more in, then refused
    b = connect(ports["strict"], source="127.0.0.5")
    echo_roundtrip(b, b"second")
    b.close()
    wait_for(lambda: d.status()["connections_open"] == 3, what="b closed")
    c = connect(ports["strict"], source="127.0.0.5")
    echo_roundtrip(c, b"third")
    c.close()
    wait_for(lambda: d.status()["connections_open"] == 3, what="c closed")
    check(refused(ports["strict"], source="127.0.0.5"), "a fourth within the minute: the service's rate")
    check(not refused(ports["strict"], source="127.0.0.6"), "another source has its own bucket")
    # short: max_lifetime 1s of its own, and no per-source limit
    shorts = [connect(ports["short"], source="127.0.0.5") for _ in range(5)]
    for s in shorts:
        echo_roundtrip(s, b"x")
    t0 = time.monotonic()
    for s in shorts:
        check(reads_eof(s, timeout=4), "closed at the service's lifetime")
    check(time.monotonic() - t0 < 3, "at about a second")
    st = d.status()
    svc = {x["name"]: x for x in st["services"]}
    check(svc["strict"]["max_connections_per_source"] == 1 and svc["strict"]["max_connection_rate_per_min"] == 3 and
          svc["strict"]["idle_timeout_usec"] == 1000000 and svc["short"]["max_lifetime_usec"] == 1000000 and
          "idle_timeout_usec" not in svc["echo"], f"{svc}")
    check(st["refused"]["max_connections_per_source"] == 2 and st["refused"]["max_connection_rate"] == 1,
          f"{st['refused']}")
    for s in echo_held:
        echo_roundtrip(s, b"echo keeps [tcpd]'s timeouts")
        s.close()
    d.stop()


def test_max_lifetime():
    d = Daemon("[tcpd]\nmax_lifetime = 1s\n" + LISTEN)
    s = connect(d.port())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        echo_roundtrip(s, b"busy")  # activity does not extend a lifetime
    check(reads_eof(s, timeout=3), "closed at its lifetime")
    check(0.9 < time.monotonic() - t0 < 3, "at about a second")
    d.stop()


def test_keepalive_inherited_from_listener():
    d = Daemon("[tcpd]\nkeepalive_idle = 33s\nkeepalive_interval = 7s\nkeepalive_count = 4\nuser_timeout = 50s\n"
               + LISTEN)
    s = connect(d.port())
    echo_roundtrip(s, b"k")
    # tcpd's side of the connection, seen from /proc: the timer column shows
    # keepalive (2) once the connection is idle
    local = s.getsockname()
    found = False
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        rem = f[2]
        rport = int(rem.split(":")[1], 16)
        if rport == local[1] and f[5].split(":")[0] == "02":  # timer 2: keepalive
            found = True
    check(found, "tcpd's socket has the keepalive timer running")
    st = d.status()["limits"]
    check(st["keepalive"] and st["keepalive_idle_usec"] == 33_000_000 and st["user_timeout_usec"] == 50_000_000,
          str(st))
    s.close()
    d.stop()


def test_reload_lowering_limits_keeps_connections():
    d = Daemon(LISTEN)
    port = d.port()
    conns = [connect(port, source="127.0.0.2") for _ in range(3)]
    for s in conns:
        echo_roundtrip(s, b"x")
    with open(d.config, "a") as f:
        f.write("[tcpd]\nmax_connections_per_source = 1\ndeny = 127.0.0.4\n")
    import signal
    n = len(d.poll_notify())
    d.signal(signal.SIGHUP)
    d.wait_notify("READY=1", after=n + 1)
    for s in conns:
        echo_roundtrip(s, b"kept")
    check(refused(port, source="127.0.0.2"), "new ones from that source refused")
    check(refused(port, source="127.0.0.4"), "new deny applies")
    err = d.stderr()
    check("max_connections_per_source lowered to 1" in err and "keep their connections" in err, err)
    for s in conns:
        s.close()
    d.stop()


if __name__ == "__main__":
    main([test_allow_and_deny, test_dual_stack_peers_count_as_ipv4, test_max_connections_per_source,
          test_ipv6_sources_grouped_by_prefix, test_connection_rate_per_source, test_connection_rate_with_two_workers,
          test_limits_of_a_service_of_its_own, test_per_source_rate_and_timeouts_of_a_service, test_max_lifetime,
          test_keepalive_inherited_from_listener, test_reload_lowering_limits_keeps_connections])
