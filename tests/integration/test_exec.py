#!/usr/bin/env python3
"""type = exec: a program per connection, with the socket as its standard
input and output, as tcpserver, xinetd and systemd's Accept=yes run them;
and the whole of tcpctl working for it (list with the PID, kick, limits,
idle timeout, counters), its stderr in the log, no zombie, no fd leak."""

import os
import socket
import stat
import tempfile
import time

from tcpdtest import (Daemon, check, connect, main, reads_eof, recv_exact, refused, run_config_check,
                      sanitized, wait_for)

SCRIPTS = tempfile.mkdtemp(prefix="tcpd-exec-")


def script(name, text):
    path = os.path.join(SCRIPTS, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + text)
    os.chmod(path, 0o755)
    return path


ENV = script("env.sh", "env\n")
FAIL = script("fail.sh", "echo 'something went wrong' >&2\necho 'and a second line' >&2\nexit 3\n")
# ignores SIGTERM, and so does the sleep it starts (same process group)
STUBBORN = script("stubborn.sh", "trap '' TERM\necho started\nsleep 30\n")
SLEEPER = script("sleeper.sh", "exec sleep 30\n")


def read_to_eof(s, timeout=10):
    """Every byte until the FIN; raises on a reset."""
    s.settimeout(timeout)
    out = b""
    while True:
        d = s.recv(1 << 20)
        if not d:
            return out
        out += d


def exec_service(name, program, extra=""):
    # (and no echo on 7788, so that suites may run side by side)
    return f"[echo]\nlisten =\n[service {name}]\ntype = exec\nlisten = 127.0.0.1:0\nexec = {program}\n{extra}"


def service_port(d, name):
    for li in d.status()["listeners"]:
        if li["service"] == name:
            return int(li["address"].rsplit(":", 1)[1])
    raise AssertionError(f"no {name} listener")


