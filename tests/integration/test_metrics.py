#!/usr/bin/env python3
"""tcpctl metrics: tcpd's counters in Prometheus' text format and in
OpenMetrics, checked by Prometheus' own promtool, and written whole for
node_exporter's textfile collector."""

import os
import re
import shutil
import socket
import subprocess
import time

from tcpdtest import TCPCTL, Daemon, check, connect, echo_roundtrip, main, refused, wait_for

SETTINGS = ("[tcpd]\nallow = 127.0.0.1\n[echo]\nlisten = 127.0.0.1:0\n"
            "[service hello]\ntype = exec\nlisten = 127.0.0.1:0\nexec = /bin/echo hello\n")


def samples(text):
    """{(name, frozenset(labels)): value} of the exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        check(m, f"a line that is no sample: {line!r}")
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def ports(d):
    return {li["service"]: int(li["address"].rsplit(":", 1)[1]) for li in d.status()["listeners"]}


def busy_daemon():
    d = Daemon(SETTINGS)
    p = ports(d)
    held = [connect(p["echo"]) for _ in range(3)]
    for s in held:
        echo_roundtrip(s, b"0123456789")
    held[0].close()
    check(refused(p["echo"], source="127.0.0.2"), "a refusal by allow")
    for _ in range(3):
        s = connect(p["hello"])
        s.settimeout(5)
        check(s.recv(100) == b"hello\n", "the program answers")
        s.close()
    wait_for(lambda: d.status()["connections_open"] == 2, what="two open")
    wait_for(lambda: {x["name"]: x for x in d.status()["services"]}["hello"]["programs"]["exited"] == 3,
             what="three programs ended")
    return d, held[1:]


def test_values_match_status():
    d, held = busy_daemon()
    p = subprocess.run([TCPCTL, "-s", d.control, "metrics"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0, p.stderr)
    m = samples(p.stdout)
    st = d.status()
    svc = {x["name"]: x for x in st["services"]}
    S = lambda name, **labels: m.get((name, frozenset(labels.items())))  # noqa: E731
    check(S("tcpd_connections_open", service="echo") == 2, p.stdout)
    check(S("tcpd_connections_total", service="echo") == 3, p.stdout)
    check(S("tcpd_connections_total", service="hello") == 3, p.stdout)
    check(S("tcpd_received_bytes_total", service="echo") == svc["echo"]["bytes_in"] == 30, p.stdout)
    check(S("tcpd_sent_bytes_total", service="hello") == 18, f"programs' bytes, from TCP_INFO: {p.stdout}")
    check(S("tcpd_connections_refused_total", rule="allow") == 1, p.stdout)
    check(S("tcpd_exec_exits_total", service="hello", status="success") == 3, p.stdout)
    check(S("tcpd_exec_exits_total", service="hello", status="failure") == 0, p.stdout)
    # the histogram: 1 echo and 3 hello connections closed, all in under a minute
    check(S("tcpd_connection_duration_seconds_count", service="echo") == 1, p.stdout)
    check(S("tcpd_connection_duration_seconds_count", service="hello") == 3, p.stdout)
    check(S("tcpd_connection_duration_seconds_bucket", service="hello", le="60") == 3, p.stdout)
    check(S("tcpd_connection_duration_seconds_bucket", service="hello", le="+Inf") == 3, p.stdout)
    check(S("tcpd_workers") == st["workers"], p.stdout)
    check(S("tcpd_build_info", version=st["version"]) == 1, p.stdout)
    check(abs(S("tcpd_start_time_seconds") - (time.time() - st["uptime_usec"] / 1e6)) < 5, p.stdout)
    check(S("tcpd_settings_loaded") == 1, p.stdout)
    for s in held:
        s.close()
    d.stop()


def test_promtool_accepts_both_formats():
    """Prometheus' own checker (Debian's prometheus package) finds nothing
    to say about either format."""
    promtool = shutil.which("promtool")
    check(promtool, "promtool is missing: ./dev.sh installs the prometheus package")
    d, held = busy_daemon()
    for args in ([], ["--openmetrics"]):
        p = subprocess.run([TCPCTL, "-s", d.control, "metrics", *args], capture_output=True, text=True, timeout=10)
        check(p.returncode == 0, p.stderr)
        if args:
            check(p.stdout.endswith("# EOF\n"), "OpenMetrics ends with # EOF")
            check("# TYPE tcpd_connections counter" in p.stdout and "tcpd_connections_total{" in p.stdout,
                  "a counter's family is named without _total in OpenMetrics")
        lint = subprocess.run([promtool, "check", "metrics"], input=p.stdout, capture_output=True, text=True,
                              timeout=30)
        check(lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(),
              f"promtool on {args or 'text'}: {lint.stdout}{lint.stderr}")
    for s in held:
        s.close()
    d.stop()


def test_output_file_is_written_whole():
    d, held = busy_daemon()
    out = os.path.join(d.dir, "textfile", "tcpd.prom")
    os.mkdir(os.path.dirname(out))
    p = subprocess.run([TCPCTL, "-s", d.control, "metrics", "-o", out], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and p.stdout == "", p.stderr)
    check(os.listdir(os.path.dirname(out)) == ["tcpd.prom"], f"no temporary file left: {os.listdir(os.path.dirname(out))}")
    check(oct(os.stat(out).st_mode & 0o777) == oct(0o644), "readable by node_exporter's user")
    with open(out) as f:
        check(samples(f.read())[("tcpd_connections_open", frozenset({("service", "echo")}))] == 2, "its content")
    # a directory that is not there: an error that names it, exit 1
    bad = os.path.join(d.dir, "nope", "tcpd.prom")
    p = subprocess.run([TCPCTL, "-s", d.control, "metrics", "-o", bad], capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and bad in p.stderr, p.stderr)
    p = subprocess.run([TCPCTL, "-s", d.control, "metrics", "extra"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2, p.stderr)
    for s in held:
        s.close()
    d.stop()


def test_scrape_cost_does_not_grow_with_connections():
    """Counters, not a walk: the metrics of a tcpd holding connections come
    as fast as those of one holding none (within the noise)."""
    d = Daemon("[echo]\nlisten = 127.0.0.1:0\n")
    port = ports(d)["echo"]

    def timed():
        t0 = time.monotonic()
        for _ in range(20):
            subprocess.run([TCPCTL, "-s", d.control, "metrics"], capture_output=True, timeout=10, check=True)
        return time.monotonic() - t0

    empty = timed()
    socks = []
    for _ in range(10):
        socks += [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
        wait_for(lambda: d.status()["connections_open"] == len(socks), what=f"{len(socks)} open")
    full = timed()
    check(full < empty * 2 + 0.5, f"20 scrapes: {empty:.2f}s with none open, {full:.2f}s with 1,000")
    for s in socks:
        s.close()
    d.stop()


if __name__ == "__main__":
    main([test_values_match_status, test_promtool_accepts_both_formats, test_output_file_is_written_whole,
          test_scrape_cost_does_not_grow_with_connections])
