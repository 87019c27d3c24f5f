#!/usr/bin/env python3
"""A/B comparison of tcpd against the minimal reference loop (ref-echo).

Both servers run side by side for the whole comparison; tcpd-bench measures
them alternately (A B A B ...), so that whatever else the machine does falls
on both alike. The load generator is pinned to one CPU and the servers to
another. Prints a markdown table of medians with the ratio tcpd/ref-echo,
ready for BENCHMARKS.md, with the command line and the machine.

    tests/bench/compare.py --build-dir build --rounds 5
    tests/bench/compare.py --quick --shape echo-c1
    tests/bench/compare.py --server-cpu all --tcpd-setting workers=2
    # tcpd against tcpd: 2 workers (A) against 1 (B), same alternation
    tests/bench/compare.py --server-cpu all --tcpd-setting workers=2 --baseline-setting workers=1
"""

import argparse
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# name, description, tcpd-bench arguments, metrics worth a row: (BENCH key, label, higher is better)
SHAPES = [
    ("echo-c1", "echo C=1 S=64", ["-m", "echo", "-c", "1", "-s", "64"],
     [("rps", "requests/s", True), ("p99_us", "p99 latency (us)", False)]),
    ("echo-c100", "echo C=100 S=1024", ["-m", "echo", "-c", "100", "-s", "1024"],
     [("rps", "requests/s", True)]),
    ("echo-c1000", "echo C=1000 S=1024", ["-m", "echo", "-c", "1000", "-s", "1024"],
     [("rps", "requests/s", True), ("p99_us", "p99 latency (us)", False)]),
    ("echo-64k", "echo C=100 S=65536", ["-m", "echo", "-c", "100", "-s", "65536"],
     [("mbps", "MB/s", True)]),
    ("connect-c50", "connect C=50 S=64", ["-m", "connect", "-c", "50", "-s", "64"],
     [("cps", "connections/s", True)]),
]
# Every shape also gets a row for the server's CPU time per request (per
# connection in connect mode): the cost, where the rate is the speed.
CPU_METRIC = ("server_cpu_us_per_req", "server CPU (us/request)", False)

SERVERS = ("tcpd", "ref-echo")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class CompareError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(args, env_name, rel):
    """--build-dir when given, else $ENV_NAME, else ./build."""
    if args.build_dir:
        path = os.path.join(args.build_dir, rel)
    else:
        path = os.environ.get(env_name) or os.path.join("build", rel)
    if not os.access(path, os.X_OK):
        raise CompareError(f"{path} is not an executable (set --build-dir or ${env_name})")
    return os.path.abspath(path)


def pin(cpu):
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def parse_bench(out):
    for line in reversed(out.splitlines()):
        if line.startswith("BENCH "):
            return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    return None


class Server:
    """One server process, started under taskset, stopped by PID."""

    def __init__(self, name, cmd, port, workdir):
        self.name = name
        self.port = port
        self.log_path = os.path.join(workdir, f"{name}.log")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        self.wait_ready()

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CompareError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise CompareError(f"{self.name} did not accept on port {self.port} within {START_TIMEOUT:.0f}s")

    def check_alive(self):
        if self.proc.poll() is not None:
            raise CompareError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by PID
                self.proc.wait()


class Runner:
    def __init__(self, args):
        self.args = args
        self.bench_proc = None

    def bench(self, server, shape_args):
        a = self.args
        cmd = pin(a.bench_cpu) + [a.tcpd_bench, "-p", str(server.port), "--pid", str(server.proc.pid),
                                  "-t", str(a.time), "-w", str(a.warmup)] + shape_args
        self.bench_proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
        try:
            out, err = self.bench_proc.communicate(timeout=a.time + a.warmup + 90)
        except subprocess.TimeoutExpired:
            self.bench_proc.kill()
            self.bench_proc.communicate()
            raise CompareError(f"tcpd-bench against {server.name} did not finish: {shlex.join(cmd)}")
        finally:
            rc = self.bench_proc.returncode
            self.bench_proc = None
        res = parse_bench(out)
        if rc != 0 or res is None:
            server.check_alive()
            raise CompareError(f"tcpd-bench against {server.name} exited {rc}: {shlex.join(cmd)}\n{out}{err}")
        return res

    def kill_bench(self):
        p = self.bench_proc
        if p and p.poll() is None:
            p.kill()  # our own child, by PID
            p.wait()


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    u = platform.uname()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} CPUs; Linux {u.release} ({u.machine}); load average at start {load}"