def service_status(d, name):
    for s in d.status()["services"]:
        if s["name"] == name:
            return s
    raise AssertionError(f"no service {name} in status")


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid):
    """The processes whose parent is pid, with their state letter."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            out.append((int(p), fields[0]))
    return out


def test_cat_bytes_and_counters():
    d = Daemon(exec_service("cat", "/bin/cat"))
    s = connect(service_port(d, "cat"))
    payload = bytes(range(256)) * 400  # 100 KiB
    s.sendall(payload)
    check(recv_exact(s, len(payload)) == payload, "cat sends back every byte, in order")
    conns = d.ctl("list", "--service", "cat", json_out=True)
    check(len(conns) == 1, f"{conns}")
    c = conns[0]
    check(c.get("pid", 0) > 0 and pid_alive(c["pid"]), f"list shows the program's PID: {c}")
    check(c["state"] == "running", f"state: {c}")
    check(c["bytes_in"] == len(payload) and c["bytes_out"] == len(payload),
          f"list's bytes are the kernel's count (TCP_INFO): {c}")
    table = d.ctl("list").stdout
    check("PID" in table.splitlines()[0] and str(c["pid"]) in table, f"the table has a PID column:\n{table}")
    s.shutdown(socket.SHUT_WR)
    check(read_to_eof(s) == b"", "cat exits at the client's FIN, and the connection ends with a FIN")
    wait_for(lambda: service_status(d, "cat")["programs"]["exited"] == 1, what="the exit counted")
    st = service_status(d, "cat")
    check(st["programs"] == {"exited": 1, "failed": 0, "killed": 0}, f"{st}")
    check(st["bytes_in"] == len(payload) and st["bytes_out"] == len(payload), f"service totals: {st}")
    check(st["type"] == "exec" and st["connections_open"] == 0, f"{st}")
    text = d.ctl("status").stdout
    check("cat (exec)" in text and "programs 1 exited (0 failed), 0 killed" in text, text)
    d.stop()


def test_environment():
    d = Daemon(exec_service("env", ENV, 'environment = GREETING="hello there" LANG=C.UTF-8 LISTEN_FDS=9\n'
                                        "environment = EXTRA=1\n"),
               env={"LISTEN_FDS": "3", "WATCHDOG_USEC": "1000"})
    port = service_port(d, "env")
    s = connect(port)
    local_port = s.getsockname()[1]
    out = read_to_eof(s).decode()
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    conn_id = int(env.get("TCPD_CONNECTION_ID", "0"))
    want = {
        "PROTO": "TCP", "TCPREMOTEIP": "127.0.0.1", "TCPREMOTEPORT": str(local_port),
        "TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": str(port),
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": str(local_port),
        "TCPD_SERVICE": "env", "GREETING": "hello there", "LANG": "C.UTF-8", "EXTRA": "1",
    }
    for k, v in want.items():
        check(env.get(k) == v, f"{k}={env.get(k)!r}, expected {v!r}; the program saw:\n{out}")
    check(conn_id > 0, f"TCPD_CONNECTION_ID: {env.get('TCPD_CONNECTION_ID')}")
    for k in ("LISTEN_FDS", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        check(k not in env, f"tcpd's own {k} must not reach a program:\n{out}")
    check("PATH" in env, "the rest of tcpd's environment is passed on")
    d.stop()


def test_descriptors_and_process_group():
    """The program has 0, 1 (the socket) and 2 (a pipe) and nothing else,
    a process group of its own, and no blocked or ignored signal."""
    d = Daemon(exec_service("sleeper", SLEEPER))
    s = connect(service_port(d, "sleeper"))
    wait_for(lambda: d.ctl("list", json_out=True) and d.ctl("list", json_out=True)[0].get("pid"),
             what="the program listed")
    pid = d.ctl("list", json_out=True)[0]["pid"]
    fds = sorted(os.listdir(f"/proc/{pid}/fd"))
    check(fds == ["0", "1", "2"], f"the program's descriptors: {fds}")
    targets = [os.readlink(f"/proc/{pid}/fd/{n}") for n in fds]
    check(targets[0].startswith("socket:") and targets[0] == targets[1], f"0 and 1 are the socket: {targets}")
    check(targets[2].startswith("pipe:"), f"2 is the stderr pipe: {targets}")
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    check(int(fields[2]) == pid, f"its own process group: pgrp {fields[2]}, pid {pid}")
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    check(int(status["SigBlk"], 16) == 0, f"nothing blocked: {status['SigBlk']}")
    check(int(status["SigIgn"], 16) == 0, f"nothing ignored (tcpd ignores SIGPIPE): {status['SigIgn']}")
    flags = open(f"/proc/{pid}/fdinfo/0").read()
    check(int(flags.split("flags:")[1].split()[0], 8) & os.O_NONBLOCK == 0, f"a blocking socket, as from inetd: {flags}")
    d.stop()
    check(not pid_alive(pid), "stopping tcpd ends its programs")
    check(reads_eof(s), "and closes their connections")


def test_stderr_and_failed_exit():
    d = Daemon(exec_service("fail", FAIL))
    s = connect(service_port(d, "fail"))
    check(read_to_eof(s) == b"", "nothing of stderr reaches the client")
    wait_for(lambda: service_status(d, "fail")["programs"]["failed"] == 1, what="a failed exit counted")
    err = d.stderr()
    check("something went wrong" in err and "and a second line" in err, f"stderr lines logged:\n{err}")
    line = [ln for ln in err.splitlines() if "something went wrong" in ln][0]
    check("connection " in line and "127.0.0.1:" in line, f"with the connection's id and peer: {line}")
    check("exited with status 3" in err, f"the exit status logged:\n{err}")
    check(service_status(d, "fail")["programs"] == {"exited": 1, "failed": 1, "killed": 0}, "counters")
    d.stop()


def test_kick_sigterm_then_sigkill():
    d = Daemon(exec_service("stubborn", STUBBORN, "kill_timeout = 1s\n"))
    s = connect(service_port(d, "stubborn"))
    check(recv_exact(s, 8) == b"started\n", "the program runs")
    conn = d.ctl("list", json_out=True)[0]
    pid = conn["pid"]
    t0 = time.monotonic()
    d.ctl("kick", str(conn["id"]))
    check(d.ctl("list", json_out=True) == [], "a kicked connection leaves the list at once")
    check(reads_eof(s, timeout=10), "the client sees the end")
    took = time.monotonic() - t0
    check(0.8 < took < 5, f"after kill_timeout (1s) of a program that ignores SIGTERM: {took:.1f}s")
    wait_for(lambda: not pid_alive(pid), what="the program gone")
    wait_for(lambda: service_status(d, "stubborn")["programs"]["killed"] == 1, what="counted as killed")
    check("sent SIGKILL" in d.stderr(), d.stderr())
    st = d.status()
    check(st["connections_kicked"] == 1, f"{st['connections_kicked']}")
    check(not [c for c in children(d.proc.pid) if c[1] == "Z"], "no zombie")
    d.stop()


def test_kick_reset():
    d = Daemon(exec_service("sleeper", SLEEPER))
    s = connect(service_port(d, "sleeper"))
    wait_for(lambda: d.ctl("list", json_out=True), what="listed")
    d.ctl("kick", "--reset", "--service", "sleeper")
    s.settimeout(5)
    try:
        data = s.recv(10)
        check(False, f"expected a reset, got {data!r}")
    except ConnectionResetError:
        pass
    wait_for(lambda: service_status(d, "sleeper")["programs"]["killed"] == 1, what="sleep killed by SIGTERM")
    d.stop()


def test_idle_timeout():
    """idle_timeout applies to what the program and the client do, as the
    kernel sees it: a busy cat stays, a silent one goes."""
    d = Daemon("[tcpd]\nidle_timeout = 1s\n" + exec_service("cat", "/bin/cat"))
    port = service_port(d, "cat")
    busy, quiet = connect(port), connect(port)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        busy.sendall(b"ping\n")
        check(recv_exact(busy, 5) == b"ping\n", "busy cat echoes")
        time.sleep(0.2)
    check(reads_eof(quiet, timeout=5), "the quiet connection was closed by the idle timeout")
    busy.sendall(b"still\n")
    check(recv_exact(busy, 6) == b"still\n", "the busy one is still served after 2.5s")
    st = d.status()
    check(st["connections_open"] == 1, f"one open: {st['connections_open']}")
    busy.close()
    d.stop()


def test_limits_before_spawn():
    d = Daemon(exec_service("sleeper", SLEEPER, "max_connections = 2\n"))
    port = service_port(d, "sleeper")
    held = [connect(port) for _ in range(2)]
    wait_for(lambda: len(d.ctl("list", json_out=True)) == 2, what="two programs")
    check(refused(port), "the third client is refused")
    check(len(children(d.proc.pid)) == 2, f"no program started for it: {children(d.proc.pid)}")
    st = d.status()
    check(st["refused"]["max_connections"] == 1, f"{st['refused']}")
    for s in held:
        s.close()
    d.stop()


def test_spawn_failure_keeps_serving():
    """A program deleted after the settings loaded: the client is refused,
    counted (refused by: spawn) and logged, and tcpd goes on."""
    path = script("gone.sh", "echo hi\n")
    d = Daemon(exec_service("gone", path) + exec_service("cat", "/bin/cat"))
    os.unlink(path)
    check(refused(service_port(d, "gone")), "refused at once")
    st = d.status()
    check(st["refused"]["spawn"] == 1, f"refused by spawn: {st['refused']}")
    check("cannot start" in d.stderr() and "No such file" in d.stderr(), d.stderr())
    s = connect(service_port(d, "cat"))
    s.sendall(b"still here\n")
    check(recv_exact(s, 11) == b"still here\n", "tcpd keeps serving")
    s.close()
    check("spawn 1" in d.ctl("status").stdout, d.ctl("status").stdout)
    d.stop()


def test_no_zombie_no_fd_leak():
    """1,000 connections, each a program that answers and exits: no zombie
    left, tcpd's descriptors back where they were."""
    d = Daemon("[tcpd]\nworkers = 2\n" + exec_service("hello", "/bin/echo hello"))
    port = service_port(d, "hello")
    fds_before = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
    n = 300 if sanitized() else 1000
    for i in range(0, n, 20):
        socks = [connect(port) for _ in range(20)]
        for s in socks:
            check(read_to_eof(s) == b"hello\n", "each program answers")
            s.close()
    wait_for(lambda: service_status(d, "hello")["programs"]["exited"] == n, what=f"{n} exits counted")
    wait_for(lambda: d.status()["connections_open"] == 0, what="all closed")
    wait_for(lambda: len(os.listdir(f"/proc/{d.proc.pid}/fd")) <= fds_before,
             what=f"descriptors back to {fds_before}")
    check(children(d.proc.pid) == [], f"no child left, no zombie: {children(d.proc.pid)}")
    check(service_status(d, "hello")["connections_total"] == n, "every one counted")
    d.stop()


