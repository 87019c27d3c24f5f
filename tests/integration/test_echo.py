#!/usr/bin/env python3
"""The echo service as clients see it: byte-exact, in order, v4 and v6,
back-pressure for clients that do not read, FIN and reset handling."""

import os
import random
import selectors
import socket
import threading

from tcpdtest import Daemon, check, connect, echo_roundtrip, main, recv_exact, reads_eof, wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0 [::1]:0\n"


def test_self_bound_ephemeral_port():
    d = Daemon(LISTEN)
    st = d.status()
    check(len(st["listeners"]) == 2, f"two listeners expected: {st['listeners']}")
    check(all(not li["activated"] for li in st["listeners"]), "self-bound listeners are not activated")
    s = connect(d.port())
    echo_roundtrip(s, b"hello, tcpd\n")
    s6 = connect(d.port("ipv6"), host="::1")
    echo_roundtrip(s6, b"over IPv6")
    s.close()
    s6.close()
    d.stop()


def test_many_clients_byte_exact():
    d = Daemon(LISTEN)
    port = d.port()
    rng = random.Random(862)
    clients = []
    for i in range(100):
        s = connect(port)
        s.setblocking(False)
        payload = rng.randbytes(rng.randint(1, 200_000))
        clients.append({"s": s, "out": payload, "sent": 0, "got": bytearray()})
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c["s"], selectors.EVENT_READ | selectors.EVENT_WRITE, c)
    pending = len(clients)
    import time
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=1):
            c = key.data
            if ev & selectors.EVENT_WRITE and c["sent"] < len(c["out"]):
                try:
                    c["sent"] += c["s"].send(c["out"][c["sent"]:c["sent"] + 65536])
                except BlockingIOError:
                    pass
                if c["sent"] == len(c["out"]):
                    sel.modify(c["s"], selectors.EVENT_READ, c)
            if ev & selectors.EVENT_READ:
                try:
                    data = c["s"].recv(65536)
                except BlockingIOError:
                    continue
                check(data, "server closed a client early")
                c["got"] += data
                if len(c["got"]) == len(c["out"]):
                    sel.unregister(c["s"])
                    pending -= 1
    check(pending == 0, f"{pending} clients did not get their echo in time")
    for c in clients:
        check(bytes(c["got"]) == c["out"], "a client's echo differs")
    total = sum(len(c["out"]) for c in clients)
    st = d.status()
    check(st["bytes_in"] == total and st["bytes_out"] == total,
          f"counters {st['bytes_in']}/{st['bytes_out']} != {total}")
    for c in clients:
        c["s"].close()
    d.stop()


def test_sender_that_reads_only_at_the_end():
    """1 MiB sent before reading anything: tcpd must stop reading it (back-
    pressure) and still return every byte once the client reads."""
    d = Daemon(LISTEN)
    s = connect(d.port())
    payload = os.urandom(1 << 20)
    got = bytearray()

    def reader_later():
        # the sender finishes first; only then does anyone read
        sent_all.wait(30)
        while len(got) < len(payload):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got.extend(chunk)

    sent_all = threading.Event()
    t = threading.Thread(target=reader_later)
    t.start()
    # The kernel buffers on both sides hold only part of 1 MiB, so sendall
    # would block forever if tcpd kept reading without writing. Send in a
    # thread and let the reader start once sending has stalled or finished.
    sender_done = threading.Event()

    def sender():
        s.sendall(payload)
        sender_done.set()
    st = threading.Thread(target=sender)
    st.start()
    sender_done.wait(2)
    sent_all.set()  # now read: what tcpd held back must flow again
    st.join(30)
    t.join(30)
    check(sender_done.is_set(), "the sender never finished")
    check(bytes(got) == payload, f"got {len(got)} bytes back of {len(payload)}, or they differ")
    conns = d.connections()
    check(conns[0]["bytes_in"] == len(payload) and conns[0]["bytes_out"] == len(payload), str(conns))
    s.close()
    d.stop()


def test_fin_flushes_then_closes():
    d = Daemon(LISTEN)
    s = connect(d.port())
    data = os.urandom(300_000)
    s.sendall(data[:100_000])
    s.sendall(data[100_000:])
    s.shutdown(socket.SHUT_WR)  # FIN: tcpd sends what it owes, then closes
    got = recv_exact(s, len(data))
    check(got == data, "echo before FIN differs")
    check(reads_eof(s), "tcpd did not close after the client's FIN")
    wait_for(lambda: d.status()["connections_open"] == 0, what="connection gone")
    d.stop()


def test_reset_is_counted_not_fatal():
    d = Daemon(LISTEN)
    port = d.port()
    s = connect(port)
    echo_roundtrip(s, b"x")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # RST
    wait_for(lambda: d.status()["connections_reset"] >= 1, what="reset counted")
    check("reset by peer" in d.stderr(), "a reset is logged even without log_connections")
    s2 = connect(port)
    echo_roundtrip(s2, b"still serving")
    s2.close()
    d.stop()


def test_dual_stack_peers_shown_as_ipv4():
    d = Daemon("[echo]\nlisten = 0\n")  # port only: every address, dual-stack
    addr = d.status()["listeners"][0]["address"]
    port = int(addr.rsplit(":", 1)[1])
    s = connect(port, host="127.0.0.1")
    echo_roundtrip(s, b"mapped")
    conns = d.connections()
    check(conns[0]["peer_address"] == "127.0.0.1", f"peer shown as {conns[0]['peer']}")
    check(conns[0]["local"] == f"127.0.0.1:{port}", f"local shown as {conns[0]['local']}")
    check(d.ctl("list", "--peer", "127.0.0.0/8", json_out=True), "CIDR filter must match the IPv4 form")
    # a wildcard listener's connections each have the address they reached
    others = [(connect(port, host="127.0.0.2"), f"127.0.0.2:{port}"), (connect(port, host="::1"), f"[::1]:{port}")]
    for o, _ in others:
        echo_roundtrip(o, b"where")
    local = {c["peer_port"]: c["local"] for c in d.connections()}
    for o, want in others:
        check(local[o.getsockname()[1]] == want, f"local {local} for {want}")
        o.close()
    s.close()
    d.stop()


def test_local_address_per_listener():
    # listeners bound to one address each: a connection's local address is
    # its listener's (tcpd keeps it instead of asking the socket)
    d = Daemon("[echo]\nlisten = 127.0.0.1:0 127.0.0.3:0 [::1]:0\n")
    addrs = [li["address"] for li in d.status()["listeners"]]
    check(len(addrs) == 3, str(addrs))
    clients = {}
    for a in addrs * 3:
        host, port = a.rsplit(":", 1)
        s = connect(int(port), host=host.strip("[]"))
        echo_roundtrip(s, b"local")
        clients[s.getsockname()[1]] = (s, a)
    conns = d.connections()
    check(len(conns) == 9, f"{len(conns)} listed")
    for c in conns:
        check(c["local"] == clients[c["peer_port"]][1], f"{c} came in on {clients[c['peer_port']][1]}")
    for s, _ in clients.values():
        s.close()
    d.stop()


if __name__ == "__main__":
    main([test_self_bound_ephemeral_port, test_many_clients_byte_exact, test_sender_that_reads_only_at_the_end,
          test_fin_flushes_then_closes, test_reset_is_counted_not_fatal, test_dual_stack_peers_shown_as_ipv4,
          test_local_address_per_listener])
