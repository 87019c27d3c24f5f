#!/usr/bin/env python3
"""The control socket as a Varlink peer sees it, byte by byte: the service
interface, errors for every malformed or wrong-typed call, replies in request
order, and clients that send garbage, too much, or never read. After every
abuse the echo service must still work."""

import json
import socket
import time

from tcpdtest import (TIMEOUT, Daemon, TestFailure, check, connect, echo_roundtrip, main, open_many, reads_eof,
                      recv_exact, wait_for)

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"

GET_INFO = "org.varlink.service.GetInfo"
GET_DESCRIPTION = "org.varlink.service.GetInterfaceDescription"
GET_STATUS = "org.tcpd.Daemon.GetStatus"
LIST = "org.tcpd.Daemon.ListConnections"
KICK = "org.tcpd.Daemon.Kick"

INVALID_PARAMETER = "org.varlink.service.InvalidParameter"
INTERFACE_NOT_FOUND = "org.varlink.service.InterfaceNotFound"
METHOD_NOT_FOUND = "org.varlink.service.MethodNotFound"
EXPECTED_MORE = "org.varlink.service.ExpectedMore"

VARLINK_MAX_MESSAGE = 64 * 1024


def encode(msg):
    return json.dumps(msg, separators=(",", ":")).encode() + b"\0"


def call_bytes(method, parameters=None, **flags):
    msg = {"method": method}
    if parameters is not None:
        msg["parameters"] = parameters
    msg.update(flags)
    return encode(msg)


