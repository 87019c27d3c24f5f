#!/usr/bin/env python3
"""Relays side by side, as BENCHMARKS.md reports them: tcpd's type =
forward against HAProxy's tcp mode (with and without its splice options),
nginx's stream module, rinetd and socat (fork), all from Debian. Each relay
and its backend (ref-echo) run on one CPU, the load (tcpd-bench) on the
other; every shape runs against each relay in turn, in one run. Prints a
markdown table: the rate, and the relay's CPU per request (per connection
in connect mode). Every process is started here by PID on loopback and
stopped by PID; every run is bounded in time.

    tests/bench/forward_bench.py --build-dir build [--time 5] [--rounds 3] [--only tcpd,haproxy]

tcpd-rw is tcpd with splice = no (every byte read and written through
memory), beside tcpd's default. With --rounds N, every relay runs every
shape N times, the relays taking turns within each round (so that the
machine's slow minutes fall on all of them), and the table gives medians.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SHAPES = [
    ("echo C=100 S=1024", ["-m", "echo", "-c", "100", "-s", "1024"], "rps", "requests/s"),
    ("echo C=100 S=65536", ["-m", "echo", "-c", "100", "-s", "65536"], "mbps", "MB/s"),
    ("connect C=50 S=64", ["-m", "connect", "-c", "50", "-s", "64"], "cps", "connections/s"),
]
RELAY_CPU, LOAD_CPU = "0", "1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = getattr(proc, "stderr_path", None)
            raise SystemExit(f"{what} exited with {proc.returncode}" + (f": {open(err).read()[-800:]}" if err else ""))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Relay:
    """One relay listening on 127.0.0.1:port, relaying to backend."""

    def __init__(self, name, a, backend, tmp):
        self.name, self.port = name, free_port()
        d = os.path.join(tmp, name)
        os.makedirs(d)
        pin = ["taskset", "-c", RELAY_CPU]
        if name in ("tcpd", "tcpd-rw"):
            with open(f"{d}/tcpd.ini", "w") as f:
                f.write(f"[tcpd]\ncontrol_socket = {d}/control\nlog_level = warning\n"
                        f"[echo]\nlisten = 127.0.0.1:0\n"
                        f"[service fw]\ntype = forward\nlisten = 127.0.0.1:{self.port}\n"
                        f"backend = 127.0.0.1:{backend}\n" + ("splice = no\n" if name == "tcpd-rw" else ""))
            argv = pin + [a.tcpd, "-c", f"{d}/tcpd.ini"]
        elif name.startswith("haproxy"):
            splice = "  option splice-auto\n" if name == "haproxy-splice" else ""
            with open(f"{d}/haproxy.cfg", "w") as f:
                f.write("global\n  maxconn 4000\n  nbthread 1\n"
                        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n"
                        f"{splice}listen relay\n  bind 127.0.0.1:{self.port}\n  server b 127.0.0.1:{backend}\n")
            argv = pin + ["haproxy", "-db", "-f", f"{d}/haproxy.cfg"]
        elif name == "nginx":
            with open(f"{d}/nginx.conf", "w") as f:
                f.write("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
                        f"daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n"
                        "events { worker_connections 20000; }\n"
                        f"stream {{ server {{ listen 127.0.0.1:{self.port} backlog=128; "
                        f"proxy_pass 127.0.0.1:{backend}; }} }}\n")
            argv = pin + ["nginx", "-p", d, "-c", f"{d}/nginx.conf"]
        elif name == "rinetd":
            with open(f"{d}/rinetd.conf", "w") as f:
                f.write(f"127.0.0.1 {self.port} 127.0.0.1 {backend}\n")
            argv = pin + ["rinetd", "-f", "-c", f"{d}/rinetd.conf"]
        elif name.startswith("ref-relay"):
            argv = pin + [a.ref_relay, *(["-s"] if name == "ref-relay-splice" else []), "-p", str(self.port), "-b",
                          str(backend)]
        elif name == "socat":
            argv = pin + ["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr,backlog=128",
                          f"TCP:127.0.0.1:{backend}"]
        else:
            raise SystemExit(f"unknown relay {name}")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(f"{d}/stderr", "wb"))
        self.proc.stderr_path = f"{d}/stderr"
        wait_listening(self.port, self.proc, name)
        time.sleep(0.5)  # tcpd's first health check, nginx's worker


def worker_pid(relay):
    """The process that relays: nginx's worker (the master only watches);
    socat's are a child per connection, not measured (None)."""
    if relay.name == "socat":
        return None
    if relay.name == "nginx":
        kids = subprocess.run(["pgrep", "-P", str(relay.proc.pid)], capture_output=True, text=True).stdout.split()
        return int(kids[0]) if kids else None
    return relay.proc.pid