def fmt(v):
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def median_of(runs, key):
    vals = [float(r[key]) for r in runs if r.get(key) not in (None, "na")]
    return statistics.median(vals) if vals else None


def paired_ratio(a_runs, b_runs, key):
    """The median of the per-round ratios: round i of A ran right next to
    round i of B, so a machine that drifts (a shared VM does, by 30 % over a
    minute) moves both sides of each ratio alike."""
    ratios = [float(x[key]) / float(y[key]) for x, y in zip(a_runs, b_runs)
              if x.get(key) not in (None, "na") and y.get(key) not in (None, "na") and float(y[key])]
    return statistics.median(ratios) if ratios else None


def write_ini(path, control, port, settings):
    lines = ["[tcpd]", f"control_socket = {control}", "log_level = warning"]
    lines += [f"{k} = {v}" for k, v in settings]
    lines += ["[echo]", f"listen = 127.0.0.1:{port}", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="A/B benchmark: tcpd against the minimal reference loop (ref-echo), alternating runs.")
    p.add_argument("--build-dir", help="where tcpd and the bench tools were built (default: $TCPD, "
                   "$TCPD_BENCH and $REF_ECHO, else ./build)")
    p.add_argument("--rounds", type=int, default=5, help="runs per server and shape (5)")
    p.add_argument("--shape", action="append", choices=[s[0] for s in SHAPES],
                   help="a shape to run, repeatable (default: all)")
    p.add_argument("--time", type=float, default=5.0, help="measured seconds per run (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (1)")
    p.add_argument("--bench-cpu", default="0", help="CPU for tcpd-bench (0)")
    p.add_argument("--server-cpu", default="1", help="CPU for the servers, or 'all' (1)")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset at all")
    p.add_argument("--tcpd-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra [tcpd] line for tcpd's settings, repeatable (such as workers=1)")
    p.add_argument("--baseline-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="compare against tcpd with these [tcpd] settings (over --tcpd-setting) instead of "
                        "ref-echo, repeatable (such as workers=1)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1-second runs")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.time, a.warmup = 1, 1.0, 0.5
    if a.rounds < 1 or a.time <= 0 or a.warmup < 0:
        p.error("--rounds must be at least 1, --time positive, --warmup not negative")
    def settings(values, option):
        out = []
        for s in values:
            m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*", s)
            if not m or "\n" in s:
                p.error(f"{option} wants KEY=VALUE: {s!r}")
            out.append((m.group(1), m.group(2)))
        return out

    a.settings = settings(a.tcpd_setting, "--tcpd-setting")
    a.baseline = settings(a.baseline_setting, "--baseline-setting")
    # B: the reference loop, or tcpd with the baseline settings over A's
    a.b_name = "tcpd-baseline" if a.baseline else "ref-echo"
    if a.no_pin:
        a.bench_cpu = a.server_cpu = None
    else:
        cpus = os.sched_getaffinity(0)
        for opt, v in (("--bench-cpu", a.bench_cpu), ("--server-cpu", a.server_cpu)):
            if opt == "--server-cpu" and v == "all":
                continue
            if not v.isdigit() or int(v) not in cpus:
                p.error(f"{opt} {v}: not one of the CPUs available here {sorted(cpus)} (or use --no-pin)")
        if a.server_cpu == "all":
            a.server_cpu = None
        if shutil.which("taskset") is None:
            p.error("taskset not found (util-linux); use --no-pin to run unpinned")
    a.shapes = [s for s in SHAPES if not a.shape or s[0] in a.shape]
    return a


