#!/usr/bin/env python3
"""The benchmark tools work: tcpd-bench's three modes pass against ref-echo
and tcpd, fail against servers that corrupt, reorder or drop bytes or hang
up, and compare.py runs end to end. Correctness only: no timing is asserted."""

import os
import re
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from tcpdtest import Daemon, check, free_port, main  # noqa: E402

TCPD_BENCH = os.environ.get("TCPD_BENCH", "build/tests/bench/tcpd-bench")
REF_ECHO = os.environ.get("REF_ECHO", "build/tests/bench/ref-echo")
COMPARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare.py")

ECHO = ["-m", "echo", "-c", "10", "-s", "1000", "-t", "1", "-w", "0.2"]
CONNECT = ["-m", "connect", "-c", "5", "-t", "1", "-w", "0.2"]
HOLD = ["-m", "hold", "-c", "2000", "--steps", "1000", "-t", "1"]


def bench(port, args, pid=None, timeout=90):
    cmd = [TCPD_BENCH, "-p", str(port)] + (["--pid", str(pid)] if pid else []) + args
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")]
    fields = dict(kv.split("=", 1) for kv in lines[-1].split()[1:]) if lines else {}
    return p, fields


def bench_ok(port, args, pid):
    p, f = bench(port, args, pid)
    check(p.returncode == 0, f"tcpd-bench {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    check(f, f"no BENCH line:\n{p.stdout}")
    check(f["errors"] == "0", f"errors in {f}")
    return f


def check_all_modes(port, pid):
    f = bench_ok(port, ECHO, pid)
    check(int(f["requests"]) > 0 and float(f["rps"]) > 0, f"no requests: {f}")
    check(f["conns"] == "10" and f["size"] == "1000" and f["depth"] == "1", f"echoed the wrong shape: {f}")
    check(f["server_cpu_us_per_req"] != "na" and int(f["server_rss_kib"]) > 0, f"no server figures: {f}")
    check(int(f["p50_us"]) <= int(f["p99_us"]) <= int(f["p999_us"]) <= int(f["max_us"]), f"percentiles: {f}")

    f = bench_ok(port, CONNECT, pid)
    check(int(f["requests"]) > 0 and f["cps"] == f["rps"], f"no connections: {f}")

    f = bench_ok(port, HOLD, pid)
    check(f["held"] == "2000" and f["verified"] == "2000" and f["dropped"] == "0", f"not all held: {f}")
    check(f["rss_kib"] != "na" and f["rss_per_conn_bytes"] != "na", f"no RSS figures: {f}")


class RefEcho:
    def __init__(self):
        self.proc = subprocess.Popen([REF_ECHO, "-H", "127.0.0.1", "-p", "0"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        check(line.startswith("listening on "), f"ref-echo said {line!r}")
        self.port = int(line.split()[-1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM, by PID: must exit 0
            rc = self.proc.wait(10)
            check(rc == 0, f"ref-echo exited {rc} on SIGTERM")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class BrokenServer:
    """An echo server in a thread per connection that gets something wrong."""

    def __init__(self, fault):
        self.fault = fault
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.fault == "hangup":
                c.close()
                continue
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        total = 0
        with c:
            while True:
                try:
                    data = bytearray(c.recv(65536))
                except OSError:
                    return
                if not data:
                    return
                # faults at the 501st byte of the stream, whatever the chunking
                at = 500 - total
                total += len(data)
                if 0 <= at < len(data):
                    if self.fault == "corrupt":
                        data[at] ^= 0x01
                    elif self.fault == "drop":
                        del data[at]
                if self.fault == "reorder" and len(data) >= 2:
                    data[0], data[1] = data[1], data[0]
                try:
                    c.sendall(data)
                except OSError:
                    return

    def close(self):
        self.sock.close()


def test_against_ref_echo():
    ref = RefEcho()
    try:
        check_all_modes(ref.port, ref.proc.pid)
        ref.stop()
    finally:
        ref.kill()


def test_ref_echo_keeps_what_it_cannot_write():
    """A client that sends 16 MiB before reading a byte: ref-echo's writes come
    up short, it must keep the rest and stop reading, and lose nothing."""
    ref = RefEcho()
    try:
        payload = os.urandom(1 << 24)
        s = socket.create_connection(("127.0.0.1", ref.port), timeout=30)
        sender = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
        sender.start()
        sender.join(2)
        check(sender.is_alive(), "16 MiB went out unread: no back-pressure to test")
        got = bytearray()
        while len(got) < len(payload):
            chunk = s.recv(1 << 20)
            check(chunk, f"EOF after {len(got)} bytes")
            got += chunk
        sender.join(10)
        check(bytes(got) == payload, "the echo differs from what was sent")
        s.close()
        ref.stop()
    finally:
        ref.kill()


def test_against_tcpd():
    port = free_port()
    d = Daemon(f"[tcpd]\nlog_level = warning\n[echo]\nlisten = 127.0.0.1:{port}\n")
    check_all_modes(port, d.proc.pid)
    d.stop()


def test_fails_against_broken_servers():
    for fault in ("corrupt", "drop", "reorder"):
        srv = BrokenServer(fault)
        try:
            for args in (["-m", "echo", "-c", "3", "-s", "1000", "-d", "2", "-t", "0.5", "-w", "0"],
                         ["-m", "connect", "-c", "2", "-s", "1000", "-t", "0.5", "-w", "0"]):
                p, f = bench(srv.port, args)
                check(p.returncode == 1, f"{fault}: tcpd-bench {args} exited {p.returncode}, not 1:\n"
                                         f"{p.stdout}{p.stderr}")
                check("verify:" in p.stderr, f"{fault}: no verify message:\n{p.stderr}")
                check(int(f.get("errors", "0")) > 0, f"{fault}: errors=0 in {f}")
        finally:
            srv.close()

    srv = BrokenServer("hangup")
    try:
        p, f = bench(srv.port, ["-m", "hold", "-c", "50", "-t", "0.1"])
        check(p.returncode == 1, f"hold against a server that hangs up exited {p.returncode}:\n{p.stdout}")
        check(f.get("held") == "0" and int(f["errors"]) > 0, f"hold against a server that hangs up: {f}")
    finally:
        srv.close()


def test_usage_errors():
    for args in (["-m", "nonsense"], ["-c", "0"], ["-H", "localhost"], ["-t", "-1"], ["stray"]):
        p = subprocess.run([TCPD_BENCH] + args, capture_output=True, text=True, timeout=10)
        check(p.returncode == 2, f"tcpd-bench {args} exited {p.returncode}, not 2")
    p = subprocess.run([TCPD_BENCH, "--help"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and "BENCH" in p.stdout, "--help")
    # a refused connection is a failure, not a usage error
    p, f = bench(free_port(), ["-c", "1", "-t", "0.2", "-w", "0"])
    check(p.returncode == 1, f"no server: exited {p.returncode}")


def test_compare_quick():
    cpus = sorted(os.sched_getaffinity(0))
    pin = ["--bench-cpu", str(cpus[0]), "--server-cpu", str(cpus[1])] if len(cpus) >= 2 else ["--no-pin"]
    p = subprocess.run([sys.executable, COMPARE, "--quick", "--shape", "echo-c1"] + pin,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, f"compare.py exited {p.returncode}:\n{p.stdout}{p.stderr}")
    check("| echo C=1 S=64 | requests/s |" in p.stdout, f"no table row:\n{p.stdout}")
    check(re.match(r"summary: tcpd/ref-echo echo-c1 rps \d+\.\d\d \(paired \d+\.\d\d\)$",
                   p.stdout.rstrip().splitlines()[-1]), f"no summary line:\n{p.stdout}")
    row = re.search(r"^\| echo C=1 S=64 \| requests/s \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", p.stdout, re.M)
    check(row, f"no ratio columns:\n{p.stdout}")
    # one round each: the paired ratio is that round's, the same as the ratio of the medians
    check(abs(float(row.group(3)) - float(row.group(4))) < 0.011, f"paired ratio of one round:\n{p.stdout}")


if __name__ == "__main__":
    main([test_against_ref_echo, test_ref_echo_keeps_what_it_cannot_write, test_against_tcpd, test_fails_against_broken_servers, test_usage_errors,
          test_compare_quick])
