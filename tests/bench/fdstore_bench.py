#!/usr/bin/env python3
"""What keeping connections in systemd's fd store costs, under a real
systemd (a booted nspawn box, as tests/systemd/ uses) and the shipped
units: new short connections per second to the echo service (tcpd.socket)
and to a relay (type = forward to tcpd's own echo, through
tcpd-relay.socket) in three modes: the store as shipped (store_after = 1s:
a connection goes there once it is a second old, so these never do),
store_after = 0 (every connection at once: echo's in batches of up to 253
a message, a relay's two halves a message each), and no store (a drop-in
with FDSTORE=0). The modes take turns, --rounds times; the table gives
medians, and the CPU that tcpd and the box's PID 1 (systemd, which takes
every stored socket) spend per connection. Then the cost of what the store
is for, long-lived connections: --hold counts of idle connections are
opened at once and PID 1's CPU is measured until it has stored them all
(its comparison of each socket with every one it holds makes that grow
with the square of the count).

    TCPD_BUILD_ROOT=build tests/bench/fdstore_bench.py [--time 5] [--rounds 3]

The load (tcpd-bench connect C=50 S=64) runs on the host, in the box's
network namespace; every process it starts is stopped, the box torn down.
"""

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "systemd"))
from test_e2e import Checks, in_a_box, preconditions, unit_props  # noqa: E402

RELAY_PORT = 7790
DROPIN = "/etc/systemd/system/tcpd.service.d/50-bench.conf"


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def host_pid_of_tcpd(box):
    """tcpd's PID as the host sees it (the box has its own PID namespace)."""
    inner = unit_props(box, "tcpd.service", "MainPID")["MainPID"]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            continue
        m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
        if m and m.group(1).split()[-1] == inner and "\nName:\ttcpd\n" in "\n" + status:
            return int(pid)
    raise SystemExit(f"tcpd (PID {inner} in the box) not found on the host")


MODES = ("store_after = 1s", "store_after = 0", "no store")


def set_mode(box, ini, base, mode):
    if mode == "no store":
        box.run(["mkdir", "-p", os.path.dirname(DROPIN)])
        box.run(["tee", DROPIN], input="[Service]\nEnvironment=FDSTORE=0\n")
        box.run(["tee", ini], input=base)
    else:
        box.run(["rm", "-f", DROPIN])
        box.run(["tee", ini], input=base + f"\n[tcpd]\n{mode}\n")
    box.run(["systemctl", "daemon-reload"])
    # a stop and a start, not a restart: nothing carried over in the store
    box.run(["systemctl", "stop", "tcpd.service"], timeout=60)
    box.run(["systemctl", "start", "tcpd.service"], timeout=60)
    env = box.run(["systemctl", "show", "-p", "Environment", "tcpd.service"]).stdout
    if ("FDSTORE=0" in env) != (mode == "no store"):
        raise SystemExit(f"tcpd.service: {env.strip()} for {mode}")


def pid1_until_idle(a, box, start=None, t0=None):
    """PID 1's CPU seconds from start (its ticks then; default now) until it
    is idle (under 5 % for half a second), and how long that took from t0."""
    hz = os.sysconf("SC_CLK_TCK")
    start = cpu_ticks(box.leader) if start is None else start
    t0 = time.monotonic() if t0 is None else t0
    last = cpu_ticks(box.leader)
    while time.monotonic() - t0 < a.drain_limit:
        time.sleep(0.5)
        now = cpu_ticks(box.leader)
        if (now - last) / hz < 0.025:
            break
        last = now
    return (cpu_ticks(box.leader) - start) / hz, time.monotonic() - t0


def measure(a, box, port):
    tcpd = host_pid_of_tcpd(box)
    t0, s0 = cpu_ticks(tcpd), cpu_ticks(box.leader)
    p = subprocess.run(box.netns_argv([a.bench, "-m", "connect", "-c", "50", "-s", "64", "-p", str(port),
                                       "-t", str(a.time), "-w", "1"]),
                       capture_output=True, text=True, timeout=a.time + 60)
    t1 = cpu_ticks(tcpd)
    # systemd may still be taking the sockets in after the load ends (its
    # notify queue): its CPU counts until it is idle, and how long that
    # took is reported
    pid1_cpu, took = pid1_until_idle(a, box, start=s0)
    busy_after = took - 0.5  # the last half second was the idle one
    line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH ")), "")
    r = dict(kv.split("=", 1) for kv in line.split()[1:])
    if p.returncode != 0 or r.get("errors", "1") != "0":
        raise SystemExit(f"tcpd-bench failed: {p.stdout}{p.stderr}")
    cps = float(r["cps"])
    # the CPU over the whole run (warm-up included) per connection of the
    # measured part: an upper bound, the same for every mode
    conns = cps * (a.time + 1)
    hz = os.sysconf("SC_CLK_TCK")
    return cps, (t1 - t0) / hz / conns * 1e6, pid1_cpu / conns * 1e6, max(busy_after, 0.0)


