#!/usr/bin/env python3
"""tcpctl probe against tcpd and against echo servers of our own that behave
well and badly; tcpctl's output on a terminal (a pty) and off one: colour,
NO_COLOR, width; and the bash completion against a running daemon."""

import errno
import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time

from tcpdtest import TCPCTL, TIMEOUT, Daemon, check, connect, echo_roundtrip, free_port, main

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
COMPLETION = os.path.join(ROOT, "completion", "tcpctl")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
ESC = "\x1b"


def probe(*args, ok=(0,), env=None, timeout=30):
    p = subprocess.run([TCPCTL, *args], capture_output=True, text=True, timeout=timeout,
                       env=env if env is not None else plain_env())
    check(p.returncode in ok, f"tcpctl {' '.join(args)} exited {p.returncode}, expected {ok}:\n{p.stdout}{p.stderr}")
    return p


def plain_env(**extra):
    """The environment of an interactive user, without what the tests set on purpose."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LC_ALL", "LC_CTYPE")}
    env.update(TERM="xterm", LANG="C.UTF-8")
    env.update(extra)
    return env


class EchoServer:
    """A small echo server on loopback that is not tcpd, with ways to misbehave:
    echo (RFC 862), alter (one byte changed), twice (every echo sent twice,
    so the copy is stale when the next message is sent), silent (reads, never
    answers) and close (closes each connection after reading a little)."""

    def __init__(self, mode="echo", host="127.0.0.1", port=0):
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        offset = 0
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                if self.mode == "silent":
                    continue
                if self.mode == "close":
                    break
                if self.mode == "alter" and offset <= 10 < offset + len(data):
                    data = bytearray(data)
                    data[10 - offset] ^= 0x20
                    data = bytes(data)
                offset += len(data)
                c.sendall(data)
                if self.mode == "twice":
                    c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def summary(out):
    m = re.search(r"^(\d+) sent, (\d+) verified, (\d+) lost", out, re.M)
    check(m, f"no summary line in:\n{out}")
    return tuple(int(x) for x in m.groups())


def replies(out):
    return [int(m) for m in re.findall(r"^\S+ from \S+: seq=(\d+) time=\d+\.\d{3} ms$", out, re.M)]


def test_probe_tcpd():
    d = Daemon(LISTEN)
    port = d.port()
    p = probe("probe", "-c", "3", "-i", "100ms", f"127.0.0.1:{port}")
    check(p.stdout.startswith(f"PROBE 127.0.0.1:{port}: 64B messages, connected in "), p.stdout)
    check(replies(p.stdout) == [1, 2, 3], f"three replies in order:\n{p.stdout}")
    check(f"64B from 127.0.0.1:{port}: seq=1 " in p.stdout, p.stdout)
    check(f"--- 127.0.0.1:{port} probe statistics ---" in p.stdout, p.stdout)
    check(summary(p.stdout) == (3, 3, 0), p.stdout)
    check(re.search(r"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$", p.stdout, re.M), p.stdout)
    check(p.stderr == "", p.stderr)
    # probe needs no control socket: tcpd saw an ordinary client
    st = d.status()
    check(st["connections_total"] == 1 and st["bytes_in"] == 3 * 64 and st["bytes_out"] == 3 * 64, str(st))
    # ":PORT" is the default host
    p = probe("probe", "-c", "1", f":{port}")
    check(replies(p.stdout) == [1] and f"(127.0.0.1:{port})" in p.stdout, p.stdout)
    d.stop()


def test_count_size_interval():
    d = Daemon(LISTEN)
    port = d.port()
    start = time.monotonic()
    p = probe("probe", "--count=4", "--interval=300ms", f"127.0.0.1:{port}")
    took = time.monotonic() - start
    check(replies(p.stdout) == [1, 2, 3, 4], p.stdout)
    check(0.85 < took < 5, f"4 echoes 300 ms apart took {took:.2f}s")
    p = probe("probe", "-c", "2", "-i", "0", "-s", "1M", f"127.0.0.1:{port}")
    check("1.0M messages" in p.stdout and replies(p.stdout) == [1, 2], p.stdout)
    check(p.stdout.count("1.0M from") == 2, p.stdout)
    p = probe("probe", "-c", "1", "-s", "16", f"127.0.0.1:{port}")
    check(replies(p.stdout) == [1] and "16B messages" in p.stdout, p.stdout)
    check(d.status()["bytes_in"] == 4 * 64 + 2 * 1024 * 1024 + 16, "every byte went to tcpd")
    # options may follow the target, as with ping
    p = probe("probe", f"127.0.0.1:{port}", "-c", "2", "-i", "0", "-t", "2s")
    check(replies(p.stdout) == [1, 2], p.stdout)
    d.stop()


def test_ipv6():
    d = Daemon("[echo]\nlisten = [::1]:0\n")
    port = d.port("ipv6")
    p = probe("probe", "-c", "2", "-i", "0", f"[::1]:{port}")
    check(p.stdout.startswith(f"PROBE [::1]:{port}:") and replies(p.stdout) == [1, 2], p.stdout)
    check(f"64B from [::1]:{port}: seq=2" in p.stdout, p.stdout)
    d.stop()
    # a bare IPv6 address takes the default port: only when 7788 is free on ::1
    try:
        srv = EchoServer(host="::1", port=7788)
    except OSError:
        print("# [::1]:7788 is taken: bare '::1' not tried")
        return
    p = probe("probe", "-c", "1", "::1")
    srv.stop()
    check(p.stdout.startswith("PROBE ::1 ([::1]:7788):") and replies(p.stdout) == [1], p.stdout)


def test_host_name():
    d = Daemon(LISTEN)
    port = d.port()
    # localhost is in /etc/hosts: no DNS server is asked
    p = probe("probe", "-c", "2", "-i", "0", f"localhost:{port}")
    check(p.stdout.startswith(f"PROBE localhost:{port} (127.0.0.1:{port}):"), p.stdout)
    check(f"from 127.0.0.1:{port}: seq=2" in p.stdout, "the address is printed as a number")
    check(f"--- localhost:{port} probe statistics ---" in p.stdout, p.stdout)
    d.stop()


def test_other_echo_server():
    srv = EchoServer("echo")
    p = probe("probe", "-c", "3", "-i", "0", "-s", "100K", f"127.0.0.1:{srv.port}")
    check(replies(p.stdout) == [1, 2, 3] and summary(p.stdout) == (3, 3, 0), p.stdout)
    check("100.0K from" in p.stdout, p.stdout)
    srv.stop()


def test_altered_bytes():
    srv = EchoServer("alter")
    p = probe("probe", "-c", "2", "-i", "0", f"127.0.0.1:{srv.port}", ok=(1,))
    check("seq=1: echo differs from what was sent at byte 10 of 64" in p.stdout, p.stdout)
    check("seq=2: echo differs from what was sent at byte 10 of 64" in p.stdout,
          "a new connection for seq=2, altered again")
    check(summary(p.stdout) == (2, 0, 2) and "2 lost (2 differed)" in p.stdout, p.stdout)
    srv.stop()


def test_stale_echo_named():
    srv = EchoServer("twice")
    p = probe("probe", "-c", "3", "-i", "0", f"127.0.0.1:{srv.port}", ok=(1,))
    check(replies(p.stdout) == [1, 3], f"seq=1 fine, seq=2 gets seq=1's copy, seq=3 on a new connection:\n{p.stdout}")
    check("seq=2: echo differs from what was sent at byte 4 of 64: it is the echo of seq=1" in p.stdout, p.stdout)
    check(summary(p.stdout) == (3, 2, 1), p.stdout)
    srv.stop()


def test_closed_port():
    # as ping to a host that does not answer: every try counts, and the
    # summary says 100% loss
    port = free_port()
    p = probe("probe", "-c", "2", "-i", "0.1", f"127.0.0.1:{port}", ok=(1,))
    check(p.stderr.strip() == f"tcpctl: cannot connect to 127.0.0.1:{port}: Connection refused", p.stderr)
    check(f"seq=2: cannot connect to 127.0.0.1:{port}" in p.stdout, p.stdout)
    check(summary(p.stdout) == (2, 0, 2) and "100% loss" in p.stdout, p.stdout)
    p = probe("probe", "-c", "1", f"127.0.0.1:{port}", ok=(1,))
    check(summary(p.stdout) == (1, 0, 1) and "100% loss" in p.stdout, p.stdout)


def test_ping_options():
    d = Daemon(LISTEN)
    target = f"127.0.0.1:{d.port()}"
    # fractions of a second, as ping takes them
    start = time.monotonic()
    p = probe("probe", "-c", "3", "-i", "0.2", target)
    took = time.monotonic() - start
    check(summary(p.stdout) == (3, 3, 0) and 0.35 < took < 3, f"{took:.2f}s\n{p.stdout}")
    p = probe("probe", "-c", "2", "-i", "0.1s", "-W", "1.5s", target)
    check(summary(p.stdout) == (2, 2, 0), p.stdout)
    # -q: the summary only
    p = probe("probe", "-q", "-c", "3", "-i", "0.05", target)
    check("seq=" not in p.stdout and summary(p.stdout) == (3, 3, 0), p.stdout)
    # -D: each echo line starts with the time
    p = probe("probe", "-D", "-c", "2", "-i", "0.05", target)
    stamped = [line for line in p.stdout.splitlines() if "seq=" in line]
    now = time.time()
    check(len(stamped) == 2 and all(re.match(r"^\[\d+\.\d{6}\] ", line) for line in stamped), p.stdout)
    check(all(abs(float(line[1:line.index("]")]) - now) < 30 for line in stamped), p.stdout)
    # -w: the run ends at the deadline however many were asked for (none: as many as fit)
    start = time.monotonic()
    p = probe("probe", "-w", "1", "-i", "0.2", target)
    took = time.monotonic() - start
    sent = summary(p.stdout)[0]
    check(0.8 < took < 3 and 4 <= sent <= 6, f"{sent} sent in {took:.2f}s\n{p.stdout}")
    start = time.monotonic()
    p = probe("probe", "-w", "0.5", "-c", "100", "-i", "0.2", target)
    check(time.monotonic() - start < 2 and summary(p.stdout)[0] <= 4, p.stdout)
    d.stop()


def test_server_closes():
    srv = EchoServer("close")
    p = probe("probe", "-c", "1", f"127.0.0.1:{srv.port}", ok=(1,))
    check(f"seq=1: 127.0.0.1:{srv.port} closed the connection after 0 of 64 bytes" in p.stdout or
          "Connection reset by peer" in p.stdout, p.stdout)
    check(summary(p.stdout) == (1, 0, 1), p.stdout)
    srv.stop()


def test_timeout():
    srv = EchoServer("silent")
    start = time.monotonic()
    p = probe("probe", "-c", "2", "-i", "0", "-t", "300ms", f"127.0.0.1:{srv.port}", ok=(1,))
    took = time.monotonic() - start
    check(p.stdout.count("no echo within 300ms (0 of 64 bytes came back)") == 2, p.stdout)
    check(summary(p.stdout) == (2, 0, 2) and "100% loss" in p.stdout, p.stdout)
    check("rtt min" not in p.stdout, "no round-trip times without a verified echo")
    check(0.5 < took < 5, f"two 300 ms timeouts took {took:.2f}s")
    srv.stop()


def test_sigint_prints_summary():
    d = Daemon(LISTEN)
    port = d.port()
    proc = subprocess.Popen([TCPCTL, "probe", "-c", "0", "-i", "50ms", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=plain_env())
    lines = []
    deadline = time.monotonic() + TIMEOUT
    while len(lines) < 4 and time.monotonic() < deadline:  # the PROBE line and three replies
        lines.append(proc.stdout.readline())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT)
    out = "".join(lines) + out
    check(proc.returncode == 0, f"exit {proc.returncode} after SIGINT with every echo intact: {err}")
    sent, verified, lost = summary(out)
    check(sent >= 3 and sent == verified and lost == 0, out)
    check(replies(out) == list(range(1, sent + 1)), out)
    d.stop()


def test_json():
    d = Daemon(LISTEN)
    port = d.port()
    p = probe("--json", "probe", "-c", "2", "-i", "0", f"localhost:{port}")
    objs = [json.loads(line) for line in p.stdout.splitlines()]
    check([o["type"] for o in objs] == ["connect", "echo", "echo", "summary"], p.stdout)
    check(objs[0]["address"] == f"127.0.0.1:{port}" and objs[0]["target"] == f"localhost:{port}", str(objs[0]))
    check([o["seq"] for o in objs[1:3]] == [1, 2] and all(o["result"] == "ok" and o["rtt_usec"] >= 0
                                                           for o in objs[1:3]), str(objs))
    s = objs[3]
    check(s["sent"] == 2 and s["verified"] == 2 and s["lost"] == 0 and s["mismatched"] == 0, str(s))
    check(s["rtt_min_usec"] <= s["rtt_avg_usec"] <= s["rtt_max_usec"], str(s))
    d.stop()
    srv = EchoServer("silent")
    p = probe("--json", "probe", "-c", "1", "-t", "100ms", f"127.0.0.1:{srv.port}", ok=(1,))
    objs = [json.loads(line) for line in p.stdout.splitlines()]
    check(objs[1]["result"] == "timeout" and "no echo within" in objs[1]["message"], str(objs))
    check(objs[2]["lost"] == 1 and "rtt_min_usec" not in objs[2], str(objs))
    srv.stop()


def test_usage_errors():
    for args in (["-c", "x"], ["-c", "-1"], ["-s", "15"], ["-s", "17M"], ["-s", "big"], ["-t", "0"],
                 ["-t", "2d"], ["-W", "0"], ["-w", "0"], ["-i", "soon"], ["-i", "1.5.5"], ["a", "b"], ["[::1"], ["[::1]x"], ["host:0"], ["host:65536"],
                 ["host:"], ["--bogus"]):
        p = probe("probe", *args, ok=(2,))
        check("Try 'tcpctl --help'" in p.stderr and p.stdout == "", f"probe {args}: {p.stderr}")
    p = probe("--help")
    for opt in ("probe", "--count", "--interval", "--size", "--timeout", "--deadline", "--quiet", "--timestamp"):
        check(opt in p.stdout, f"--help lists {opt}")


# ---- output on a terminal ----

def run_pty(args, env, cols=0, timeout=TIMEOUT):
    """Runs tcpctl with a pty as its terminal (stdin, stdout and stderr).
    Returns (exit status, everything it wrote, with the pty's CRLF as LF)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(TCPCTL, [TCPCTL, *args], env)
        finally:
            os._exit(127)
    if cols:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.2)[0]:
            if os.waitpid(pid, os.WNOHANG)[0]:
                pid = 0
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the child has closed its side
                raise
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if pid else 0
    return status, out.decode(errors="replace").replace("\r\n", "\n")