class Varlink:
    """A raw control client: whatever bytes the test wants out, one whole
    reply (up to its NUL) at a time in."""

    def __init__(self, path, timeout=TIMEOUT):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = bytearray()

    def send(self, method, parameters=None, **flags):
        self.s.sendall(call_bytes(method, parameters, **flags))

    def send_raw(self, data):
        self.s.sendall(data)

    def recv(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            check(time.monotonic() < deadline, f"no whole reply within {timeout}s")
            chunk = self.s.recv(65536)
            if not chunk:
                raise TestFailure(f"control socket closed before a reply ({len(self.buf)} bytes pending)")
            self.buf += chunk
        i = self.buf.index(b"\0")
        frame = bytes(self.buf[:i])
        del self.buf[:i + 1]
        return json.loads(frame)

    def call(self, method, parameters=None, **flags):
        self.send(method, parameters, **flags)
        return self.recv()

    def expect_error(self, method, parameters, error, /, **want):
        r = self.call(method, parameters)
        check(r.get("error") == error, f"{method} {parameters}: expected {error}, got {r}")
        for k, v in want.items():
            check(r["parameters"].get(k) == v, f"{method} {parameters}: {k} should be {v!r}: {r}")
        return r

    def no_reply_within(self, seconds):
        """True if nothing arrives in the next seconds."""
        if self.buf:
            return False
        self.s.settimeout(seconds)
        try:
            data = self.s.recv(65536)
            self.buf += data
            return False
        except socket.timeout:
            return True
        finally:
            self.s.settimeout(TIMEOUT)

    def close(self):
        self.s.close()


def raw_unix(path, timeout=TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def raw_unix_retry(path, timeout=TIMEOUT):
    """Connects even while the listen backlog is full: a non-blocking
    AF_UNIX connect fails with EAGAIN then, instead of waiting."""
    def attempt():
        try:
            return raw_unix(path)
        except BlockingIOError:
            return None
    return wait_for(attempt, timeout, "room in the control socket's backlog")


def check_echo(d):
    s = connect(d.port())
    echo_roundtrip(s, b"still echoing\n")
    s.close()


def check_status(d):
    v = Varlink(d.control)
    r = v.call(GET_STATUS)
    check("error" not in r and r["parameters"]["state"] == "running", f"GetStatus: {r}")
    v.close()


def test_get_info():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    r = v.call(GET_INFO)
    check("error" not in r and "continues" not in r, f"GetInfo: {r}")
    p = r["parameters"]
    check(sorted(p["interfaces"]) == ["org.tcpd.Daemon", "org.varlink.service"], f"interfaces: {p}")
    for k in ("vendor", "product", "version", "url"):
        check(isinstance(p.get(k), str) and p[k], f"GetInfo lacks {k}: {p}")
    v.expect_error(GET_INFO, {"x": 1}, INVALID_PARAMETER, parameter="x")
    # "more" on a method that has one answer: that answer, not continued
    v.send(GET_INFO, more=True)
    r = v.recv()
    check("interfaces" in r["parameters"] and not r.get("continues"), f"GetInfo with more: {r}")
    check(v.no_reply_within(0.2), "GetInfo with more answered twice")
    v.close()
    check_echo(d)
    d.stop()


def test_get_interface_description():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    r = v.call(GET_DESCRIPTION, {"interface": "org.tcpd.Daemon"})
    desc = r["parameters"]["description"]
    check("interface org.tcpd.Daemon" in desc, f"description: {desc!r}")
    for m in ("method GetStatus", "method ListConnections", "method Kick", "method Reload"):
        check(m in desc, f"description lacks {m!r}")
    r = v.call(GET_DESCRIPTION, {"interface": "org.varlink.service"})
    check("interface org.varlink.service" in r["parameters"]["description"], f"service description: {r}")
    v.expect_error(GET_DESCRIPTION, {"interface": "com.example.Nope"}, INTERFACE_NOT_FOUND,
                   interface="com.example.Nope")
    v.expect_error(GET_DESCRIPTION, {}, INVALID_PARAMETER, parameter="interface")
    v.expect_error(GET_DESCRIPTION, None, INVALID_PARAMETER, parameter="interface")
    v.expect_error(GET_DESCRIPTION, {"interface": None}, INVALID_PARAMETER, parameter="interface")
    for bad in (5, True, ["org.tcpd.Daemon"], {"name": "org.tcpd.Daemon"}):
        v.expect_error(GET_DESCRIPTION, {"interface": bad}, INVALID_PARAMETER, parameter="interface")
    v.expect_error(GET_DESCRIPTION, {"interface": "org.tcpd.Daemon", "extra": 1}, INVALID_PARAMETER,
                   parameter="extra")
    v.close()
    check_echo(d)
    d.stop()


def test_unknown_method_and_interface():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    v.expect_error("org.tcpd.Daemon.Explode", {}, METHOD_NOT_FOUND, method="org.tcpd.Daemon.Explode")
    v.expect_error("org.varlink.service.Explode", {}, METHOD_NOT_FOUND, method="org.varlink.service.Explode")
    v.expect_error("org.tcpd.Daemon.getstatus", {}, METHOD_NOT_FOUND, method="org.tcpd.Daemon.getstatus")
    v.expect_error("com.example.Thing.Do", {}, INTERFACE_NOT_FOUND, interface="com.example.Thing")
    v.expect_error("org.tcpd.Daemo.GetStatus", {}, INTERFACE_NOT_FOUND, interface="org.tcpd.Daemo")
    v.expect_error("NoDotsAtAll", {}, INTERFACE_NOT_FOUND, interface="NoDotsAtAll")
    # an interface name longer than any buffer must not overflow one
    long_iface = "x." * 2000 + "y"
    r = v.call(long_iface + ".Do", {})
    check(r.get("error") == INTERFACE_NOT_FOUND, f"long interface: {r}")
    check(isinstance(r["parameters"].get("interface"), str), f"long interface: {r}")
    v.close()
    check_echo(d)
    d.stop()


def test_unknown_parameter_named():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    v.expect_error(GET_STATUS, {"verbose": True}, INVALID_PARAMETER, parameter="verbose")
    v.expect_error(LIST, {"peer": "127.0.0.1", "sort": "id"}, INVALID_PARAMETER, parameter="sort")
    r = v.call(GET_STATUS, {})
    check("error" not in r, f"GetStatus with empty parameters: {r}")
    v.close()
    check_echo(d)
    d.stop()


def test_list_connections():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    v.expect_error(LIST, {}, EXPECTED_MORE)

    # no connections: one reply, empty parameters, not continued
    v.send(LIST, {}, more=True)
    r = v.recv()
    check(r == {"parameters": {}}, f"empty list: {r}")
    check(v.no_reply_within(0.3), "more than one reply for an empty list")

    port = d.port()
    clients = [connect(port) for _ in range(3)]
    for i, s in enumerate(clients):
        echo_roundtrip(s, b"client %d" % i)
    v.send(LIST, {}, more=True)
    replies = [v.recv() for _ in range(3)]
    check(v.no_reply_within(0.3), "more than three replies for three connections")
    check([r.get("continues", False) for r in replies] == [True, True, False], f"continues flags: {replies}")
    conns = [r["parameters"]["connection"] for r in replies]
    ids = [c["id"] for c in conns]
    check(ids == sorted(ids) and len(set(ids)) == 3 and all(i > 0 for i in ids), f"ids not ascending: {ids}")
    # ids follow accept order within a worker; with several workers, clients
    # that connect at the same moment may get theirs in either order
    check(sorted(c["peer_port"] for c in conns) == sorted(s.getsockname()[1] for s in clients),
          f"not every connection listed once: {conns}")
    for c in conns:
        check(c["service"] == "echo" and c["peer_address"] == "127.0.0.1" and c["local"] == f"127.0.0.1:{port}",
              f"connection fields: {c}")

    # a filter that matches nothing is an empty list, not an error
    v.send(LIST, {"peer": "10.0.0.0/8"}, more=True)
    check(v.recv() == {"parameters": {}}, "filtered empty list")
    v.send(LIST, {"peer": "127.0.0.1/32"}, more=True)
    check(len([v.recv() for _ in range(3)]) == 3, "filtered list")
    for bad in ("not-an-address", "127.0.0.1/33", 127):
        r = v.call(LIST, {"peer": bad}, more=True)
        check(r.get("error") == INVALID_PARAMETER and r["parameters"].get("parameter") == "peer",
              f"ListConnections peer {bad!r}: {r}")
    # ExpectedMore comes before looking at a bad filter, or after: an error either way
    r = v.call(LIST, {"peer": "bad"})
    check(r.get("error") in (EXPECTED_MORE, INVALID_PARAMETER), f"ListConnections without more: {r}")
    for s in clients:
        echo_roundtrip(s, b"untouched")
        s.close()
    v.close()
    d.stop()


def test_long_list_streamed_to_a_slow_reader():
    """More connections than fit in one socket buffer of replies: the list
    is written as the client reads, and a call pipelined behind it waits."""
    d = Daemon(LISTEN)
    n = 1000
    echoes = open_many(d, n)
    v = Varlink(d.control, timeout=3)
    v.send_raw(call_bytes(LIST, {}, more=True) + call_bytes(GET_STATUS) +
               call_bytes(LIST, {"peer": "::/0"}, more=True))
    time.sleep(0.3)  # let tcpd fill the socket and pause the stream
    replies = []
    try:
        while len(replies) < n + 2:
            replies.append(v.recv())
    except socket.timeout:
        pass
    # (a regression: the stream once stopped after about 64 KiB of replies)
    check(len(replies) == n + 2, f"{len(replies)} replies of {n + 2}: the list stalled")
    listed = replies[:n]
    check(all("connection" in r["parameters"] for r in listed), "a reply in the list is not a connection")
    flags = [r.get("continues", False) for r in listed]
    check(all(flags[:n - 1]) and (len(listed) < n or not flags[n - 1]), "continues on all but the last reply")
    ids = [r["parameters"]["connection"]["id"] for r in listed]
    check(ids == sorted(set(ids)), "ids not ascending and unique")
    if len(replies) == n + 2:
        r = replies[n]
        check("pid" in r["parameters"] and r["parameters"]["connections_open"] == n, f"the call after the list: {r}")
        check(replies[n + 1] == {"parameters": {}}, f"an IPv6 filter on IPv4 peers: {replies[n + 1]}")
        check(v.no_reply_within(0.3), "replies beyond the calls")
    v.close()
    for s in echoes:
        s.close()
    check_echo(d)
    d.stop()


def test_list_as_rows():
    """rows: true (what tcpctl asks for): replies of up to 256 connections,
    each message naming its columns, the same connections and values as the
    one-per-reply form, the last without continues; none matched is one
    reply with no rows; a call pipelined behind it is answered after it."""
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN)
    n = 600
    echoes = open_many(d, n, batch=200)
    v = Varlink(d.control)
    r = v.call(LIST, {"rows": "yes"}, more=True)
    check(r.get("error") == INVALID_PARAMETER and r["parameters"].get("parameter") == "rows", f"rows: yes: {r}")
    v.send(LIST, {}, more=True)
    objects = [v.recv()]
    while objects[-1].get("continues"):
        objects.append(v.recv())
    objects = [r["parameters"]["connection"] for r in objects]
    v.send_raw(call_bytes(LIST, {"rows": True}, more=True) + call_bytes(GET_STATUS))
    replies = [v.recv()]
    while replies[-1].get("continues"):
        replies.append(v.recv())
    check(len(replies) == 3 and [len(r["parameters"]["rows"]) for r in replies] == [256, 256, n - 512],
          f"rows per reply: {[len(r['parameters'].get('rows', [])) for r in replies]}")
    check([r.get("continues", False) for r in replies] == [True, True, False], "continues on all but the last")
    rows = []
    for r in replies:
        cols = r["parameters"]["columns"]
        check(cols[:3] == ["id", "service", "peer"] and "pid" in cols and "tcp" in cols, f"columns: {cols}")
        for row in r["parameters"]["rows"]:
            check(len(row) == len(cols), f"a row of {len(row)} values for {len(cols)} columns")
            rows.append({k: val for k, val in zip(cols, row) if val is not None})
    # the same connections; age and idle moved on between the two lists
    moving = ("age_usec", "idle_usec")
    strip = lambda c: {k: val for k, val in c.items() if k not in moving}
    check([strip(c) for c in rows] == [strip(c) for c in objects], "rows and objects differ")
    check(all(c["age_usec"] >= o["age_usec"] for c, o in zip(rows, objects)), "age went back")
    r = v.recv()
    check(r["parameters"].get("connections_open") == n, f"the call after the rows: {r}")
    # none matched, and tcp_info in a row (an object in a cell)
    v.send(LIST, {"rows": True, "peer": "10.0.0.0/8"}, more=True)
    r = v.recv()
    check(r["parameters"]["rows"] == [] and "continues" not in r, f"no rows: {r}")
    v.send(LIST, {"rows": True, "tcp_info": True, "peer": "127.0.0.1"}, more=True)
    r = v.recv()
    cols = r["parameters"]["columns"]
    tcp = r["parameters"]["rows"][0][cols.index("tcp")]
    check(isinstance(tcp, dict) and tcp["rtt_usec"] >= 0 and tcp["cwnd"] > 0, f"tcp in a row: {tcp}")
    while r.get("continues"):
        r = v.recv()
    v.close()
    for s in echoes:
        s.close()
    check_echo(d)
    d.stop()


def test_list_walks_connections_as_they_are():
    """A list walks each worker's connections a chunk at a time, so tcpd's
    memory for it does not grow with the number of connections. It is not a
    snapshot: a connection that closes before the walk reaches it is not
    listed, one that opens meanwhile is; ids still come in order, once."""
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN)
    port = d.port()
    n = 3000
    echoes = open_many(d, n, batch=200)
    id_of = {c["peer_port"]: c["id"] for c in d.connections()}
    order = sorted(echoes, key=lambda s: id_of[s.getsockname()[1]])
    v = Varlink(d.control)
    v.send(LIST, {}, more=True)
    replies = [v.recv()]
    time.sleep(0.3)  # tcpd fills the socket (about 1,000 replies) and waits for us
    # the last 500 by id: the walk cannot be there yet
    gone = order[-500:]
    gone_ids = {id_of[s.getsockname()[1]] for s in gone}
    for s in gone:
        s.close()
    wait_for(lambda: d.status()["connections_open"] == n - 500, what="500 closed")
    new = [connect(port) for _ in range(50)]
    for s in new:
        echo_roundtrip(s, b"new")
    while replies[-1].get("continues"):
        replies.append(v.recv())
    ids = [r["parameters"]["connection"]["id"] for r in replies]
    check(ids == sorted(set(ids)), "ids ascending, each once")
    check(not gone_ids & set(ids), f"{len(gone_ids & set(ids))} connections listed after they closed")
    now = {c["peer_port"]: c["id"] for c in d.connections()}
    new_ids = {now[s.getsockname()[1]] for s in new}
    check(new_ids <= set(ids), f"{len(new_ids - set(ids))} of 50 new connections missing")
    kept = {id_of[s.getsockname()[1]] for s in order[:-500]}
    check(kept <= set(ids), f"{len(kept - set(ids))} open connections missing")
    check(len(ids) == n - 500 + 50, f"{len(ids)} listed")
    v.close()
    for s in order[:-500] + new:
        s.close()
    d.stop()