def compare(a, workdir):
    a.tcpd = binary(a, "TCPD", "daemon/tcpd")
    a.tcpd_bench = binary(a, "TCPD_BENCH", "tests/bench/tcpd-bench")
    ref_echo = binary(a, "REF_ECHO", "tests/bench/ref-echo")

    tcpd_port, ref_port = free_port(), free_port()
    ini = os.path.join(workdir, "tcpd.ini")
    write_ini(ini, os.path.join(workdir, "control"), tcpd_port, a.settings)
    servers = []
    runner = Runner(a)
    try:
        servers.append(Server("tcpd", pin(a.server_cpu) + [a.tcpd, "-c", ini], tcpd_port, workdir))
        if a.baseline:
            keys = {k for k, _ in a.baseline}
            ini_b = os.path.join(workdir, "baseline.ini")
            write_ini(ini_b, os.path.join(workdir, "control-b"), ref_port,
                      [(k, v) for k, v in a.settings if k not in keys] + a.baseline)
            servers.append(Server(a.b_name, pin(a.server_cpu) + [a.tcpd, "-c", ini_b], ref_port, workdir))
        else:
            servers.append(Server("ref-echo", pin(a.server_cpu) + [ref_echo, "-p", str(ref_port)], ref_port,
                                  workdir))
        results = {}  # (shape, server) -> [BENCH dicts]
        for name, desc, shape_args, _ in a.shapes:
            for r in range(a.rounds):
                for srv in servers:  # A B A B ...
                    res = runner.bench(srv, shape_args)
                    results.setdefault((name, srv.name), []).append(res)
                    log(f"{name} round {r + 1}/{a.rounds} {srv.name}: rps={res['rps']} mbps={res['mbps']} "
                        f"p99_us={res['p99_us']} server_cpu_us_per_req={res['server_cpu_us_per_req']}")
        return results
    finally:
        runner.kill_bench()
        for srv in servers:
            srv.stop()


def report(a, argv, results, host):
    print(f"| shape | metric | tcpd | {a.b_name} | tcpd/{a.b_name} | paired |")
    print("|---|---|---:|---:|---:|---:|")
    summary = []
    for name, desc, _, metrics in a.shapes:
        first = True
        for key, label, higher in metrics + [CPU_METRIC]:
            t = median_of(results[(name, "tcpd")], key)
            r = median_of(results[(name, a.b_name)], key)
            ratio = t / r if t is not None and r else None
            paired = paired_ratio(results[(name, "tcpd")], results[(name, a.b_name)], key)
            print(f"| {desc if first else ''} | {label} | {fmt(t)} | {fmt(r)} | "
                  f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {'n/a' if paired is None else f'{paired:.2f}'} |")
            if first and ratio is not None:
                summary.append(f"{name} {key} {ratio:.2f} (paired {'n/a' if paired is None else f'{paired:.2f}'})")
            first = False
    print()
    print(f"Medians of {a.rounds} alternating run{'s' if a.rounds != 1 else ''} per server and shape, "
          f"{a.time:g} s each after {a.warmup:g} s of warm-up; load generator on CPU "
          f"{a.bench_cpu if a.bench_cpu is not None else 'any'}, servers on CPU "
          f"{a.server_cpu if a.server_cpu is not None else 'any'}. A ratio above 1 is tcpd higher: better "
          f"for rates, worse for latency and CPU. 'paired' is the median of the ratios of runs made one right "
          f"after the other, which a machine whose speed drifts disturbs less.")
    extra = ", ".join(f"{k} = {v}" for k, v in a.settings)
    print(f"tcpd settings: log_level = warning{', ' + extra if extra else ''}.")
    if a.baseline:
        print(f"{a.b_name} settings: the same, with " + ", ".join(f"{k} = {v}" for k, v in a.baseline) + ".")
    print()
    print(f"Command: `{shlex.join([sys.argv[0]] + argv)}`")
    print(f"Machine: {host}")
    print()
    print(f"summary: tcpd/{a.b_name} " + ", ".join(summary))


def on_sigterm(signum, frame):
    """Stops as Ctrl-C does: servers by PID, the temporary directory removed."""
    raise KeyboardInterrupt


def main(argv):
    a = parse_args(argv)
    host = machine()
    signal.signal(signal.SIGTERM, on_sigterm)
    workdir = tempfile.mkdtemp(prefix="tcpd-compare-")
    try:
        results = compare(a, workdir)
    except CompareError as e:
        log(f"compare.py: {e}")
        return 1
    except KeyboardInterrupt:
        log("compare.py: interrupted")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(a, argv, results, host)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