def test_unread_input_costs_nothing():
    """A program that never reads its input cannot make tcpd buffer: tcpd
    does not read a program's socket at all."""
    d = Daemon(exec_service("sleeper", SLEEPER))
    s = connect(service_port(d, "sleeper"))
    rss = lambda: int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    before = rss()
    s.setblocking(False)
    sent = 0
    try:
        while sent < 64 << 20:
            sent += s.send(b"x" * 65536)
    except BlockingIOError:
        pass
    check(sent < 16 << 20, f"the kernel's buffers stop the client: {sent} bytes sent")
    check(rss() - before < 1024, f"tcpd's memory: {before} -> {rss()} KiB")
    d.stop()


def test_stop_ends_programs():
    d = Daemon(exec_service("stubborn", STUBBORN, "kill_timeout = 1s\n") + exec_service("cat", "/bin/cat"))
    a = connect(service_port(d, "stubborn"))
    b = connect(service_port(d, "cat"))
    check(recv_exact(a, 8) == b"started\n", "running")
    wait_for(lambda: len(d.ctl("list", json_out=True)) == 2, what="two programs")
    pids = [c["pid"] for c in d.ctl("list", json_out=True)]
    t0 = time.monotonic()
    d.stop(timeout=15)
    check(time.monotonic() - t0 < 6, "a stop waits for programs no longer than kill_timeout and a little")
    check(reads_eof(a) and reads_eof(b), "their clients see the end")
    for pid in pids:
        check(not pid_alive(pid), f"program {pid} ended")


