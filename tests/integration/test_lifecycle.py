#!/usr/bin/env python3
"""tcpd's life: settings errors, --check-config, sd_notify, SIGHUP reloads
that keep connections, limits, the control socket file, and SIGTERM."""

import os
import re
import select
import signal
import socket
import subprocess
import time

from tcpdtest import TCPD, TIMEOUT, Daemon, check, connect, echo_roundtrip, fill_until_blocked, free_port, main, open_many, \
    read_to_eof, reads_eof, run_config_check, wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"


def test_bad_settings_at_start_exit_1_with_file_and_line():
    d = Daemon("[tcpd]\nbacklog = 128\nidle_timeout = soon\n" + LISTEN, wait_ready=False)
    check(d.wait_exit() == 1, "bad settings exit 1")
    err = d.stderr()
    line = open(d.config).read().splitlines().index("idle_timeout = soon") + 1
    check(f"{d.config}:{line}:" in err and "idle_timeout" in err and "'soon'" in err, err)
    d.check_clean()


def test_check_config():
    p, path = run_config_check("[tcpd]\nmax_connections = 10\n[echo]\nlisten = 127.0.0.1:7\n")
    check(p.returncode == 0, p.stderr)
    check("max_connections = 10" in p.stdout and "listen = 127.0.0.1:7" in p.stdout, p.stdout)
    p, path = run_config_check("[tcpd]\nwhat = ever\n[nonsense]\nx = 1\n")
    check(p.returncode == 1, "invalid settings exit 1")
    check(f"{path}:2: unknown key 'what'" in p.stderr and f"{path}:4: unknown section [nonsense]" in p.stderr,
          p.stderr)
    p = subprocess.run([TCPD, "--check-config", "-c", "/nonexistent/tcpd.ini"], capture_output=True, text=True,
                       timeout=10)
    check(p.returncode == 1 and "/nonexistent/tcpd.ini" in p.stderr, "a missing -c file is an error")