def test_kick_rejects_bad_parameters():
    d = Daemon(LISTEN)
    port = d.port()
    victim = connect(port)
    echo_roundtrip(victim, b"hi")
    vid = d.connections()[0]["id"]
    v = Varlink(d.control)
    # (parameters, names the error may give)
    bad = [
        ({"ids": 5}, {"ids"}),
        ({"ids": str(vid)}, {"ids"}),
        ({"ids": {"0": vid}}, {"ids"}),
        ({"ids": [str(vid)]}, {"ids"}),
        ({"ids": [vid, "x"]}, {"ids"}),
        ({"ids": [0]}, {"ids"}),
        ({"ids": [-1]}, {"ids"}),
        ({"ids": [-9223372036854775808]}, {"ids"}),
        ({"ids": [1.5]}, {"ids"}),
        ({"ids": [None]}, {"ids"}),
        ({"ids": [True]}, {"ids"}),
        ({"peer": "not-a-cidr"}, {"peer"}),
        ({"peer": "127.0.0.1/33"}, {"peer"}),
        ({"peer": "::1/129"}, {"peer"}),
        ({"peer": ""}, {"peer"}),
        ({"peer": 2130706433}, {"peer"}),
        ({"peer": ["127.0.0.1"]}, {"peer"}),
        ({"all": "yes"}, {"all"}),
        ({"all": 1}, {"all"}),
        ({"all": [True]}, {"all"}),
        ({"all": True, "ids": [vid]}, {"all", "ids"}),
        ({"all": True, "peer": "127.0.0.0/8"}, {"all", "peer"}),
        ({}, {"ids", "peer", "all"}),
        ({"all": False}, {"ids", "peer", "all"}),
        ({"all": None, "ids": None, "peer": None}, {"ids", "peer", "all"}),
        ({"ids": [vid], "force": True}, {"force"}),
    ]
    for params, names in bad:
        r = v.call(KICK, params)
        check(r.get("error") == INVALID_PARAMETER, f"Kick {params}: expected InvalidParameter, got {r}")
        check(r["parameters"].get("parameter") in names, f"Kick {params}: names {r['parameters']}, not {names}")
    r = v.call(KICK, None)
    check(r.get("error") == INVALID_PARAMETER, f"Kick without parameters: {r}")
    echo_roundtrip(victim, b"nothing was kicked by a bad call")

    # valid edge cases: nothing to kick is not an error
    for params in ({"ids": []}, {"ids": [vid + 1000]}, {"ids": [9223372036854775807]}, {"peer": "10.0.0.0/8"}):
        r = v.call(KICK, params)
        check(r == {"parameters": {"kicked": 0, "ids": []}}, f"Kick {params}: {r}")
    echo_roundtrip(victim, b"still here")
    # a duplicated id kicks once
    r = v.call(KICK, {"ids": [vid, vid]})
    check(r == {"parameters": {"kicked": 1, "ids": [vid]}}, f"Kick duplicate ids: {r}")
    check(reads_eof(victim), "the kicked client was not closed")
    victim.close()
    v.close()
    check_echo(d)
    d.stop()


