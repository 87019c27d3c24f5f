#!/usr/bin/env python3
"""A program per connection: tcpd's type = exec against the servers admins
run for that job, side by side in one run, each running /bin/cat.

    tcpd        [service cat] type = exec, workers = 1
    ref-exec    the floor: accept + posix_spawn in a loop, nothing else
    ref-exec-fds  the same holding --held sockets (close-on-exec), as a
                daemon holds its connections: what posix_spawn costs then
    tcpserver   Debian's ucspi-tcp (tcpserver -c 1000 ... /bin/cat)
    xinetd      server = /bin/cat, no instance or rate limit
    sd-accept   systemd-socket-activate --inetd --accept: systemd's own
                Accept=yes code path as a tool (not PID 1)

Every server is pinned to one CPU and tcpd-bench (connect mode: connect,
send S bytes, read them back, reset) to the other; rounds alternate the
servers (A B C ... A B C ...) so that drift falls on all alike. Then, on
the same tcpd: the same with 10,000 idle echo connections held (tcpd must
start a program as fast with them as without), and tcpd's own memory per
running program (1,000 cats held open, RSS growth of tcpd alone).

    tests/bench/exec_bench.py --build-dir build --rounds 3
    tests/bench/exec_bench.py --quick

Prints a markdown table for BENCHMARKS.md and one summary line per target.
Needs ucspi-tcp and xinetd (apt-get install ucspi-tcp xinetd, with a
policy-rc.d that exits 101 so that xinetd's package does not start it).
Traffic goes to 127.0.0.1 only.
"""

import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import (CompareError, Runner, Server, binary, fmt, free_port, log, machine,  # noqa: E402
                     parse_bench, pin)

SERVERS = ("tcpd", "ref-exec", "tcpserver", "xinetd", "sd-accept", "ref-exec-fds")
CAT = "/bin/cat"


def parse_args(argv):
    p = argparse.ArgumentParser(description="tcpd's type = exec against tcpserver, xinetd, "
                                            "systemd-socket-activate and a minimal accept+spawn loop.")
    p.add_argument("--build-dir", help="the meson build directory (default: ./build)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per server (3)")
    p.add_argument("--time", type=float, default=5, help="measured seconds per run (5)")
    p.add_argument("--warmup", type=float, default=1, help="unmeasured seconds before each run (1)")
    p.add_argument("--connections", type=int, default=50, help="connect mode's C (50)")
    p.add_argument("--size", type=int, default=64, help="bytes per connection (64)")
    p.add_argument("--held", type=int, default=10000, help="idle echo connections for the held runs (10000)")
    p.add_argument("--programs", type=int, default=1000, help="cats held open for the memory figure (1000)")
    p.add_argument("--server-cpu", default="0", help="CPU for the servers (0)")
    p.add_argument("--bench-cpu", default="1", help="CPU for tcpd-bench (1)")
    p.add_argument("--quick", action="store_true", help="1 round of 2 s, 2,000 held, 200 programs")
    p.add_argument("--only", help="a comma-separated subset of the servers for the rate rounds (tcpd first)")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.time, a.warmup, a.held, a.programs = 1, 2, 0.5, 2000, 200
    a.servers = tuple(a.only.split(",")) if a.only else SERVERS
    if a.servers[0] != "tcpd" or not set(a.servers) <= set(SERVERS):
        raise CompareError(f"--only: tcpd first, then any of {', '.join(SERVERS[1:])}")
    a.server_cpu = None if a.server_cpu == "all" else int(a.server_cpu)
    a.bench_cpu = None if a.bench_cpu == "all" else int(a.bench_cpu)
    a.tcpd = binary(a, "TCPD", "daemon/tcpd")
    a.tcpctl = binary(a, "TCPCTL", "ctl/tcpctl")
    a.tcpd_bench = binary(a, "TCPD_BENCH", "tests/bench/tcpd-bench")
    a.ref_exec = binary(a, "REF_EXEC", "tests/bench/ref-exec")
    for tool, pkg in (("tcpserver", "ucspi-tcp"), ("xinetd", "xinetd"),
                      ("systemd-socket-activate", "systemd")):
        if not shutil.which(tool):
            raise CompareError(f"{tool} is missing: apt-get install {pkg}")
    return a