def test_colour_only_on_a_terminal():
    d = Daemon(LISTEN)
    s = connect(d.port())
    echo_roundtrip(s, b"hello")
    for cmd in (["status"], ["list"]):
        p = probe("-s", d.control, *cmd)
        check(ESC not in p.stdout, f"escape codes into a pipe from {cmd}: {p.stdout!r}")
        status, out = run_pty(["-s", d.control, *cmd], plain_env())
        check(status == 0 and ESC + "[" in out, f"no colour on a terminal from {cmd}: {out!r}")
        for env in (plain_env(NO_COLOR="1"), plain_env(TERM="dumb"),
                    {k: v for k, v in plain_env().items() if k != "TERM"}):
            status, out = run_pty(["-s", d.control, *cmd], env)
            check(status == 0 and ESC not in out, f"colour from {cmd} with {env.get('NO_COLOR')}, "
                  f"TERM={env.get('TERM')}: {out!r}")
    # NO_COLOR set but empty means nothing (no-color.org)
    status, out = run_pty(["-s", d.control, "status"], plain_env(NO_COLOR=""))
    check(ESC in out, "an empty NO_COLOR does not turn colour off")
    status, out = run_pty(["-s", d.control, "list"], plain_env())
    check(out.startswith(ESC + "[1mID"), f"bold header: {out!r}")
    s.close()
    d.stop()
    # errors in red on a terminal, plain into a pipe; probe's failed echoes too
    port = free_port()
    status, out = run_pty(["probe", f"127.0.0.1:{port}"], plain_env())
    check(status == 1 and f"{ESC}[0;1;31mtcpctl: cannot connect" in out, repr(out))
    p = probe("probe", f"127.0.0.1:{port}", ok=(1,))
    check(ESC not in p.stderr, repr(p.stderr))
    srv = EchoServer("alter")
    status, out = run_pty(["probe", "-c", "1", f"127.0.0.1:{srv.port}"], plain_env())
    check(status == 1 and f"{ESC}[0;1;31mseq=1: echo differs" in out, repr(out))
    status, out = run_pty(["probe", "-c", "1", f"127.0.0.1:{srv.port}"], plain_env(NO_COLOR="1"))
    check(status == 1 and ESC not in out and "seq=1: echo differs" in out, repr(out))
    srv.stop()