def test_pipelined_calls_answered_in_order():
    d = Daemon(LISTEN)
    echo = connect(d.port())
    echo_roundtrip(echo, b"one connection to list")
    v = Varlink(d.control)
    kinds = []
    blob = b""
    for i in range(50):
        kind = ("status", "info", "garbage", "list", "unknown")[i % 5]
        kinds.append(kind)
        if kind == "status":
            blob += call_bytes(GET_STATUS)
        elif kind == "info":
            blob += call_bytes(GET_INFO)
        elif kind == "garbage":
            blob += b'{"method": "org.tcpd.Daemon.GetStatus", oops}\0'
        elif kind == "list":
            # goes to the connection loop and back: later calls must wait for it
            blob += call_bytes(LIST, {}, more=True)
        else:
            blob += call_bytes("org.tcpd.Daemon.Nope%d" % i)
    v.send_raw(blob)  # one send(): every call arrives at once
    for i, kind in enumerate(kinds):
        r = v.recv()
        if kind == "status":
            check("error" not in r and "pid" in r["parameters"], f"reply {i}: GetStatus expected, got {r}")
        elif kind == "info":
            check("error" not in r and "interfaces" in r["parameters"], f"reply {i}: GetInfo expected, got {r}")
        elif kind == "garbage":
            check(r.get("error") == INVALID_PARAMETER, f"reply {i}: error expected, got {r}")
        elif kind == "list":
            check("error" not in r and "connection" in r["parameters"] and not r.get("continues"),
                  f"reply {i}: one connection expected, got {r}")
        else:
            check(r.get("error") == METHOD_NOT_FOUND and r["parameters"]["method"] == "org.tcpd.Daemon.Nope%d" % i,
                  f"reply {i}: MethodNotFound for Nope{i} expected, got {r}")
    check(v.no_reply_within(0.3), "more replies than calls")
    v.close()
    echo_roundtrip(echo, b"after the pipeline")
    echo.close()
    d.stop()


