#!/usr/bin/env python3
"""tcpd started with sockets from systemd, through systemd-socket-activate:
named sockets pick the service or the control socket, the settings' own
listen addresses are then left alone, and a wrong name is a clear error.

systemd-socket-activate (systemd 252) binds the sockets, then waits for the
first connection on any of them before it execs tcpd in its own place (same
PID) with the listening fds; without that connection tcpd never starts. So
every test here makes one, as a client would, before it waits for READY=1."""

import json
import os
import shutil
import socket
import tempfile
import time

import tcpdtest

from tcpdtest import (TIMEOUT, Daemon, check, connect, echo_roundtrip, free_port, main, reads_eof, recv_exact,
                      wait_for)


def try_connect(port, host="127.0.0.1"):
    try:
        return connect(port, host=host)
    except ConnectionRefusedError:
        return None


def try_connect_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(path)
        return s
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        return None


def refused(port, host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect((host, port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def varlink_call(s, method, parameters=None, **flags):
    msg = dict(method=method, **flags)
    if parameters is not None:
        msg["parameters"] = parameters
    s.sendall(json.dumps(msg).encode() + b"\0")
    data = b""
    while not data.endswith(b"\0"):
        chunk = s.recv(65536)
        check(chunk, "control socket closed before the reply")
        data += chunk
    return json.loads(data[:-1])


class ActivatedDaemon(Daemon):
    """tcpd under systemd-socket-activate: the echo sockets at `echo` (host:port
    strings) and a control socket in a directory of this test's own, named
    by `names` in that order (None: no names at all). `trigger` is where the
    first connection goes ("control", "echo", or None for none yet)."""

    def __init__(self, ini="", echo=None, names=("echo", "control"), trigger="control", wait_ready=True):
        self.first = None
        self.sock_dir = tempfile.mkdtemp(prefix="tcpd-test-sa-")
        os.chmod(self.sock_dir, 0o755)
        self.echo_port = free_port()
        self.echo = list(echo) if echo is not None else [f"127.0.0.1:{self.echo_port}"]
        self.activated_control = os.path.join(self.sock_dir, "control")
        super().__init__(ini, activate=self.echo + [self.activated_control],
                         fdnames=list(names) if names else None, wait_ready=False)
        # the settings name their own control socket; the one from systemd wins
        self.configured_control = self.control
        self.control = self.activated_control
        # The first connection is what makes systemd-socket-activate start tcpd.
        if trigger == "echo":
            self.first = wait_for(lambda: try_connect(self.echo_port), what="systemd-socket-activate")
        elif trigger == "control":
            self.first = wait_for(lambda: try_connect_unix(self.activated_control), what="systemd-socket-activate")
        if wait_ready:
            self.wait_notify("READY=1")

    def cleanup(self):
        if self.first:
            self.first.close()
        super().cleanup()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


def test_activated_echo_and_status():
    other = free_port()
    d = ActivatedDaemon(f"[echo]\nlisten = 127.0.0.1:{other}\n")
    # the connection that started tcpd waited in the backlog and is served
    r = varlink_call(d.first, "org.tcpd.Daemon.GetStatus")
    check(r["parameters"]["pid"] == d.proc.pid, "systemd-socket-activate should exec tcpd in its own place")
    s = connect(d.echo_port)
    echo_roundtrip(s, b"activated echo\n")
    st = d.status()
    check(st["listeners"] == [{"service": "echo", "address": f"127.0.0.1:{d.echo_port}", "activated": True}],
          f"listeners: {st['listeners']}")
    check(refused(other), f"the settings' own listen address 127.0.0.1:{other} is bound")
    # not silently: a warning with file and line, and tcpctl status says so
    check(f"tcpd.ini:4: [echo] listen = 127.0.0.1:{other} is not bound" in d.stderr(), d.stderr())
    check(st["listen_ignored"] == f"[echo] listen = 127.0.0.1:{other}", f"{st['listen_ignored']}")
    human = d.ctl("status").stdout
    check(f"not bound:   [echo] listen = 127.0.0.1:{other}" in human, human)
    d.ctl("reload")
    check(d.stderr().count(f"listen = 127.0.0.1:{other} is not bound") == 2, "and again at a reload")
    check(not os.path.exists(d.configured_control), "the configured control socket was created as well")
    out = d.ctl("status").stdout
    check(f"127.0.0.1:{d.echo_port}" in out, f"tcpctl status: {out}")
    # a reload must not bind the settings' addresses either
    d.ctl("reload")
    check(refused(other), "a reload bound the settings' listen address")
    check(d.status()["listeners"] == st["listeners"], "a reload changed the activated listeners")
    echo_roundtrip(s, b"after reload")
    s.close()
    d.stop()


def test_activated_control_list_and_kick():
    d = ActivatedDaemon("")
    a = connect(d.echo_port)
    b = connect(d.echo_port)
    echo_roundtrip(a, b"a")
    echo_roundtrip(b, b"b")
    conns = d.connections()
    check(len(conns) == 2, f"list over the activated control socket: {conns}")
    check(all(c["local"] == f"127.0.0.1:{d.echo_port}" for c in conns), str(conns))
    # by port, not by id order: with several workers, two clients that
    # connect at once may get their ids in either order
    id_of = {c["peer_port"]: c["id"] for c in conns}
    out = d.ctl("kick", str(id_of[a.getsockname()[1]])).stdout
    check(reads_eof(a), "the kicked connection was not closed")
    echo_roundtrip(b, b"the other stays")
    check([c["id"] for c in d.connections()] == [id_of[b.getsockname()[1]]], f"after kick: {out}")
    d.ctl("kick", "--all")
    check(reads_eof(b), "kick --all over the activated socket")
    wait_for(lambda: d.status()["connections_open"] == 0, what="no connections")
    a.close()
    b.close()
    d.stop()


def test_varlink_name_is_the_control_socket():
    d = ActivatedDaemon("", names=("echo", "varlink"))
    s = connect(d.echo_port)
    echo_roundtrip(s, b"named varlink")
    check(d.status()["listeners"][0]["activated"], "activated listener")
    conns = d.connections()
    check(len(conns) == 1, f"list over the 'varlink' socket: {conns}")
    d.ctl("kick", str(conns[0]["id"]))
    check(reads_eof(s), "kick over the 'varlink' socket")
    s.close()
    d.stop()


def test_two_activated_echo_sockets():
    p4, p6 = free_port(), free_port(socket.AF_INET6, "::1")
    d = ActivatedDaemon("", echo=[f"127.0.0.1:{p4}", f"[::1]:{p6}"], names=("echo", "echo", "control"))
    st = d.status()
    got = sorted((li["address"], li["activated"]) for li in st["listeners"])
    check(got == sorted([(f"127.0.0.1:{p4}", True), (f"[::1]:{p6}", True)]), f"listeners: {st['listeners']}")
    s4 = connect(p4)
    s6 = connect(p6, host="::1")
    echo_roundtrip(s4, b"v4")
    echo_roundtrip(s6, b"v6")
    check(len(d.connections()) == 2, "both connections listed")
    s4.close()
    s6.close()
    d.stop()


def test_control_only_activated_binds_settings():
    """Only the control socket from systemd: the echo listeners come from
    the settings, as without activation."""
    port = free_port()
    d = ActivatedDaemon(f"[echo]\nlisten = 127.0.0.1:{port}\n", echo=[], names=("control",))
    st = d.status()
    check(st["listeners"] == [{"service": "echo", "address": f"127.0.0.1:{port}", "activated": False}],
          f"listeners: {st['listeners']}")
    s = connect(port)
    echo_roundtrip(s, b"bound from the settings")
    s.close()
    d.stop()


def test_bogus_name_fails():
    for names in (("echo", "bogus"), ("bogus", "control")):
        d = ActivatedDaemon("", names=names, wait_ready=False)
        # systemd-socket-activate has become tcpd, so its exit is tcpd's
        check(d.wait_exit() == 1, f"names {names}: exit {d.returncode}")
        err = d.stderr()
        check("'bogus'" in err and "FileDescriptorName" in err, f"names {names}: stderr does not explain:\n{err}")
        check("Execing" in err, f"systemd-socket-activate did not start tcpd:\n{err}")
        check(not any("READY=1" in m.split("\n") for m in d.poll_notify()), "READY=1 from a tcpd that failed")
        check(any("STATUS=Failed" in m for m in d.notify_msgs), f"no failure status: {d.notify_msgs}")
        check(reads_eof(d.first), "the control connection outlived tcpd")
        d.check_clean()


def test_unnamed_sockets_fail():
    d = ActivatedDaemon("", names=None, wait_ready=False)
    check(d.wait_exit() == 1, f"exit {d.returncode}")
    err = d.stderr()
    check("'unknown'" in err and "FileDescriptorName" in err, f"stderr does not explain:\n{err}")
    d.check_clean()


def test_ready_via_notify_socket():
    d = ActivatedDaemon("", wait_ready=False)
    d.wait_notify("READY=1")
    msgs = d.poll_notify()
    ready = next(i for i, m in enumerate(msgs) if "READY=1" in m.split("\n"))
    check(not any("STOPPING=1" in m for m in msgs[:ready]), f"notify messages: {msgs}")
    # the first connection, made before tcpd ran, is a working control client
    r = varlink_call(d.first, "org.varlink.service.GetInfo")
    check("org.tcpd.Daemon" in r["parameters"]["interfaces"], str(r))
    s = connect(d.echo_port)
    payload = os.urandom(100_000)
    s.sendall(payload)
    check(recv_exact(s, len(payload)) == payload, "echo after READY")
    s.close()
    after = len(d.poll_notify())
    d.stop()
    check(any("STOPPING=1" in m.split("\n") for m in d.poll_notify()[after:]), "no STOPPING=1 at stop")


def test_first_connection_on_echo_socket():
    """The connection that starts tcpd may as well be an echo client: what
    it sent before tcpd ran waits in the kernel, then comes back."""
    d = ActivatedDaemon("", trigger="echo", wait_ready=False)
    d.first.sendall(b"sent before tcpd ran")
    d.wait_notify("READY=1")
    check(recv_exact(d.first, 20) == b"sent before tcpd ran", "echo of the starting connection")
    check(len(d.connections()) == 1, "the starting connection is listed")
    d.stop()


def test_started_at_first_connection():
    """Without --accept, systemd-socket-activate still waits for a first
    connection before it runs tcpd at all."""
    d = ActivatedDaemon("", trigger=None, wait_ready=False)
    wait_for(lambda: f"Listening on 127.0.0.1:{d.echo_port}" in d.stderr(), what="systemd-socket-activate listening")
    time.sleep(0.5)
    check("Execing" not in d.stderr() and not d.poll_notify(), "tcpd ran before any connection")
    d.first = connect(d.echo_port)
    d.wait_notify("READY=1")
    echo_roundtrip(d.first, b"first")
    d.stop()


def test_broken_settings_at_first_start_stay_up():
    """A first start with a typo and nothing kept from before: exiting would
    make every waiting client start tcpd again until the socket fails. tcpd
    stays up instead: READY=1, a STATUS= that names the error, tcpctl
    answering, clients reset and counted; a reload after the fix serves."""
    d = ActivatedDaemon("[tcpd]\nmax_conections = 10\n", trigger="echo")
    check(d.proc.poll() is None, "tcpd is running")
    status = [m for m in d.poll_notify() if "STATUS=" in m]
    check(status and "max_conections" in status[-1] and "refusing clients" in status[-1], f"{status[-1:]}")
    check(tcpdtest.refused(d.echo_port), "a client is reset at once")
    st = d.status()
    check(st["settings"] == "none" and "tcpd.ini:3: unknown key 'max_conections'" in st["settings_error"], f"{st}")
    check(st["refused"]["settings"] >= 2, f"refused by settings: {st['refused']}")  # the first one too
    human = d.ctl("status").stdout
    check("NONE LOADED" in human and "max_conections" in human, human)
    p = d.ctl("reload", ok=(1,))
    check("max_conections" in p.stderr, f"a reload of the same file says why it failed: {p.stderr}")
    d.write_config("[tcpd]\nmax_connections = 10\n")
    d.ctl("reload")
    s = connect(d.echo_port)
    echo_roundtrip(s, b"served after the fix")
    st = d.status()
    check(st["settings"] == "loaded" and st["settings_error"] is None and st["max_connections"] == 10, f"{st}")
    s.close()
    d.stop()


def test_named_socket_follows_its_service():
    """A socket named for a [service NAME]: at a first start on broken
    settings it is kept (clients refused); the fix and a reload give it its
    service; a reload that changes the service's type moves it too."""
    d = ActivatedDaemon("[service git]\ntype = echoo\n", names=("git", "control"), trigger="echo")
    check(d.proc.poll() is None and d.status()["settings"] == "none", "up on no settings")
    check(tcpdtest.refused(d.echo_port), "refused while nothing loaded")
    d.write_config("[service git]\ntype = echo\n")
    d.ctl("reload")
    s = connect(d.echo_port)
    echo_roundtrip(s, b"git is an echo now\n")
    check([li["service"] for li in d.status()["listeners"]] == ["git"], f"{d.status()['listeners']}")
    d.write_config("[service git]\ntype = daytime\n")
    d.ctl("reload")
    t = connect(d.echo_port)
    t.settimeout(5)
    line = t.recv(100)
    check(line.endswith(b"\r\n") and b":" in line, f"git is a daytime service now: {line!r}")
    t.close()
    echo_roundtrip(s, b"the open echo connection stays an echo\n")
    s.close()
    d.stop()


def test_broken_settings_without_systemd_exit():
    # started by hand, there is nothing to keep: exit 1 with the error
    d = Daemon("[tcpd]\nmax_conections = 10\n", wait_ready=False)
    check(d.wait_exit() == 1, f"exit status {d.returncode}")
    check("unknown key 'max_conections'" in d.stderr(), d.stderr())


if __name__ == "__main__":
    main([test_activated_echo_and_status, test_activated_control_list_and_kick,
          test_varlink_name_is_the_control_socket, test_two_activated_echo_sockets,
          test_control_only_activated_binds_settings, test_bogus_name_fails, test_unnamed_sockets_fail,
          test_ready_via_notify_socket, test_first_connection_on_echo_socket, test_started_at_first_connection,
          test_broken_settings_at_first_start_stay_up, test_broken_settings_without_systemd_exit,
          test_named_socket_follows_its_service])