def table_lines(out):
    return [line for line in out.split("\n") if line]


def test_table_fits_terminal():
    d = Daemon(LISTEN)
    socks = [connect(d.port()) for _ in range(3)]
    for s in socks:
        echo_roundtrip(s, b"hello")
    ids = [str(c["id"]) for c in d.connections()]
    full = table_lines(probe("-s", d.control, "list").stdout)
    widest = max(len(line) for line in full)
    check(widest > 64, f"the test needs a table wider than 64 columns: {full}")
    check(full[0].split() == ["ID", "LOCAL", "PEER", "SERVICE", "AGE", "IDLE", "IN", "OUT", "STATE"], full[0])
    peers = [c["peer"] for c in d.connections()]
    # COLUMNS on a terminal: whole columns are left out, the least useful
    # first; the id and the peer's address are never cut
    for cols in (60, 50, 40):
        status, out = run_pty(["-s", d.control, "list"], plain_env(NO_COLOR="1", COLUMNS=str(cols)))
        lines = table_lines(out)
        check(status == 0 and len(lines) == 4, out)
        check(all(len(line) <= cols for line in lines), f"lines wider than COLUMNS={cols}:\n{out}")
        check("\u2026" not in out, f"an address was cut at COLUMNS={cols}:\n{out}")
        check([line.split()[0] for line in lines[1:]] == ids, f"ids are never cut:\n{out}")
        check(all(p in out for p in peers), f"every peer whole at COLUMNS={cols}:\n{out}")
        check("STATE" not in lines[0] and "PEER" in lines[0], lines[0])
    # the window's own width when COLUMNS is unset
    status, out = run_pty(["-s", d.control, "list"], plain_env(NO_COLOR="1", LANG="C"), cols=64)
    lines = table_lines(out)
    check(status == 0 and all(len(line) <= 64 for line in lines), f"window of 64:\n{out}")
    # never cut into a pipe, whatever COLUMNS says
    p = probe("-s", d.control, "list", env=plain_env(COLUMNS="60"))
    check(table_lines(p.stdout) == full, p.stdout)
    for s in socks:
        s.close()
    d.stop()