def start_tcpd(a, work, port, echo_port):
    control = os.path.join(work, "control")
    ini = os.path.join(work, "tcpd.ini")
    with open(ini, "w") as f:
        f.write(f"[tcpd]\ncontrol_socket = {control}\nlog_level = warning\nworkers = 1\n"
                f"[echo]\nlisten = 127.0.0.1:{echo_port}\n"
                f"[service cat]\ntype = exec\nlisten = 127.0.0.1:{port}\nexec = {CAT}\n")
    srv = Server("tcpd", pin(a.server_cpu) + [a.tcpd, "-c", ini], port, work)
    srv.control = control
    return srv


def start_xinetd(a, work, port):
    conf = os.path.join(work, "xinetd.conf")
    with open(conf, "w") as f:
        f.write("defaults\n{\n    instances = UNLIMITED\n    per_source = UNLIMITED\n    cps = 1000000 1\n"
                "    log_type = FILE /dev/null\n}\n"
                "service benchcat\n{\n    type = UNLISTED\n    socket_type = stream\n    protocol = tcp\n"
                f"    wait = no\n    user = root\n    server = {CAT}\n    port = {port}\n"
                "    bind = 127.0.0.1\n    flags = REUSE\n}\n")
    return Server("xinetd", pin(a.server_cpu) + ["xinetd", "-dontfork", "-f", conf,
                                                 "-pidfile", os.path.join(work, "xinetd.pid")], port, work)


def start_all(a, work):
    ports = {name: free_port() for name in SERVERS}
    echo_port = free_port()
    servers = {"tcpd": start_tcpd(a, work, ports["tcpd"], echo_port)}
    servers["tcpd"].echo_port = echo_port
    if "ref-exec" in a.servers:
        servers["ref-exec"] = Server("ref-exec", pin(a.server_cpu) + [a.ref_exec, "-p", str(ports["ref-exec"]),
                                                                     "--", CAT], ports["ref-exec"], work)
    if "ref-exec-fds" in a.servers:
        servers["ref-exec-fds"] = Server("ref-exec-fds", pin(a.server_cpu) + [
            a.ref_exec, "-n", str(a.held), "-p", str(ports["ref-exec-fds"]), "--", CAT], ports["ref-exec-fds"], work)
    if "tcpserver" in a.servers:
        servers["tcpserver"] = Server("tcpserver", pin(a.server_cpu) + ["tcpserver", "-R", "-H", "-l0", "-c",
                                                                       "1000", "127.0.0.1", str(ports["tcpserver"]),
                                                                       CAT], ports["tcpserver"], work)
    if "xinetd" in a.servers:
        servers["xinetd"] = start_xinetd(a, work, ports["xinetd"])
    if "sd-accept" in a.servers:
        servers["sd-accept"] = Server("sd-accept", pin(a.server_cpu) + ["systemd-socket-activate", "--inetd",
                                                                       "-a", "-l", f"127.0.0.1:{ports['sd-accept']}",
                                                                       CAT], ports["sd-accept"], work)
    return servers


def connect_args(a):
    return ["-m", "connect", "-c", str(a.connections), "-s", str(a.size)]


def tcpd_open(a, srv):
    p = subprocess.run([a.tcpctl, "-s", srv.control, "--json", "status"], capture_output=True, text=True,
                       timeout=10)
    if p.returncode != 0:
        raise CompareError(f"tcpctl status: {p.stderr}")
    import json
    return json.loads(p.stdout)["connections_open"]


