#!/usr/bin/env python3
"""What `tcpctl top` costs, as BENCHMARKS.md reports it: tcpd holding N
connections (tcpd-bench -m hold), a few of them busy (echoing a few KiB every 50 ms),
and tcpctl top running in a detached tmux window of WxH for --time seconds.
Prints the CPU that tcpctl top and tcpd spend on it (tcpd's CPU with the
same load and no top is measured first, over the same time, and taken off),
and the time one refresh's two calls take (GetStatus, then the top list for
the rows of the window), with N held and with none.

Starts its own tcpd on a free loopback port and stops everything it started
by PID; every wait is bounded. Usage:

    tests/bench/top_bench.py --build-dir build [--hold 19000] [--time 20]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from control_bench import Tcpd  # noqa: E402


def cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(sock, method, params=None, more=False):
    msg = {"method": method, "parameters": params or {}}
    if more:
        msg["more"] = True
    sock.sendall(json.dumps(msg).encode() + b"\0")
    buf, replies = b"", []
    while True:
        while b"\0" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("tcpd closed the control connection")
            buf += chunk
        frame, buf = buf.split(b"\0", 1)
        r = json.loads(frame)
        replies.append(r)
        if not r.get("continues"):
            return replies


def refresh_ms(control, rows, n=50):
    """One refresh's calls, n times on one connection: median ms."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(control)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call(s, "org.tcpd.Daemon.GetStatus")
        got = call(s, "org.tcpd.Daemon.ListConnections", {"top": rows, "by": "rate"}, more=True)
        times.append((time.perf_counter() - t) * 1000)
    s.close()
    return statistics.median(times), len(got)


def wait_open(a, d, n):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        st = json.loads(subprocess.run([a.tcpctl, "-s", d.control, "--json", "status"], capture_output=True,
                                       text=True, timeout=10).stdout)
        if st["connections_open"] >= n:
            return
        time.sleep(0.5)
    raise SystemExit(f"only {st['connections_open']} of {n} connections open")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--hold", type=int, default=19000, help="connections held")
    ap.add_argument("--busy", type=int, default=20, help="of them echoing all the time")
    ap.add_argument("--time", type=int, default=20, help="seconds measured, with top and without")
    ap.add_argument("--size", default="80x24", help="the window, WxH")
    a = ap.parse_args()
    a.tcpd = os.environ.get("TCPD", os.path.join(a.build_dir, "daemon/tcpd"))
    a.tcpctl = os.environ.get("TCPCTL", os.path.join(a.build_dir, "ctl/tcpctl"))
    a.bench = os.environ.get("TCPD_BENCH", os.path.join(a.build_dir, "tests/bench/tcpd-bench"))
    width, height = a.size.split("x")
    rows = int(height) - 10
    print(f"# {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, workers=auto, "
          f"{a.hold} held + {a.busy} busy, window {a.size}, {a.time} s per measure", flush=True)
    d = Tcpd(a.tcpd, 0)
    procs = []
    tdir = tempfile.mkdtemp(prefix="tcpd-topbench-")
    tmux = ["tmux", "-S", os.path.join(tdir, "tmux"), "-f", "/dev/null"]
    try:
        idle_ms, _ = refresh_ms(d.control, rows)
        procs.append(subprocess.Popen([a.bench, "-m", "hold", "-p", str(d.port), "-c", str(a.hold), "-t", "900"],
                                      stdout=subprocess.DEVNULL))
        wait_open(a, d, a.hold)
        # paced, not flat out: a busy host, not a benchmark of echo
        busy = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(a.busy)]
        stop = threading.Event()

        def traffic():  # each busy connection echoes 1 KiB every 50 ms, until told or 10 min
            end = time.monotonic() + 600
            while not stop.is_set() and time.monotonic() < end:
                for i, s in enumerate(busy):
                    s.sendall(b"x" * 1024 * (1 + i % 4))
                    want = 1024 * (1 + i % 4)
                    while want:
                        want -= len(s.recv(want))
                time.sleep(0.05)
        th = threading.Thread(target=traffic, daemon=True)
        th.start()
        wait_open(a, d, a.hold + a.busy)
        time.sleep(2)
        held_ms, got = refresh_ms(d.control, rows)

        c0 = cpu_s(d.proc.pid)
        time.sleep(a.time)
        base = cpu_s(d.proc.pid) - c0

        subprocess.run(tmux + ["new-session", "-d", "-x", width, "-y", height,
                               f"exec {a.tcpctl} -s {d.control} top"], check=True, timeout=10,
                       env=dict(os.environ, TERM="xterm"))
        pane = int(subprocess.run(tmux + ["display", "-p", "#{pane_pid}"], capture_output=True, text=True,
                                  timeout=10).stdout)
        time.sleep(2)
        c0, t0, w0 = cpu_s(d.proc.pid), cpu_s(pane), time.monotonic()
        time.sleep(a.time)
        dt = time.monotonic() - w0
        with_top = cpu_s(d.proc.pid) - c0
        top_cpu = cpu_s(pane) - t0
        screen = subprocess.run(tmux + ["capture-pane", "-p"], capture_output=True, text=True, timeout=10).stdout
        shown = sum(1 for ln in screen.splitlines() if ln.split() and ln.split()[0].isdigit())

        tcpd_cost = max(0.0, with_top - base)
        print(f"tcpd CPU over {a.time} s: {base:.2f} s without top, {with_top:.2f} s with it", flush=True)
        print(f"tcpctl top: {top_cpu / dt:.4f} CPU; tcpd for it: {tcpd_cost / dt:.4f} CPU; together "
              f"{(top_cpu + tcpd_cost) / dt:.4f} CPU (budget 0.1); {shown} connections on the screen", flush=True)
        print(f"one refresh (GetStatus + top list of {rows}): median {idle_ms:.2f} ms with none open, "
              f"{held_ms:.2f} ms with {a.hold + a.busy} ({got - 1} rows from the workers)", flush=True)
        stop.set()
        th.join()
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        d.stop()
        shutil.rmtree(tdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
