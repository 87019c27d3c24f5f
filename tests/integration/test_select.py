#!/usr/bin/env python3
"""Daily operations: list and kick by selection (--service, --idle-over,
--older-than, with --peer), list --sort, and log-level read and set."""

import os
import shutil
import subprocess
import time

from tcpdtest import TCPCTL, Daemon, check, connect, echo_roundtrip, main, reads_eof, wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"


def ports(rows):
    return [r["peer_port"] for r in rows]


def test_idle_over_and_older_than():
    d = Daemon("[tcpd]\nadmin_group = root\n" + LISTEN)
    port = d.port()
    old = connect(port)
    echo_roundtrip(old, b"first")
    time.sleep(1.2)
    young = connect(port)
    echo_roundtrip(young, b"second")
    busy = old  # old is older, but active now
    echo_roundtrip(busy, b"again")
    idle_ports = ports(d.ctl("list", "--idle-over", "1s", json_out=True))
    check(idle_ports == [], f"nothing idle 1s yet: {idle_ports}")
    older = ports(d.ctl("list", "--older-than", "1s", json_out=True))
    check(older == [old.getsockname()[1]], f"--older-than 1s: {older}")
    time.sleep(1.2)
    echo_roundtrip(young, b"keep young busy")
    idle = ports(d.ctl("list", "--idle-over", "1s", json_out=True))
    check(idle == [old.getsockname()[1]], f"--idle-over 1s: {idle}")
    table = d.ctl("list", "--idle-over", "1s").stdout
    check(str(old.getsockname()[1]) in table and str(young.getsockname()[1]) not in table, table)
    both = ports(d.ctl("list", "--older-than", "1s", "--idle-over", "1s", "--peer", "127.0.0.1", json_out=True))
    check(both == [old.getsockname()[1]], f"combined selection: {both}")
    none = d.ctl("list", "--older-than", "1s", "--peer", "10.0.0.0/8").stdout
    check("no connections" in none, none)
    # kick by selection: only the idle one goes
    r = d.ctl("kick", "--idle-over", "1s", json_out=True)
    check(r["kicked"] == 1, f"kick --idle-over: {r}")
    check(reads_eof(old), "the idle connection was closed")
    echo_roundtrip(young, b"the busy one stays")
    p = d.ctl("kick", "--idle-over", "1h", ok=(1,))
    check("no connection matched" in p.stdout, p.stdout)
    d.stop()