def test_config_errors():
    noexec = os.path.join(SCRIPTS, "noexec.sh")
    with open(noexec, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(noexec, stat.S_IRUSR | stat.S_IWUSR)
    cases = [
        ("[service a]\ntype = exec\nexec = /nonexistent/prog --x\n", 3, "/nonexistent/prog: No such file"),
        ("[service a]\ntype = exec\nexec = cat\n", 3, "absolute"),
        (f"[service a]\ntype = exec\nexec = {noexec}\n", 3, "not executable"),
        (f"[service a]\ntype = exec\nexec = {SCRIPTS}\n", 3, "not a regular file"),
        ("[service a]\ntype = exec\nlisten = 9999\n", 2, "no exec= line"),
        ("[service a]\ntype = echo\nexec = /bin/cat\n", 3, "only by a service of type = exec"),
        ("[service a]\ntype = exec\nexec = /bin/sh -c 'echo\n", 3, "single quote is not closed"),
        ("[service a]\ntype = exec\nexec = /bin/cat\nkill_timeout = forever\n", 4, "kill_timeout"),
        ("[service a]\ntype = exec\nexec = /bin/cat\nenvironment = NOEQUALS\n", 4, "KEY=VALUE"),
        ("[echo]\nexec = /bin/cat\n", 2, "unknown key 'exec'"),
        ("[exec]\nlisten = 1\n", 2, "unknown section [exec]"),
    ]
    for text, line, want in cases:
        p, path = run_config_check(text)
        check(p.returncode == 1, f"--check-config exits 1 for:\n{text}\n{p.stderr}")
        check(f":{line}:" in p.stderr and want in p.stderr, f"expected line {line} and '{want}' in:\n{p.stderr}")
    # and a good one prints the line back so that it reads the same
    p, _ = run_config_check("[service a]\ntype = exec\nexec = /bin/sh -c \"echo a\\; exit 3\"\n"
                            "environment = A=\"x y\"\n")
    check(p.returncode == 0, p.stderr)
    check('exec = /bin/sh -c "echo a\\; exit 3"' in p.stdout and 'environment = "A=x y"' in p.stdout, p.stdout)


if __name__ == "__main__":
    try:
        main([test_cat_bytes_and_counters, test_environment, test_descriptors_and_process_group,
              test_stderr_and_failed_exit, test_kick_sigterm_then_sigkill, test_kick_reset, test_idle_timeout,
              test_limits_before_spawn, test_spawn_failure_keeps_serving, test_no_zombie_no_fd_leak,
              test_unread_input_costs_nothing, test_stop_ends_programs, test_config_errors])
    finally:
        import shutil
        shutil.rmtree(SCRIPTS, ignore_errors=True)
