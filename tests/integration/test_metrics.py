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

import json
import signal
import tempfile
import urllib.error
import urllib.request

from tcpdtest import (TCPCTL, Daemon, activated, check, connect, echo_roundtrip, free_port, main, refused,
                      wait_for)

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


def test_promtool_and_openmetrics():
    """Prometheus' own checker (Debian's prometheus package) finds nothing
    to say about the text format; OpenMetrics (which promtool 2.42's
    "check metrics" does not read) has its EOF, its counter families without
    _total and an info family."""
    promtool = shutil.which("promtool")
    check(promtool, "promtool is missing: ./dev.sh installs the prometheus package")
    d, held = busy_daemon()
    for args in ([], ["--openmetrics"]):
        p = subprocess.run([TCPCTL, "-s", d.control, "metrics", *args], capture_output=True, text=True, timeout=10)
        check(p.returncode == 0, p.stderr)
        if args:
            check(p.stdout.endswith("# EOF\n") and p.stdout.count("# EOF") == 1, "OpenMetrics ends with # EOF")
            check("# TYPE tcpd_connections counter" in p.stdout and "tcpd_connections_total{" in p.stdout,
                  "a counter's family is named without _total in OpenMetrics")
            check("# TYPE tcpd_build info\ntcpd_build_info{" in p.stdout, "an info family")
            check(samples(p.stdout.replace("# EOF\n", "")), "its samples parse")
            continue
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


def get(url, accept=None, method="GET"):
    req = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def test_scrape_endpoint():
    port = free_port()
    d = Daemon(SETTINGS + f"[metrics]\nlisten = 127.0.0.1:{port}\n")
    url = f"http://127.0.0.1:{port}/metrics"
    check(d.status()["metrics"] == f"127.0.0.1:{port}", f"{d.status()['metrics']}")
    s = connect(ports(d)["echo"])
    echo_roundtrip(s, b"abc")
    code, ctype, body = get(url)
    check(code == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8", f"{code} {ctype}")
    m = samples(body)
    check(m[("tcpd_connections_open", frozenset({("service", "echo")}))] == 1, body)
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    check(lint.returncode == 0, lint.stdout + lint.stderr)
    code, ctype, body = get(url, accept="application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    check(code == 200 and ctype.startswith("application/openmetrics-text") and body.endswith("# EOF\n"),
          f"{code} {ctype}")
    check(get(f"http://127.0.0.1:{port}/")[0] == 404, "only /metrics")
    check(get(url, method="POST")[0] == 405, "only GET and HEAD")
    check(get(url, method="HEAD")[0] == 200, "HEAD")
    s.close()
    d.stop()


def test_scrape_allow_and_deny():
    port = free_port()
    d = Daemon(f"[echo]\nlisten = 127.0.0.1:0\n[metrics]\nlisten = 127.0.0.1:{port}\n"
               "allow = 127.0.0.0/8\ndeny = 127.0.0.2\n")
    code, _, _ = get(f"http://127.0.0.1:{port}/metrics")
    check(code == 200, "127.0.0.1 allowed")
    c = socket.socket()
    c.bind(("127.0.0.2", 0))
    c.settimeout(5)
    c.connect(("127.0.0.1", port))
    c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    try:
        got = c.recv(100)
    except ConnectionResetError:
        got = b""
    check(got == b"", f"127.0.0.2 denied: {got!r}")
    c.close()
    check("refused a scrape from 127.0.0.2" in d.stderr(), d.stderr())
    # a reload narrows it at once
    d.write_config(f"[echo]\nlisten = 127.0.0.1:0\n[metrics]\nlisten = 127.0.0.1:{port}\nallow = 10.0.0.0/8\n")
    d.ctl("reload")
    try:
        code = get(f"http://127.0.0.1:{port}/metrics")[0]
    except (urllib.error.URLError, ConnectionError):
        code = None
    check(code is None, "loopback no longer allowed after the reload")
    d.stop()


def test_scrape_socket_from_systemd():
    port = free_port()
    # systemd-socket-activate starts tcpd at the first connection: this one
    d = Daemon("[echo]\nlisten =\n", activate=[f"127.0.0.1:{port}"], fdnames=["metrics"], wait_ready=False)
    got = []

    def scraped():
        try:
            got.append(get(f"http://127.0.0.1:{port}/metrics"))
            return True
        except (urllib.error.URLError, ConnectionError):
            return False  # systemd-socket-activate is not listening yet

    wait_for(scraped, what="a scrape through systemd's socket")
    code, _, body = got[0]
    d.wait_notify("READY=1")
    check(code == 200 and "tcpd_build_info" in body, f"{code}")
    check(d.status()["metrics"] == f"127.0.0.1:{port}", f"{d.status()['metrics']}")
    d.stop()


def test_prometheus_scrapes_tcpd():
    """Debian's prometheus, started here on loopback with a bounded scrape
    configuration, scrapes tcpd; tcpd_connections_open comes back through
    Prometheus' HTTP query API."""
    prometheus = shutil.which("prometheus")
    check(prometheus, "prometheus is missing: ./dev.sh installs it")
    port, web = free_port(), free_port()
    d = Daemon("[echo]\nlisten = 127.0.0.1:0\n" + f"[metrics]\nlisten = 127.0.0.1:{port}\n")
    held = [connect(ports(d)["echo"]) for _ in range(4)]
    work = tempfile.mkdtemp(prefix="tcpd-prom-")
    conf = os.path.join(work, "prometheus.yml")
    with open(conf, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                f"scrape_configs:\n  - job_name: tcpd\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
    p = subprocess.Popen([prometheus, f"--config.file={conf}", f"--storage.tsdb.path={work}/data",
                          f"--web.listen-address=127.0.0.1:{web}", "--storage.tsdb.retention.time=1h"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(work, "log"), "wb"))
    try:
        q = f"http://127.0.0.1:{web}/api/v1/query?query=tcpd_connections_open"

        def value():
            try:
                with urllib.request.urlopen(q, timeout=2) as r:
                    res = json.loads(r.read())["data"]["result"]
            except (OSError, ValueError, KeyError):
                return None
            return res[0]["value"][1] if res else None

        wait_for(lambda: value() == "4", timeout=30, what="tcpd_connections_open = 4 in Prometheus")
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/targets", timeout=5) as r:
            targets = json.loads(r.read())["data"]["activeTargets"]
        check(targets and targets[0]["health"] == "up" and not targets[0]["lastError"], f"{targets}")
    finally:
        p.send_signal(signal.SIGTERM)  # our own child, by PID
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    for s in held:
        s.close()
    d.stop()


if __name__ == "__main__":
    main([test_values_match_status, test_promtool_and_openmetrics, test_output_file_is_written_whole,
          test_scrape_cost_does_not_grow_with_connections, test_scrape_endpoint, test_scrape_allow_and_deny,
          test_scrape_socket_from_systemd, test_prometheus_scrapes_tcpd])