def resets(s, timeout=5):
    """True if the peer reset s (rather than closing it with a FIN)."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return False
    except ConnectionResetError:
        return True


def test_kick_reset():
    d = Daemon("[tcpd]\nadmin_group = root\n" + LISTEN)
    port = d.port()
    fin, rst = connect(port), connect(port)
    for s in (fin, rst):
        echo_roundtrip(s, b"hello")
    rows = {r["peer_port"]: r["id"] for r in d.ctl("list", json_out=True)}
    r = d.ctl("kick", "--reset", str(rows[rst.getsockname()[1]]), json_out=True)
    check(r["kicked"] == 1, f"{r}")
    check(resets(rst), "kick --reset sends an RST")
    d.ctl("kick", str(rows[fin.getsockname()[1]]))
    check(not resets(fin), "a plain kick closes with a FIN")
    wait_for(lambda: "with a reset" in d.stderr(), what="the reset kick is logged")
    d.stop()


def test_service_selection():
    d = Daemon("[tcpd]\nadmin_group = root\n" + LISTEN)
    s = connect(d.port())
    echo_roundtrip(s, b"x")
    check(len(d.ctl("list", "--service", "echo", json_out=True)) == 1, "echo selects the echo connection")
    check("no connections" in d.ctl("list", "--service", "chargen").stdout, "no chargen connection")
    p = d.ctl("list", "--service", "gopher", ok=(2,))  # a usage error
    check("service" in p.stderr, f"an unknown service is refused by name: {p.stderr}")
    d.stop()


def test_sort():
    d = Daemon(LISTEN)
    port = d.port()
    conns = []
    for size in (300, 100, 200):
        s = connect(port)
        echo_roundtrip(s, b"x" * size)
        conns.append(s)
    by_in = d.ctl("list", "--sort", "in", json_out=True)
    check([r["bytes_in"] for r in by_in] == [300, 200, 100], f"--sort in, largest first: {by_in}")
    by_id = d.ctl("list", "--sort", "id", json_out=True)
    check([r["id"] for r in by_id] == sorted(r["id"] for r in by_id), "--sort id ascending")
    by_peer = d.ctl("list", "--sort", "peer", json_out=True)
    check(ports(by_peer) == sorted(ports(by_peer)), f"--sort peer: {ports(by_peer)}")
    table = d.ctl("list", "--sort", "in").stdout.splitlines()
    check([line.split()[6] for line in table[1:]] == ["300B", "200B", "100B"], "\n".join(table))
    time.sleep(1.1)
    echo_roundtrip(conns[2], b"y")
    by_idle = d.ctl("list", "--sort", "idle", json_out=True)
    check(by_idle[-1]["peer_port"] == conns[2].getsockname()[1], "the just-active one is least idle")
    d.stop()


def test_tcp_info():
    d = Daemon(LISTEN)
    port = d.port()
    conns = [connect(port) for _ in range(3)]
    for s in conns:
        echo_roundtrip(s, b"x" * 1000)
    plain = d.ctl("list", json_out=True)
    check(all("tcp" not in c for c in plain), "no TCP_INFO unless asked")
    check("RTT" not in d.ctl("list").stdout, "no TCP columns unless asked")
    info = d.ctl("list", "-i", json_out=True)
    for c in info:
        t = c.get("tcp")
        check(t and t["rtt_usec"] > 0 and t["cwnd"] > 0 and t["retransmits"] == 0 and t["unacked"] >= 0,
              f"TCP_INFO of a loopback connection: {c}")
    table = d.ctl("list", "--tcp-info").stdout.splitlines()
    check(table[0].split() == ["ID", "LOCAL", "PEER", "SERVICE", "AGE", "IDLE", "IN", "OUT", "RTT", "RTTVAR",
                               "RETRANS", "CWND", "UNACKED", "STATE"], table[0])
    check(all(line.split()[8].endswith("ms") for line in table[1:]), "\n".join(table))
    by_rtt = d.ctl("list", "--sort", "rtt", json_out=True)
    rtts = [c["tcp"]["rtt_usec"] for c in by_rtt]
    check(rtts == sorted(rtts, reverse=True), f"--sort rtt asks for TCP_INFO and orders largest first: {rtts}")
    d.stop()


def test_selection_usage_errors():
    d = Daemon(LISTEN)
    for args in (["list", "--idle-over", "0"], ["list", "--idle-over", "soon"], ["list", "--sort", "size"],
                 ["list", "--service", "Echo!"], ["kick", "1", "--idle-over", "1s"], ["kick", "--all", "--peer",
                                                                                       "127.0.0.1"],
                 ["log-level", "verbose"], ["log-level", "info", "debug"]):
        p = d.ctl(*args, ok=(2,))
        check(p.stderr.strip(), f"tcpctl {' '.join(args)}: a message")
    d.stop()


def test_log_level():
    d = Daemon("[tcpd]\nadmin_group = root\nlog_connections = yes\nlog_level = info\n"
               "control_socket_mode = 0666\n" + LISTEN)
    port = d.port()
    check(d.ctl("log-level").stdout.strip() == "info", "reads the level from the settings")
    out = d.ctl("log-level", "warning").stdout
    check(out.strip() == "log level warning (was info)", out)
    check(d.ctl("log-level").stdout.strip() == "warning", "reads back the new level")
    check(d.status()["log_level"] == "warning", "GetStatus says it too")
    wait_for(lambda: "log level set to warning" in d.stderr(), what="the change is logged")
    s = connect(port)
    echo_roundtrip(s, b"quiet")
    time.sleep(0.3)
    check(f":{s.getsockname()[1]}: connected" not in d.stderr(), "no connection line at warning")
    s.close()
    r = d.ctl("log-level", "info", json_out=True)
    check(r == {"level": "info", "previous": "warning"}, f"{r}")
    s = connect(port)
    echo_roundtrip(s, b"loud")
    wait_for(lambda: f"{s.getsockname()[1]}: connected" in d.stderr(), what="a connection line at info again")
    # only the admin group may set it; anyone may read it
    ctl = os.path.join(d.dir, "tcpctl")  # the build tree may not be reachable for nobody
    shutil.copy(TCPCTL, ctl)
    os.chmod(ctl, 0o755)

    def as_nobody(*args):
        return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ctl, "-s",
                               d.control, *args], capture_output=True, text=True, timeout=10)
    p = as_nobody("log-level", "debug")
    check(p.returncode == 1 and "permission denied" in p.stderr, f"{p.returncode} {p.stderr}")
    p = as_nobody("log-level")
    check(p.returncode == 0 and p.stdout.strip() == "info", f"nobody may read the level: {p.stderr}")
    # a reload applies log_level from the file again
    d.ctl("log-level", "debug")
    d.ctl("reload")
    check(d.ctl("log-level").stdout.strip() == "info", "reload restores the settings' level")
    d.stop()


if __name__ == "__main__":
    main([test_idle_over_and_older_than, test_kick_reset, test_service_selection, test_sort, test_tcp_info, test_selection_usage_errors,
          test_log_level])