def bench(a, relay, args):
    pid = worker_pid(relay)
    p = subprocess.run(["taskset", "-c", LOAD_CPU, a.bench, *args, "-p", str(relay.port), "-t", str(a.time),
                        "-w", "1", *(["--pid", str(pid)] if pid else [])], capture_output=True, text=True,
                       timeout=a.time + 60)
    line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH ")), "")
    r = dict(kv.split("=", 1) for kv in line.split()[1:])
    if p.returncode != 0 or r.get("errors", "1") != "0":
        return None
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--time", type=int, default=5, help="measured seconds per shape and relay")
    ap.add_argument("--rounds", type=int, default=1, help="runs of every relay and shape (medians)")
    ap.add_argument("--only", help="a comma list of relays (default: all that are installed)")
    a = ap.parse_args()
    a.tcpd = os.environ.get("TCPD", os.path.join(a.build_dir, "daemon/tcpd"))
    a.bench = os.environ.get("TCPD_BENCH", os.path.join(a.build_dir, "tests/bench/tcpd-bench"))
    ref_echo = os.environ.get("REF_ECHO", os.path.join(a.build_dir, "tests/bench/ref-echo"))
    a.ref_relay = os.environ.get("REF_RELAY", os.path.join(a.build_dir, "tests/bench/ref-relay"))
    names = ["tcpd", "tcpd-rw", "ref-relay", "ref-relay-splice", "haproxy", "haproxy-splice", "nginx", "rinetd", "socat"]
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    names = [n for n in names if n.startswith(("tcpd", "ref-relay")) or shutil.which(n.split("-")[0])]
    print(f"# {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs; relay and ref-echo on CPU "
          f"{RELAY_CPU}, tcpd-bench on CPU {LOAD_CPU}; {a.time} s per shape, {a.rounds} round(s)", flush=True)
    tmp = tempfile.mkdtemp(prefix="tcpd-fwbench-")
    backend_port = free_port()
    echo = subprocess.Popen(["taskset", "-c", RELAY_CPU, ref_echo, "-p", str(backend_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {}
    try:
        wait_listening(backend_port, echo, "ref-echo")
        for _ in range(a.rounds):
            for name in names:
                relay = Relay(name, a, backend_port, tmp)
                try:
                    for shape, args, key, _ in SHAPES:
                        r = bench(a, relay, args)
                        results.setdefault((name, shape), []).append(r)
                        print(f"{name:16} {shape:20} " + (f"{float(r[key]):10.1f} {key}, relay CPU "
                                                          f"{r['server_cpu_us_per_req']} us/req" if r else "failed"),
                              flush=True)
                finally:
                    stop(relay.proc)
                    shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
    finally:
        stop(echo)
        shutil.rmtree(tmp, ignore_errors=True)
    def median(name, shape, key):
        runs = results.get((name, shape), [])
        if not runs or None in runs:
            return None
        try:
            return statistics.median(float(r[key]) for r in runs)
        except (KeyError, ValueError):
            return None  # socat's CPU: "na"

    print("\n| shape | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for shape, _, key, unit in SHAPES:
        row = []
        for n in names:
            m = median(n, shape, key)
            row.append("failed" if m is None else f"{m:.1f}" if key == "mbps" else f"{m:.0f}")
        print(f"| {shape} ({unit}) | " + " | ".join(row) + " |")
        row = []
        for n in names:
            m = median(n, shape, "server_cpu_us_per_req")
            row.append("na" if m is None else f"{m:.2f}")
        print(f"| {shape}: relay CPU (us) | " + " | ".join(row) + " |")


if __name__ == "__main__":
    sys.exit(main())