def test_malformed_json_keeps_connection():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    garbage = [
        b"",
        b"{",
        b"not json at all",
        b"\x01\x02\x03",
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        b"42",
        b"{}",
        b'{"method": 5}',
        b'{"method": ""}',
        b'{"method": null}',
        b'{"parameters": {}}',
        b'{"method": "org.tcpd.Daemon.GetStatus", "parameters": []}',
        b'{"method": "org.tcpd.Daemon.GetStatus", "parameters": "x"}',
        b'{"method": "org.tcpd.Daemon.GetStatus", "more": "yes"}',
        b'{"method": "org.tcpd.Daemon.GetStatus", "oneway": 1}',
        b'{"method": "org.tcpd.Daemon.GetStatus", "method": "org.tcpd.Daemon.GetStatus"}',
        b'{"method": "org.tcpd.Daemon.GetStatus"} trailing',
        b'{"method": "org.tcpd.Daemon.GetStatus"}{"method": "org.tcpd.Daemon.GetStatus"}',
        b'{"method": "org.tcpd.Daemon.GetStatus", "parameters": {"a": "\\u0000"}}',
        b'{"method": "org.tcpd.Daemon.\\u0000GetStatus"}',
    ]
    for g in garbage:
        v.send_raw(g + b"\0")
        r = v.recv()
        check("error" in r, f"{g!r}: expected an error, got {r}")
        r = v.call(GET_STATUS)
        check("error" not in r and "pid" in r["parameters"], f"after {g!r}: GetStatus failed: {r}")
    # whitespace around a valid call is still a valid call
    v.send_raw(b' \n\t{"method" : "org.tcpd.Daemon.GetStatus" } \n\0')
    r = v.recv()
    check("error" not in r, f"call with whitespace: {r}")
    v.close()
    check_echo(d)
    d.stop()