def hold_cost(a, box, n):
    """n idle connections to echo, held until PID 1 has stored them."""
    start, t0 = cpu_ticks(box.leader), time.monotonic()
    p = subprocess.Popen(box.netns_argv([a.bench, "-m", "hold", "-p", "7788", "-c", str(n), "-t", "600"]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)  # opened, and store_after (1s) passed
        return pid1_until_idle(a, box, start, t0)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        pid1_until_idle(a, box)  # the closes, before the next


def print_table(results):
    cols = [(name, mode) for name in ("echo", "relay") for mode in MODES]
    print("\n| connect C=50 S=64, medians | " + " | ".join(f"{n}, {m}" for n, m in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for i, what in enumerate(("connections/s", "tcpd's CPU per connection (us)",
                              "systemd's (PID 1) CPU per connection (us)",
                              "systemd (PID 1) still busy after the load (s)")):
        cells = []
        for name, mode in cols:
            v = statistics.median(x[i] for x in results[(mode, name)])
            cells.append(f"{v:.0f}" if i == 0 else f"{v:.1f}")
        print(f"| {what} | " + " | ".join(cells) + " |")


def run(a, box, dest, t):
    with t.check("install, sysusers, a relay service and its socket, start"):
        box.install(dest)
        box.run(["systemd-sysusers"])
        m = re.search(r"^ExecStart=(\S+)", box.run(["systemctl", "cat", "tcpd.service"]).stdout, re.M)
        ini = re.search(r"default (/\S+?)\)", box.run([m.group(1), "--help"]).stdout).group(1)
        box.run(["tee", "-a", ini], input="\n[service relay]\ntype = forward\nbackend = 127.0.0.1:7788\n")
        base = box.run(["cat", ini]).stdout
        box.run(["tee", "/etc/systemd/system/tcpd-relay.socket"],
                input=f"[Socket]\nListenStream=127.0.0.1:{RELAY_PORT}\nFileDescriptorName=relay\n"
                      "Service=tcpd.service\n")
        box.run(["systemctl", "daemon-reload"])
        box.run(["systemctl", "start", "tcpd.socket", "tcpd-relay.socket"])
    if t.failed:
        return
    results = {}
    for rnd in range(a.rounds):
        for mode in MODES:
            set_mode(box, ini, base, mode)
            for name, port in (("echo", 7788), ("relay", RELAY_PORT)):
                cps, tcpd_us, pid1_us, busy = measure(a, box, port)
                results.setdefault((mode, name), []).append((cps, tcpd_us, pid1_us, busy))
                print(f"round {rnd + 1} {mode:16} {name:5} {cps:9.0f} connections/s, tcpd {tcpd_us:6.1f} us, "
                      f"systemd (PID 1) {pid1_us:7.1f} us a connection, busy {busy:5.1f} s after the load",
                      flush=True)
    if a.rounds:
        print_table(results)
    set_mode(box, ini, base, MODES[0])
    print(flush=True)
    for n in a.hold:
        cpu, took = hold_cost(a, box, n)
        print(f"{n} long-lived connections stored: systemd (PID 1) {cpu:.2f} s of CPU over {took:.1f} s, "
              f"{cpu / n * 1e6:.0f} us a connection", flush=True)
    for name in ("echo", "relay") if a.rounds else ():
        off = statistics.median(x[0] for x in results[("no store", name)])
        for mode in MODES[:2]:
            on = statistics.median(x[0] for x in results[(mode, name)])
            print(f"{name}: {mode} keeps {on / off:.2f} of the rate without a store", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=int, default=5, help="measured seconds per run")
    ap.add_argument("--rounds", type=int, default=3, help="turns of the three modes")
    ap.add_argument("--hold", type=int, action="append",
                    help="idle connections to store at once (again for more; default 1000, 4000, 12000)")
    ap.add_argument("--drain-limit", type=int, default=300,
                    help="seconds to wait for systemd to be idle again after a run")
    a = ap.parse_args()
    a.hold = a.hold or [1000, 4000, 12000]
    env = preconditions()
    if not env:
        return 1
    build, binaries = env
    a.bench = os.path.join(build, "tests/bench/tcpd-bench")
    t = Checks()
    in_a_box(build, binaries, t, lambda box, dest: run(a, box, dest, t))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