def test_help_version_usage():
    p = subprocess.run([TCPD, "--help"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and "--check-config" in p.stdout, "--help")
    p = subprocess.run([TCPD, "--version"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and p.stdout.startswith("tcpd "), "--version")
    p = subprocess.run([TCPD, "--frobnicate"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2, "unknown option exits 2")


def test_sd_notify_lifecycle():
    d = Daemon(LISTEN)
    # STATUS= follows READY=1 in a datagram of its own: wait for it too
    wait_for(lambda: any(line.startswith("STATUS=") for m in d.poll_notify() for line in m.split("\n")),
             what="sd_notify STATUS=")
    msgs = "\n".join(d.poll_notify())
    check("READY=1" in msgs and "STATUS=" in msgs, msgs)
    n = len(d.notify_msgs)
    d.signal(signal.SIGHUP)
    d.wait_notify("RELOADING=1", after=n)
    d.wait_notify("READY=1", after=n + 1)
    check(any(line.startswith("MONOTONIC_USEC=") for m in d.notify_msgs[n:] for line in m.split("\n")),
          "RELOADING carries MONOTONIC_USEC")
    d.signal(signal.SIGTERM)
    d.wait_exit()
    d.poll_notify()
    check(any("STOPPING=1" in m for m in d.notify_msgs), "STOPPING=1 sent")
    check(d.returncode == 0, f"exit {d.returncode}")
    d.check_clean()


def test_watchdog_pings():
    d = Daemon(LISTEN, env={"WATCHDOG_USEC": "200000"})
    d.wait_notify("WATCHDOG=1", timeout=3)
    n = len(d.notify_msgs)
    d.wait_notify("WATCHDOG=1", timeout=3, after=n)  # and keeps pinging
    d.stop()


def test_sighup_applies_changes_and_keeps_connections():
    d = Daemon(LISTEN)
    port = d.port()
    s = connect(port)
    echo_roundtrip(s, b"before reload")
    port2 = free_port()
    with open(d.config, "a") as f:
        f.write(f"listen = 127.0.0.1:{port2}\n[tcpd]\nmax_connections = 50\n")
    # keep the first listener: the same spec stays bound
    n = len(d.poll_notify())
    d.signal(signal.SIGHUP)
    d.wait_notify("READY=1", after=n + 1)
    st = d.status()
    check(st["max_connections"] == 50, f"max_connections applied: {st['max_connections']}")
    ports = sorted(int(li["address"].rsplit(":", 1)[1]) for li in st["listeners"])
    check(ports == sorted([port, port2]), f"listeners after reload: {ports}")
    echo_roundtrip(s, b"after reload, same connection")
    s2 = connect(port2)
    echo_roundtrip(s2, b"new listener")
    # remove the new listener again: its connection stays
    with open(d.config, "w") as f:
        f.write(f"[tcpd]\ncontrol_socket = {d.control}\n" + LISTEN)
    n = len(d.poll_notify())
    d.signal(signal.SIGHUP)
    d.wait_notify("READY=1", after=n + 1)
    check(len(d.status()["listeners"]) == 1, "listener removed")
    echo_roundtrip(s2, b"connection outlives its listener")
    try:
        connect(port2, timeout=2).close()
        check(False, "the removed listener still accepts")
    except ConnectionRefusedError:
        pass
    s.close()
    s2.close()
    d.stop()


def test_broken_file_on_sighup_keeps_serving():
    d = Daemon(LISTEN)
    s = connect(d.port())
    with open(d.config, "a") as f:
        f.write("[tcpd]\nlog_level = chatty\n")
    n = len(d.poll_notify())
    d.signal(signal.SIGHUP)
    d.wait_notify("READY=1", after=n + 1)
    err = d.stderr()
    check(f"{d.config}:" in err and "log_level" in err and "'chatty'" in err, err)
    check("previous settings stay" in err, err)
    echo_roundtrip(s, b"still serving")
    check(d.proc.poll() is None, "daemon alive")
    s.close()
    d.stop()


def test_sigterm_drains_and_exits_0():
    d = Daemon(LISTEN)
    port = d.port()
    clients = [connect(port) for _ in range(20)]
    for c in clients:
        echo_roundtrip(c, b"y" * 1000)
    d.signal(signal.SIGTERM)
    for c in clients:
        check(reads_eof(c), "each client reads EOF at shutdown")
    check(d.wait_exit() == 0, f"exit {d.returncode}")
    check("stopping" in d.stderr(), "says it is stopping")
    check(not os.path.exists(d.control), "control socket removed on exit")
    d.check_clean()


def test_sigterm_delivers_every_byte_already_read():
    """At SIGTERM tcpd stops reading, but what it has read goes back in full,
    then a FIN (not a reset)."""
    d = Daemon("[tcpd]\nlog_connections = yes\n" + LISTEN)
    s = connect(d.port())
    fill_until_blocked(s)
    c = d.connections()[0]
    check(c["bytes_in"] > c["bytes_out"], f"something must be owed: {c}")
    d.signal(signal.SIGTERM)
    got = read_to_eof(s)
    check(d.wait_exit() == 0, f"exit {d.returncode}")
    # what tcpd had read by the time it stopped reading, from its own log
    m = re.search(r"shutdown after (\d+) bytes in, (\d+) out", d.stderr())
    check(m, d.stderr())
    check(got == int(m.group(1)) == int(m.group(2)), f"read {got} bytes back; tcpd: {m.group(0)}")
    d.check_clean()


def test_sigterm_finishes_a_streaming_list():
    """A ListConnections stream in progress at SIGTERM ends properly: a list
    walks the connections as they are (it is not a snapshot), so the ones
    that closed before the walk reached them are not in it, but every reply
    is whole, in id order, and the last one says so."""
    import json
    d = Daemon(LISTEN)
    clients = open_many(d, 1000)
    v = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    v.settimeout(TIMEOUT)
    v.connect(d.control)
    v.sendall(json.dumps({"method": "org.tcpd.Daemon.ListConnections", "more": True}).encode() + b"\0")
    time.sleep(0.3)  # tcpd fills the socket and waits for us to read
    d.signal(signal.SIGTERM)
    for c in clients:  # the connections end at once: tcpd's loop is done
        c.close()
    buf = b""
    replies = []
    while not replies or replies[-1].get("continues"):
        chunk = v.recv(65536)
        check(chunk, f"control connection closed after {len(replies)} of {len(clients)} replies")
        buf += chunk
        *frames, buf = buf.split(b"\0")
        replies += [json.loads(f) for f in frames]
    check(0 < len(replies) <= len(clients), f"{len(replies)} replies for {len(clients)} connections")
    check(all(r.get("continues") for r in replies[:-1]), "only the last reply ends the list")
    ids = [r["parameters"]["connection"]["id"] for r in replies if "connection" in r["parameters"]]
    check(ids == sorted(set(ids)), "ids ascending, each once")
    check(d.wait_exit() == 0, f"exit {d.returncode}")
    v.close()
    d.check_clean()


def test_control_socket_stale_and_live():
    d = Daemon(LISTEN)
    # a second tcpd on the same control socket must refuse to start
    other = Daemon(f"[tcpd]\ncontrol_socket = {d.control}\n" + LISTEN, control=False, wait_ready=False)
    check(other.wait_exit() == 1, "second tcpd exits 1")
    check("another tcpd is running" in other.stderr(), other.stderr())
    echo_roundtrip(connect(d.port()), b"first one unharmed")
    d.proc.kill()  # dies without cleaning up: its socket file stays
    d.proc.wait()
    check(os.path.exists(d.control), "stale socket left behind")
    third = Daemon(f"[tcpd]\ncontrol_socket = {d.control}\n" + LISTEN, control=False)
    check(third.ctl("status", json_out=True, socket_path=d.control)["pid"] == third.proc.pid, "replaced stale")
    third.stop()


def test_idle_timeout_closes_silent_connections():
    d = Daemon("[tcpd]\nidle_timeout = 1s\n" + LISTEN)
    port = d.port()
    idle = connect(port)
    busy = connect(port)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        echo_roundtrip(busy, b"tick")
        time.sleep(0.2)
    check(reads_eof(idle, timeout=1), "idle connection closed")
    echo_roundtrip(busy, b"busy one kept")
    check(d.status()["connections_open"] == 1, "only the busy one is left")
    busy.close()
    d.stop()


def test_max_connections_refuses_beyond_limit():
    d = Daemon("[tcpd]\nmax_connections = 3\n" + LISTEN)
    port = d.port()
    kept = [connect(port) for _ in range(3)]
    for c in kept:
        echo_roundtrip(c, b"in")
    try:
        extra = connect(port)
        check(reads_eof(extra, timeout=5), "the fourth connection is closed at once")
    except ConnectionResetError:
        pass  # refused with a reset, maybe before connect() returned
    st = d.status()
    check(st["connections_refused"] == 1 and st["connections_open"] == 3, str(st))
    check(st["refused"]["max_connections"] == 1, str(st["refused"]))
    kept[0].close()
    wait_for(lambda: d.status()["connections_open"] == 2, what="slot freed")
    again = connect(port)
    echo_roundtrip(again, b"room again")
    for c in kept[1:] + [again]:
        c.close()
    d.stop()


def test_out_of_fds_no_spin_and_recovers():
    """With a tiny open-files limit: accept pauses instead of spinning, the
    control socket too, and both serve again once clients leave."""
    d = Daemon(LISTEN, prefix=["prlimit", "--nofile=64:64", "--"])
    port = d.port()
    clients = []
    for _ in range(80):  # more than fit; the rest wait in the listen queue
        clients.append(connect(port))
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.settimeout(5)
    ctl.connect(d.control)  # queued: tcpd has no fd to accept it with
    time.sleep(0.3)
    before = d.cpu_seconds()
    time.sleep(1.5)
    used = d.cpu_seconds() - before
    check(used < 0.3, f"tcpd used {used:.2f}s of CPU in 1.5s while out of file descriptors")
    check("pausing accept" in d.stderr(), "says that it paused accepting")
    st = d.status()  # a reserve of descriptors keeps the control socket usable
    check(st["connections_open"] < 64, str(st))
    for c in clients[:50]:  # every accepted one and some still queued
        c.close()
    ctl.close()
    st = wait_for(lambda: d.ctl("status", json_out=True, ok=(0, 1)), what="control socket answers again")
    check(isinstance(st, dict) and st["connections_open"] > 0, str(st))
    echo_roundtrip(clients[-1], b"served at last")  # was waiting in the queue
    for c in clients[50:]:
        c.close()
    d.stop()


def test_max_buffered_bounds_what_tcpd_holds():
    d = Daemon("[tcpd]\nmax_buffered = 1K\n" + LISTEN)
    s = connect(d.port())
    s.setblocking(False)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # never read: fill every buffer on the way
        try:
            s.send(b"z" * 65536)
        except BlockingIOError:
            if not select.select([], [s], [], 0.5)[1]:
                break  # stuck for half a second: tcpd stopped reading
    time.sleep(0.2)
    c = d.connections()[0]
    owed = c["bytes_in"] - c["bytes_out"]
    check(c["state"] == "blocked", f"state {c['state']}")
    check(0 < owed <= 1024, f"tcpd holds {owed} bytes for a client that does not read (max_buffered 1K)")
    s.close()
    d.stop()


if __name__ == "__main__":
    main([test_bad_settings_at_start_exit_1_with_file_and_line, test_check_config, test_help_version_usage,
          test_sd_notify_lifecycle, test_watchdog_pings, test_sighup_applies_changes_and_keeps_connections,
          test_broken_file_on_sighup_keeps_serving, test_sigterm_drains_and_exits_0,
          test_sigterm_delivers_every_byte_already_read, test_sigterm_finishes_a_streaming_list,
          test_control_socket_stale_and_live, test_idle_timeout_closes_silent_connections,
          test_max_connections_refuses_beyond_limit, test_out_of_fds_no_spin_and_recovers,
          test_max_buffered_bounds_what_tcpd_holds])