def hold(a, srv, port, n, secs):
    """tcpd-bench in hold mode, in the background: n connections to port,
    held secs seconds; returns once tcpd has them all open."""
    cmd = pin(a.bench_cpu) + [a.tcpd_bench, "-m", "hold", "-p", str(port), "-c", str(n), "--steps", str(n),
                              "-t", str(int(secs)), "--pid", str(srv.proc.pid)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while tcpd_open(a, srv) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate()
            raise CompareError(f"hold did not reach {n}: {shlex.join(cmd)}\n{out}{err}")
        time.sleep(0.5)
    return proc


def finish_hold(proc, what):
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()  # our own child, by PID
        proc.communicate()
        raise CompareError(f"{what}: tcpd-bench hold did not finish")
    res = parse_bench(out)
    if proc.returncode != 0 or res is None:
        raise CompareError(f"{what}: tcpd-bench hold exited {proc.returncode}\n{out}{err}")
    return res


def main(argv):
    a = parse_args(argv)
    work = tempfile.mkdtemp(prefix="tcpd-exec-bench-")
    runner = Runner(a)
    servers = {}
    results = {name: [] for name in a.servers}
    held_runs = []
    try:
        servers = start_all(a, work)
        shape = connect_args(a)
        for r in range(a.rounds):
            for name in a.servers:
                res = runner.bench(servers[name], shape)
                results[name].append(res)
                log(f"round {r + 1}/{a.rounds} {name}: {res['cps']} connections/s, "
                    f"server CPU {res.get('server_cpu_us_per_req')} us/connection")
        tcpd = servers["tcpd"]
        run_secs = a.rounds * (a.time + a.warmup + 3) + 30
        log(f"holding {a.held} idle echo connections on tcpd ...")
        h = hold(a, tcpd, tcpd.echo_port, a.held, run_secs)
        for r in range(a.rounds):
            res = runner.bench(tcpd, shape)
            held_runs.append(res)
            log(f"round {r + 1}/{a.rounds} tcpd with {a.held} held: {res['cps']} connections/s")
        finish_hold(h, "held echo connections")
        # a tcpd of its own, so that memory freed by the runs before does
        # not hide what the programs' connections take
        mem_dir = os.path.join(work, "mem")
        os.mkdir(mem_dir)
        fresh = start_tcpd(a, mem_dir, free_port(), free_port())
        servers["tcpd-mem"] = fresh
        log(f"holding {a.programs} running programs on a fresh tcpd ...")
        p = hold(a, fresh, fresh.port, a.programs, 3)
        mem = finish_hold(p, "held programs")
    except CompareError as e:
        log(f"exec_bench: {e}")
        return 1
    finally:
        runner.kill_bench()
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)

    med = {n: statistics.median(float(x["cps"]) for x in results[n]) for n in a.servers}
    cpu = {n: statistics.median(float(x["server_cpu_us_per_req"]) for x in results[n]
                                if x.get("server_cpu_us_per_req") not in (None, "na")) for n in a.servers}
    held_cps = statistics.median(float(x["cps"]) for x in held_runs)
    per_prog = float(mem["rss_per_conn_bytes"]) if mem.get("rss_per_conn_bytes") not in (None, "na") else None
    others = [n for n in ("ref-exec", "tcpserver", "xinetd") if n in a.servers]
    best_other = max(others, key=lambda n: med[n]) if others else None

    print(f"Machine: {machine()}")
    print(f"Command: tests/bench/exec_bench.py {shlex.join(argv)}")
    print(f"Servers on CPU {a.server_cpu}, tcpd-bench on CPU {a.bench_cpu}; connect mode C={a.connections} "
          f"S={a.size}, {a.rounds} rounds of {a.time:g} s, medians; each server runs {CAT} per connection.\n")
    print("| server | connections/s | server CPU (us/connection, its own process) | vs tcpd |")
    print("|---|---:|---:|---:|")
    for n in a.servers:
        print(f"| {n} | {fmt(med[n])} | {fmt(cpu[n])} | {fmt(med[n] / med['tcpd'])} |")
    print(f"| tcpd, {a.held} idle echo connections held | {fmt(held_cps)} | | "
          f"{fmt(held_cps / med['tcpd'])} |")
    print()
    ok_rate = best_other and med["tcpd"] >= med[best_other]
    ok_held = held_cps >= 0.95 * med["tcpd"]
    ok_mem = per_prog is not None and per_prog <= 1024
    if best_other:
        print(f"RESULT rate: tcpd {fmt(med['tcpd'])}/s vs the best of {', '.join(others)} "
              f"({best_other} {fmt(med[best_other])}/s): {'MET' if ok_rate else 'NOT MET'}")
    print(f"RESULT held: {fmt(held_cps)}/s with {a.held} held = {fmt(held_cps / med['tcpd'])} of "
          f"{fmt(med['tcpd'])}/s (target >= 0.95): {'MET' if ok_held else 'NOT MET'}")
    print(f"RESULT memory: tcpd's own RSS per running program {fmt(per_prog)} bytes over {mem.get('held')} "
          f"programs (target <= 1024): {'MET' if ok_mem else 'NOT MET'}")
    return 0


def on_sigterm(signum, frame):
    raise SystemExit(1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    sys.exit(main(sys.argv[1:]))