# ---- bash completion ----

def complete(words, env=None):
    """What _tcpctl offers for the last of words, as bash-completion calls it."""
    script = f"""
source {BASH_COMPLETION}
source {COMPLETION}
complete -p tcpctl >/dev/null || exit 3
COMP_WORDS=("$@")
COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
COMP_LINE="$*"
COMP_POINT=${{#COMP_LINE}}
_tcpctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", *words], capture_output=True, text=True,
                       timeout=TIMEOUT, env=env or plain_env())
    check(p.returncode == 0, f"completion of {words} exited {p.returncode}: {p.stderr}")
    return sorted(x for x in p.stdout.split("\n") if x)


def test_bash_completion():
    if not os.path.exists(BASH_COMPLETION):
        print(f"# skipped: {BASH_COMPLETION} is missing (dev.sh installs bash-completion)")
        return
    check(subprocess.run(["bash", "-n", COMPLETION]).returncode == 0, "completion script parses")
    check(complete([TCPCTL, ""]) == sorted(["status", "list", "kick", "reload", "log-level", "monitor", "top", "backends",
                                         "backend", "metrics", "bridge", "probe"]), "commands")
    check(complete([TCPCTL, "backend", "d"]) == ["disable", "drain"], "backend's first word")
    check(complete([TCPCTL, "-"]) == sorted(["--socket", "--instance", "--host", "--json", "--no-pager", "--help", "--version"]),
          "global options")
    check(complete([TCPCTL, "re"]) == ["reload"], "a command by its start")
    check(complete([TCPCTL, "probe", "--"]) == sorted(["--count", "--interval", "--size", "--timeout", "--deadline",
                                                       "--quiet", "--timestamp"]), "probe")
    check(complete([TCPCTL, "probe", "-c", ""]) == [], "nothing to offer for a count")
    check(complete([TCPCTL, "kick", "--"]) == sorted(["--peer", "--service", "--idle-over", "--older-than", "--all", "--reset"]),
          "kick's options")
    check(complete([TCPCTL, "list", "--sort", ""]) == sorted(["id", "age", "idle", "in", "out", "peer", "rtt"]),
          "sort keys")
    check(complete([TCPCTL, "log-level", "de"]) == ["debug"], "log levels")
    check(complete([TCPCTL, "list", "-"]) == sorted(["--tcp-info", "--peer", "--service", "--idle-over", "--older-than", "--sort"]),
          "list's options")

    d = Daemon(LISTEN)
    socks = [connect(d.port()) for _ in range(3)]
    for s in socks:
        echo_roundtrip(s, b"x")
    ids = sorted(str(c["id"]) for c in d.connections())
    check(complete([TCPCTL, "-s", d.control, "kick", ""]) == ids, "ids from the daemon on -s's socket")
    check(complete([TCPCTL, "-j", "--socket", d.control, "kick", "1", ""]) == ids, "after --socket and an id")
    check(complete([TCPCTL, "kick", ""], env=plain_env(TCPD_CONTROL_SOCKET=d.control)) == ids,
          "ids from TCPD_CONTROL_SOCKET's daemon")
    check(complete([TCPCTL, "-s", os.path.join(d.dir, "nothing"), "kick", ""]) == [], "no daemon, no ids")
    for s in socks:
        s.close()
    d.stop()


if __name__ == "__main__":
    main([test_probe_tcpd, test_count_size_interval, test_ipv6, test_host_name, test_other_echo_server,
          test_altered_bytes, test_stale_echo_named, test_closed_port, test_ping_options, test_server_closes, test_timeout,
          test_sigint_prints_summary, test_json, test_usage_errors, test_colour_only_on_a_terminal,
          test_table_fits_terminal, test_bash_completion])