def test_invalid_utf8_is_an_error():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    bad = [
        b'{"method": "org.tcpd.Daemon.GetStatus", "parameters": {"x\xff": 1}}',
        b'{"method": "org.tcpd.\xc3\x28Daemon.GetStatus"}',
        b'{"method": "org.varlink.service.GetInterfaceDescription", "parameters": {"interface": "\xc0\xaf"}}',
        b'{"method": "org.varlink.service.GetInterfaceDescription", "parameters": {"interface": "\xed\xa0\x80"}}',
        b'{"method": "org.tcpd.Daemon.Kick", "parameters": {"peer": "127.0.0.1\xf8\x88\x80\x80\x80"}}',
        b'{"method": "org.tcpd.Daemon.ListConnections", "more": true, "parameters": {"peer": "\xe2\x82"}}',
    ]
    for b in bad:
        v.send_raw(b + b"\0")
        r = v.recv()
        check(r.get("error") == INVALID_PARAMETER, f"{b!r}: expected InvalidParameter, got {r}")
        r = v.call(GET_STATUS)
        check("error" not in r, f"after {b!r}: {r}")
    # valid non-ASCII is fine and comes back intact in the error
    r = v.call(GET_DESCRIPTION, {"interface": "org.tcpd.Dämon"})
    check(r.get("error") == INTERFACE_NOT_FOUND and r["parameters"]["interface"] == "org.tcpd.Dämon", str(r))
    v.close()
    check_echo(d)
    d.stop()


def test_message_size_limit():
    d = Daemon(LISTEN)
    # the largest message allowed: VARLINK_MAX_MESSAGE bytes with its NUL
    v = Varlink(d.control)
    head = b'{"method":"org.tcpd.Daemon.GetStatus"'
    v.send_raw(head + b" " * (VARLINK_MAX_MESSAGE - 2 - len(head)) + b"}\0")
    r = v.recv()
    check("error" not in r, f"a message of exactly the limit was refused: {r}")
    check("error" not in v.call(GET_STATUS), "connection unusable after a large message")
    # one byte more: an error, then the connection is closed
    v.send_raw(head + b" " * (VARLINK_MAX_MESSAGE - 1 - len(head)) + b"}\0")
    r = v.recv()
    check(r.get("error") == INVALID_PARAMETER, f"a message over the limit: {r}")
    check(reads_eof(v.s), "tcpd kept a client that sent a message over the limit")
    v.close()
    check_echo(d)
    check_status(d)
    d.stop()


def test_mebibyte_without_nul_closes_client():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    try:
        v.send_raw(b"x" * (1 << 20))
    except (BrokenPipeError, ConnectionResetError):
        pass  # tcpd closed before taking it all: the reply is still there to read
    r = v.recv()
    check(r.get("error") == INVALID_PARAMETER, f"1 MiB without NUL: {r}")
    check(reads_eof(v.s), "tcpd did not close a client that sent 1 MiB without a NUL")
    v.close()
    check_echo(d)
    check_status(d)
    d.stop()


def test_deep_nesting():
    d = Daemon(LISTEN)
    # too long for a message: refused before any parsing, and closed
    v = Varlink(d.control)
    try:
        v.send_raw(b"[" * 100000 + b"\0")
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = v.recv()
    check(r.get("error") == INVALID_PARAMETER, f"100000 '[': {r}")
    check(reads_eof(v.s), "client not closed after an oversized message")
    v.close()
    # within the size limit, so the JSON parser sees it: an error, no crash
    v = Varlink(d.control)
    nested = [
        b"[" * 65000,
        b"[" * 32000 + b"]" * 32000,
        b'{"a":' * 10000 + b"1" + b"}" * 10000,
        b'{"method":"org.tcpd.Daemon.GetStatus","parameters":{"x":' + b"[" * 30000 + b"]" * 30000 + b"}}",
        b'{"method":"org.tcpd.Daemon.Kick","parameters":{"ids":' + b"[" * 30000 + b"]" * 30000 + b"}}",
    ]
    for n in nested:
        v.send_raw(n + b"\0")
        r = v.recv()
        check("error" in r, f"nesting {n[:20]!r}...: expected an error, got {r}")
        check("error" not in v.call(GET_STATUS), "connection unusable after deep nesting")
    v.close()
    check_echo(d)
    d.stop()


