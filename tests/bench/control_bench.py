#!/usr/bin/env python3
"""The control plane under load, as BENCHMARKS.md reports it:

- status: GetStatus round trips over the control socket (raw Varlink, and
  `tcpctl status` as a process) while tcpd-bench drives full echo load;
  p50/p99/max in milliseconds;
- list: `tcpctl list` (table and --json) with N held connections, wall time,
  and tcpd's peak RSS before and after (no list may be built as one
  document: the peak must not grow by much more than the binary snapshot);
- scrape: GET /metrics and `tcpctl metrics` with none and with N held
  connections (a scrape reads counters: it must cost the same).

Starts its own tcpd on a free loopback port and stops it by PID, with every
run bounded in time. Usage:

    tests/bench/control_bench.py --build-dir build [--workers N] [--hold 19000]
        [--list-only] [--tcpd-cpus all --tcpd-cpus 0]

The list runs once per placement of tcpd: on every CPU ("all") and
confined to CPU 0 (as an admin's CPUAffinity= does) unless --tcpd-cpus
says otherwise, and ends with one line on the target (medians under 0.2 s
for both forms in every placement).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kib(pid, field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Tcpd:
    def __init__(self, tcpd, workers, cpus=None):
        self.dir = tempfile.mkdtemp(prefix="tcpd-cbench-")
        self.port = free_port()
        self.metrics_port = free_port()
        self.control = os.path.join(self.dir, "control")
        ini = os.path.join(self.dir, "tcpd.ini")
        with open(ini, "w") as f:
            f.write(f"[tcpd]\ncontrol_socket = {self.control}\nlog_level = warning\n")
            if workers:
                f.write(f"workers = {workers}\n")
            f.write(f"[echo]\nlisten = 127.0.0.1:{self.port}\n[metrics]\nlisten = 127.0.0.1:{self.metrics_port}\n")
        # confined to some CPUs, as an admin's CPUAffinity= does
        pin = ["taskset", "-c", cpus] if cpus else []
        self.proc = subprocess.Popen(pin + [tcpd, "-c", ini], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if os.path.exists(self.control):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("tcpd did not come up")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["rm", "-rf", self.dir])


def varlink_status_ms(path, n, interval):
    """n GetStatus calls on one connection, one at a time."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(5)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        s.sendall(b'{"method":"org.tcpd.Daemon.GetStatus"}\0')
        buf = b""
        while not buf.endswith(b"\0"):
            buf += s.recv(65536)
        out.append((time.perf_counter() - t) * 1000)
        json.loads(buf[:-1])
        time.sleep(interval)
    s.close()
    return out