def test_huge_numbers():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    for num in (b"1e999", b"-1e999", b"99999999999999999999999", b"18446744073709551616", b"9" * 5000):
        v.send_raw(b'{"method":"org.tcpd.Daemon.Kick","parameters":{"ids":[' + num + b"]}}\0")
        r = v.recv()
        check("error" in r, f"ids [{num[:30]!r}]: expected an error, got {r}")
        v.send_raw(b'{"method":"org.tcpd.Daemon.GetStatus","parameters":{"n":' + num + b"}}\0")
        check("error" in v.recv(), f"GetStatus with {num[:30]!r}: expected an error")
    check("error" not in v.call(GET_STATUS), "connection unusable after huge numbers")
    v.close()
    check_echo(d)
    d.stop()


def test_call_sent_one_byte_at_a_time():
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    for b in call_bytes(GET_STATUS):
        v.send_raw(bytes([b]))
        time.sleep(0.001)
    r = v.recv()
    check("error" not in r and "pid" in r["parameters"], f"byte-wise call: {r}")
    check(v.no_reply_within(0.3), "a byte-wise call got more than one reply")
    # two calls, their boundary in the middle of a send
    a, b = call_bytes(GET_INFO), call_bytes(GET_STATUS)
    v.send_raw(a[:-1])
    time.sleep(0.05)
    v.send_raw(a[-1:] + b[:5])
    time.sleep(0.05)
    v.send_raw(b[5:])
    check("interfaces" in v.recv()["parameters"], "first of the split calls")
    check("pid" in v.recv()["parameters"], "second of the split calls")
    v.close()
    check_echo(d)
    d.stop()


def test_oneway_gets_no_reply():
    d = Daemon(LISTEN)
    port = d.port()
    victim = connect(port)
    echo_roundtrip(victim, b"kick me quietly")
    vid = d.connections()[0]["id"]
    v = Varlink(d.control)
    v.send(GET_STATUS, oneway=True)
    v.send("org.tcpd.Daemon.Nope", oneway=True)  # not even an error
    v.send(GET_STATUS, {"bad": 1}, oneway=True)
    v.send(LIST, {}, oneway=True)
    v.send(GET_INFO)
    r = v.recv()
    check("interfaces" in r.get("parameters", {}), f"first reply should be GetInfo's: {r}")
    check(v.no_reply_within(0.3), "a oneway call got a reply")
    # a oneway kick still kicks
    v.send(KICK, {"ids": [vid]}, oneway=True)
    check(reads_eof(victim), "a oneway kick did not close the connection")
    r = v.call(GET_STATUS)
    check("pid" in r.get("parameters", {}) and r["parameters"]["connections_kicked"] == 1, f"after oneway kick: {r}")
    victim.close()
    v.close()
    check_echo(d)
    d.stop()


def test_client_that_never_reads_is_dropped():
    d = Daemon(LISTEN)
    other = Varlink(d.control)
    check("error" not in other.call(GET_STATUS), "second client")
    hog = raw_unix(d.control)
    calls = call_bytes(GET_STATUS) * 20000
    send_failed = False
    try:
        hog.sendall(calls)
    except (BrokenPipeError, ConnectionResetError):
        send_failed = True
    except socket.timeout:
        raise TestFailure("tcpd neither read the calls nor dropped the client")
    start = time.monotonic()
    r = other.call(GET_STATUS)
    check("error" not in r, f"other client: {r}")
    check(time.monotonic() - start < 2, "the other client was not answered promptly")
    # Now read: a few replies at most, then EOF or a reset.
    one_reply = len(encode({"parameters": r["parameters"]}))
    got = 0
    deadline = time.monotonic() + TIMEOUT
    closed = False
    try:
        while time.monotonic() < deadline:
            data = hog.recv(1 << 16)
            if not data:
                closed = True
                break
            got += len(data)
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        pass
    check(closed, f"the client that did not read was not dropped (read {got} bytes, send failed: {send_failed})")
    check(got < 20000 * one_reply // 2, f"{got} bytes of replies: it was not dropped early")
    wait_for(lambda: "does not read its replies" in d.stderr(), what="a log line about the dropped client")
    hog.close()
    check("error" not in other.call(GET_STATUS), "other client after the drop")
    other.close()
    check_echo(d)
    d.stop()


def test_half_closed_client_gets_all_replies():
    """A client may send its calls and shut down its writing side (as
    `socat` does at the end of its input): every reply is still owed."""
    d = Daemon(LISTEN)
    v = Varlink(d.control)
    n = 800  # more replies than a socket buffer holds, fewer than the unread limit
    v.send_raw(call_bytes(GET_STATUS) * n)
    v.s.shutdown(socket.SHUT_WR)
    time.sleep(0.3)  # a slow reader: tcpd sees the EOF while replies still wait
    got = 0
    try:
        while got < n:
            v.recv()
            got += 1
    except (TestFailure, ConnectionResetError):
        pass
    # (a regression: tcpd once freed the client at EOF, dropping unwritten replies)
    check(got == n, f"{got} replies of {n} after the client shut down its writing side")
    check(reads_eof(v.s), "tcpd kept a half-closed client after answering it")
    v.close()
    # a single call followed by a half-close, the common case, is answered
    v = Varlink(d.control)
    v.send(GET_STATUS)
    v.s.shutdown(socket.SHUT_WR)
    check("pid" in v.recv()["parameters"], "one call and a half-close")
    check(reads_eof(v.s), "not closed after the half-close")
    v.close()
    check_echo(d)
    d.stop()


def test_pipelined_past_the_output_cap():
    """300 calls in one write, whose replies (3.6 KB each) are far more than
    the 256 KiB tcpd buffers for a client: every call is answered, whether
    the client reads at once or late, and with or without a half-close."""
    d = Daemon(LISTEN)
    n = 300
    blob = call_bytes(GET_DESCRIPTION, {"interface": "org.tcpd.Daemon"}) * n
    for half_close in (False, True):
        for late in (False, True):
            v = Varlink(d.control)
            v.send_raw(blob)
            if half_close:
                v.s.shutdown(socket.SHUT_WR)
            if late:
                time.sleep(0.5)  # tcpd fills its output and stops
            got = 0
            v.s.settimeout(5)
            try:
                while got < n:
                    r = v.recv()
                    check("description" in r["parameters"], f"reply {got}: {r}")
                    got += 1
            except (TestFailure, ConnectionResetError, socket.timeout):
                pass
            what = f"half-close {half_close}, reading late {late}"
            check(got == n, f"{got} replies of {n} ({what})")
            if half_close:
                check(reads_eof(v.s), f"closed once every call was answered ({what})")
            else:
                check(v.no_reply_within(0.3), f"more replies than calls ({what})")
            v.close()
    check_echo(d)
    d.stop()


def test_too_many_control_clients():
    d = Daemon(LISTEN)
    port = d.port()
    clients = []
    for _ in range(300):
        clients.append(raw_unix_retry(d.control))
    # Beyond the limit of 256 a client is accepted and closed at once.
    for i, s in enumerate(clients[256:]):
        check(reads_eof(s), f"client {256 + i} beyond the limit was not closed")
    for i, s in enumerate(clients[:256]):
        s.sendall(call_bytes(GET_STATUS))
        data = b""
        while not data.endswith(b"\0"):
            chunk = s.recv(65536)
            check(chunk, f"client {i} within the limit was closed")
            data += chunk
        check(b'"pid"' in data, f"client {i}: {data[:200]!r}")
    s = connect(port)
    echo_roundtrip(s, b"echo with a full control socket")
    s.close()
    for s in clients:
        s.close()

    def new_client_answered():
        try:
            v = Varlink(d.control, timeout=1)
            r = v.call(GET_STATUS)
            v.close()
            return "pid" in r.get("parameters", {})
        except (TestFailure, OSError):
            return False
    wait_for(new_client_answered, what="a new control client answered after the others left")
    check(d.status()["state"] == "running", "tcpctl status")
    check_echo(d)
    d.stop()


def test_disconnect_while_list_in_flight():
    """Clients that leave with calls queued or a list half written must not
    leave anything behind (the sanitizer build checks for leaks at stop)."""
    d = Daemon(LISTEN)
    port = d.port()
    echoes = [connect(port) for _ in range(50)]
    for s in echoes:
        echo_roundtrip(s, b"x")
    for i in range(30):
        s = raw_unix(d.control)
        s.sendall((call_bytes(LIST, {}, more=True) + call_bytes(GET_STATUS)) * 20 +
                  call_bytes(KICK, {"ids": [999999]}))
        if i % 2:
            recv_exact(s, 1)  # leave in the middle of the replies, else before any
        s.close()
    check_status(d)
    check(d.status()["connections_open"] == 50, "echo connections disturbed")
    for s in echoes:
        echo_roundtrip(s, b"y")
        s.close()
    d.stop()


if __name__ == "__main__":
    main([test_get_info, test_list_as_rows, test_get_interface_description, test_unknown_method_and_interface,
          test_unknown_parameter_named, test_list_connections, test_long_list_streamed_to_a_slow_reader,
          test_list_walks_connections_as_they_are,
          test_kick_rejects_bad_parameters,
          test_pipelined_calls_answered_in_order, test_malformed_json_keeps_connection, test_invalid_utf8_is_an_error,
          test_message_size_limit, test_mebibyte_without_nul_closes_client, test_deep_nesting, test_huge_numbers,
          test_call_sent_one_byte_at_a_time, test_oneway_gets_no_reply, test_client_that_never_reads_is_dropped,
          test_half_closed_client_gets_all_replies,
          test_pipelined_past_the_output_cap, test_too_many_control_clients,
          test_disconnect_while_list_in_flight])