def spawn_ms(argv, n):
    """n runs of a command, one at a time, each timed from fork to exit."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=10)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(xs):
    return f"p50 {percentile(xs, 50):.2f} ms, p99 {percentile(xs, 99):.2f} ms, max {max(xs):.2f} ms"


def status_under_load(a, conns, size):
    d = Tcpd(a.tcpd, a.workers)
    try:
        load = subprocess.Popen([a.bench, "-m", "echo", "-p", str(d.port), "-c", str(conns), "-s", str(size),
                                 "-t", str(a.time + 6), "-w", "0"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        raw = varlink_status_ms(d.control, a.calls, 0.005)
        ctl = spawn_ms([a.tcpctl, "-s", d.control, "status"], min(a.calls, 200))
        # what creating any process costs under the same load: the floor
        # under tcpctl's own figure
        true = spawn_ms(["true"], min(a.calls, 200))
        alive = load.poll() is None
        out, _ = load.communicate(timeout=a.time + 30)
        bench = next((l for l in out.splitlines() if l.startswith("BENCH ")), "")
        rps = dict(kv.split("=", 1) for kv in bench.split()[1:]).get("rps", "?")
        print(f"status during echo C={conns} S={size} ({rps} requests/s): raw Varlink {summary(raw)}; "
              f"tcpctl status {summary(ctl)}; /bin/true {summary(true)}"
              f"{'' if alive else ' (the load ended before the last of these)'}", flush=True)
        return raw, ctl
    finally:
        d.stop()


def scrapes_ms(a, d, n=50):
    """n GET /metrics (one connection each, as Prometheus scrapes) and n
    tcpctl metrics, one at a time: medians in ms."""
    import urllib.request
    web, ctl = [], []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{d.metrics_port}/metrics", timeout=10) as r:
            r.read()
        web.append((time.perf_counter() - t) * 1000)
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([a.tcpctl, "-s", d.control, "metrics"], stdout=subprocess.DEVNULL, check=True, timeout=10)
        ctl.append((time.perf_counter() - t) * 1000)
    return statistics.median(web), statistics.median(ctl)


def list_with_held(a, cpus):
    print(f"# list: tcpd on CPUs {cpus or 'all'}", flush=True)
    d = Tcpd(a.tcpd, a.workers, cpus)
    try:
        idle_web, idle_ctl = scrapes_ms(a, d)
        hold = subprocess.Popen([a.bench, "-m", "hold", "-p", str(d.port), "-c", str(a.hold), "-t", "600"],
                                stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            st = json.loads(subprocess.run([a.tcpctl, "-s", d.control, "--json", "status"], capture_output=True,
                                           text=True, timeout=10).stdout)
            if st["connections_open"] >= a.hold:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"only {st['connections_open']} of {a.hold} connections held")
        time.sleep(1)
        rss_before = rss_kib(d.proc.pid)
        results = {}
        for name, args in (("table", ["list"]), ("json", ["--json", "list"])):
            times = []
            for _ in range(a.rounds):
                t = time.perf_counter()
                p = subprocess.run([a.tcpctl, "-s", d.control, *args], stdout=subprocess.PIPE, timeout=30)
                times.append(time.perf_counter() - t)
                lines = p.stdout.count(b"\n")
            results[name] = times
            print(f"tcpctl {' '.join(args)} with {a.hold} connections: median {statistics.median(times):.3f} s, "
                  f"best {min(times):.3f} s, worst {max(times):.3f} s ({lines} lines)", flush=True)
        peak = rss_kib(d.proc.pid, "VmHWM")
        print(f"tcpd RSS {rss_before} KiB before the lists, peak {peak} KiB "
              f"({(peak - rss_before) * 1024 / a.hold:.0f} bytes per listed connection at the peak)", flush=True)
        web, ctl = scrapes_ms(a, d)
        print(f"scrape: GET /metrics median {idle_web:.2f} ms with none open, {web:.2f} ms with {a.hold}; "
              f"tcpctl metrics {idle_ctl:.2f} ms and {ctl:.2f} ms", flush=True)
        hold.send_signal(signal.SIGTERM)
        hold.wait(30)
        return results
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--workers", type=int, default=0, help="tcpd's workers (default: its own default)")
    ap.add_argument("--hold", type=int, default=19000, help="connections held for the list test")
    ap.add_argument("--calls", type=int, default=1000, help="GetStatus calls per load shape")
    ap.add_argument("--time", type=int, default=10, help="seconds of echo load per shape")
    ap.add_argument("--rounds", type=int, default=5, help="lists per form")
    ap.add_argument("--list-only", action="store_true", help="skip the status-under-load part")
    ap.add_argument("--tcpd-cpus", action="append",
                    help="taskset -c for tcpd in the list part, or all; again for another placement "
                         "(default: all, then 0)")
    a = ap.parse_args()
    a.tcpd = os.environ.get("TCPD", os.path.join(a.build_dir, "daemon/tcpd"))
    a.tcpctl = os.environ.get("TCPCTL", os.path.join(a.build_dir, "ctl/tcpctl"))
    a.bench = os.environ.get("TCPD_BENCH", os.path.join(a.build_dir, "tests/bench/tcpd-bench"))
    placements = [None if c == "all" else c for c in (a.tcpd_cpus or ["all", "0"])]
    print(f"# {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, workers={a.workers or 'auto'}")
    for conns, size in ((100, 1024), (1000, 1024)) if not a.list_only else ():
        status_under_load(a, conns, size)
    if not a.hold:
        return 0
    medians = []
    for cpus in placements:
        for form, times in list_with_held(a, cpus).items():
            medians.append((cpus or "all", form, statistics.median(times)))
    worst = max(medians, key=lambda m: m[2])
    print(f"list target (median under 0.2 s, every form and placement): "
          f"{'met' if worst[2] < 0.2 else 'NOT met'}; slowest: {worst[1]} with tcpd on CPUs {worst[0]}, "
          f"{worst[2]:.3f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
