#!/usr/bin/env python3
"""tcpctl against a running tcpd, as an admin uses it: status, list, kick,
reload, permissions, usage errors and exit codes."""

import os
import shutil
import subprocess

from tcpdtest import TCPCTL, TCPD, Daemon, check, connect, echo_roundtrip, fill_until_blocked, main, read_to_eof, reads_eof, \
    wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"


def test_status_human_and_json():
    d = Daemon(LISTEN)
    port = d.port()
    p = d.ctl("status")
    check("tcpd " in p.stdout and "running" in p.stdout, p.stdout)
    check(f"127.0.0.1:{port}" in p.stdout and "echo" in p.stdout, p.stdout)
    check("connections: 0 open" in p.stdout, p.stdout)
    st = d.status()
    check(st["pid"] == d.proc.pid, "status names the daemon's pid")
    check(st["connections_open"] == 0 and st["state"] == "running", str(st))
    d.stop()


def test_list_shows_real_peers_and_counts():
    d = Daemon(LISTEN)
    port = d.port()
    socks = [connect(port) for _ in range(5)]
    for i, s in enumerate(socks):
        echo_roundtrip(s, b"x" * (100 * (i + 1)))
    conns = d.connections()
    check(len(conns) == 5, f"5 connections expected, got {len(conns)}")
    by_port = {c["peer_port"]: c for c in conns}
    for i, s in enumerate(socks):
        lport = s.getsockname()[1]
        check(lport in by_port, f"client port {lport} not listed")
        c = by_port[lport]
        check(c["bytes_in"] == 100 * (i + 1) and c["bytes_out"] == 100 * (i + 1), str(c))
        check(c["peer"] == f"127.0.0.1:{lport}" and c["local"] == f"127.0.0.1:{port}", str(c))
    ids = [c["id"] for c in conns]
    check(ids == sorted(ids) and len(set(ids)) == 5, f"ids {ids}")
    table = d.ctl("list").stdout.splitlines()
    check(table[0].split() == ["ID", "LOCAL", "PEER", "SERVICE", "AGE", "IDLE", "IN", "OUT", "STATE"], table[0])
    check(len(table) == 6, "a header and one row per connection")
    for s in socks:
        check(any(f":{s.getsockname()[1]} " in row for row in table[1:]), "row for each client")
        s.close()
    wait_for(lambda: d.status()["connections_open"] == 0, what="clients gone")
    check(d.ctl("list").stdout.strip() == "no connections", "empty list says so")
    check(d.ctl("list", json_out=True) == [], "empty JSON list")
    d.stop()


def test_kick_by_id_and_by_cidr():
    d = Daemon(LISTEN)
    port = d.port()
    a = connect(port, source="127.0.0.2")
    b = connect(port, source="127.0.0.3")
    c = connect(port, source="127.0.0.3")
    keep = connect(port, source="127.0.0.4")
    for s in (a, b, c, keep):
        echo_roundtrip(s, b"ping")
    conns = {x["peer_port"]: x["id"] for x in d.connections()}
    out = d.ctl("kick", str(conns[a.getsockname()[1]])).stdout
    check(out.startswith("kicked 1 connection:"), out)
    check(reads_eof(a), "kicked client reads EOF")
    r = d.ctl("kick", "--peer", "127.0.0.3/32", json_out=True)
    check(r["kicked"] == 2 and sorted(r["ids"]) == sorted([conns[b.getsockname()[1]], conns[c.getsockname()[1]]]),
          str(r))
    check(reads_eof(b) and reads_eof(c), "clients of the CIDR read EOF")
    echo_roundtrip(keep, b"still here")
    p = d.ctl("kick", "99999", ok=(1,))
    check("no connection matched" in p.stdout, p.stdout)
    st = d.status()
    check(st["connections_kicked"] == 3 and st["connections_open"] == 1, str(st))
    check(d.ctl("kick", "--all", json_out=True)["kicked"] == 1, "kick --all")
    check(reads_eof(keep), "kick --all closes the rest")
    d.stop()


def test_kick_sends_fin_not_reset():
    """A kicked client that was not reading gets every byte tcpd had read
    from it (what was sent and what was still owed), then EOF."""
    d = Daemon(LISTEN)
    s = connect(d.port())
    fill_until_blocked(s)
    c = d.connections()[0]
    check(c["state"] == "blocked", f"state {c['state']}")
    d.ctl("kick", str(c["id"]))
    got = read_to_eof(s)  # raises ConnectionResetError on a reset
    check(got == c["bytes_in"], f"read {got} bytes, tcpd had read {c['bytes_in']}")
    s.close()
    d.stop()


def test_non_admin_can_list_but_not_kick():
    d = Daemon("[tcpd]\ncontrol_socket_mode = 0666\n" + LISTEN)
    # tcpctl itself must be reachable for nobody: the build tree may not be
    ctl = os.path.join(d.dir, "tcpctl")
    shutil.copy(TCPCTL, ctl)
    os.chmod(ctl, 0o755)
    s = connect(d.port())
    echo_roundtrip(s, b"hi")

    def as_nobody(*args):
        return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ctl, "-s",
                               d.control, *args], capture_output=True, text=True, timeout=10)
    p = as_nobody("--json", "list")
    check(p.returncode == 0 and '"peer"' in p.stdout, f"nobody can list: {p.returncode} {p.stderr}")
    p = as_nobody("kick", "--all")
    check(p.returncode == 1 and "permission denied" in p.stderr, f"nobody cannot kick: {p.returncode} {p.stderr}")
    p = as_nobody("reload")
    check(p.returncode == 1 and "permission denied" in p.stderr, f"nobody cannot reload: {p.stderr}")
    echo_roundtrip(s, b"not kicked")
    check(d.status()["connections_kicked"] == 0, "nothing was kicked")
    s.close()
    d.stop()


def test_usage_errors_and_exit_codes():
    d = Daemon(LISTEN)
    for args in (["frobnicate"], ["kick"], ["kick", "abc"], ["kick", "--all", "3"], ["list", "--peer", "nonsense"],
                 ["status", "extra"], ["--bogus-option", "status"], []):
        p = subprocess.run([TCPCTL, "-s", d.control, *args], capture_output=True, text=True, timeout=10)
        check(p.returncode == 2, f"tcpctl {args} exited {p.returncode}, expected 2")
        check(p.stderr.startswith("tcpctl: ") or "Try 'tcpctl --help'" in p.stderr, p.stderr)
    p = subprocess.run([TCPCTL, "--help"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and "kick" in p.stdout and "--json" in p.stdout, "--help lists commands and options")
    p = subprocess.run([TCPCTL, "--version"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 0 and p.stdout.startswith("tcpctl "), "--version")
    missing = os.path.join(d.dir, "nothing-here")
    p = subprocess.run([TCPCTL, "-s", missing, "status"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and f"cannot connect to {missing}" in p.stderr and "is tcpd running" in p.stderr,
          p.stderr)
    p = subprocess.run([TCPCTL, "status"], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, TCPD_CONTROL_SOCKET=d.control))
    check(p.returncode == 0, "TCPD_CONTROL_SOCKET picks the socket")
    d.stop()


def test_reload_command():
    d = Daemon(LISTEN)
    check(d.ctl("reload").stdout.strip() == "reloaded", "reload says so")
    with open(d.config, "a") as f:
        f.write("[tcpd]\nbacklog = lots\n")
    p = d.ctl("reload", ok=(1,))
    check("reload failed" in p.stderr and f"{d.config}:" in p.stderr and "backlog" in p.stderr, p.stderr)
    s = connect(d.port())
    echo_roundtrip(s, b"still serving after a failed reload")
    s.close()
    d.stop()


def _tcpctl(*args, env=None):
    return subprocess.run([TCPCTL, *args], capture_output=True, text=True, timeout=10,
                          env=dict(os.environ, **(env or {})))


def test_options_anywhere_as_systemctl():
    """Long options work anywhere; before the command a letter is global,
    after it the command's own letters win; one line for one mistake."""
    d = Daemon(LISTEN)
    s = connect(d.port())
    echo_roundtrip(s, b"x")
    for args in (["list", "--json"], ["list", "-j"], ["--json", "list"], ["list", "--json", "--sort", "id"],
                 ["list", "-ij"], ["list", "--no-pager", "--json"]):
        p = _tcpctl("-s", d.control, *args)
        check(p.returncode == 0 and p.stdout.lstrip().startswith("["), f"tcpctl {args}: {p.returncode} {p.stderr}")
    p = _tcpctl("status", "--json", "--socket", d.control)
    check(p.returncode == 0 and '"pid"' in p.stdout, f"status --json --socket: {p.stderr}")
    p = _tcpctl("status", "-s", d.control, "--no-pager")
    check(p.returncode == 0 and "running" in p.stdout, f"-s after a command without its own -s: {p.stderr}")
    p = _tcpctl("--socket=" + d.control, "status", "-j")
    check(p.returncode == 0 and '"pid"' in p.stdout, p.stderr)
    # probe's -s is its size, not the socket
    p = _tcpctl("probe", "-c", "1", "-i", "0", "-s", "16", f"127.0.0.1:{d.port()}")
    check(p.returncode == 0 and "16B messages" in p.stdout, f"probe -s is the size: {p.stdout}{p.stderr}")
    for args, want in ((["list", "--bogus"], "list: unknown option '--bogus'"),
                       (["list", "-x"], "list: unknown option '-x'"),
                       (["list", "--sort"], "list: '--sort' needs a value"),
                       (["--frob", "status"], "unknown option '--frob'")):
        p = _tcpctl("-s", d.control, *args)
        errors = [line for line in p.stderr.splitlines() if line.startswith("tcpctl")]
        check(p.returncode == 2 and errors == ["tcpctl: " + want], f"tcpctl {args}: {p.returncode} {p.stderr!r}")
    s.close()
    d.stop()


def test_errors_in_words():
    d = Daemon("[tcpd]\ncontrol_socket_mode = 0666\n" + LISTEN)
    p = _tcpctl("-s", d.control, "list", "--service", "bogus")
    check(p.returncode == 2 and "no service named 'bogus'" in p.stderr and "echo" in p.stderr, p.stderr)
    check("org.varlink" not in p.stderr, p.stderr)
    p = _tcpctl("-s", d.control, "kick", "3", "--peer", "127.0.0.1")
    check(p.returncode == 2 and "not two of them" in p.stderr, p.stderr)
    # errno survives the colour check, with TERM set and stderr not a terminal
    missing = os.path.join(d.dir, "nope")
    p = _tcpctl("-s", missing, "status", env={"TERM": "xterm"})
    check("No such file or directory" in p.stderr, p.stderr)
    ctl = os.path.join(d.dir, "tcpctl")
    shutil.copy(TCPCTL, ctl)
    os.chmod(ctl, 0o755)
    os.chmod(d.control, 0o600)
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ctl, "-s", d.control,
                        "status"], capture_output=True, text=True, timeout=10, env=dict(os.environ, TERM="xterm"))
    check(p.returncode == 1 and "Permission denied" in p.stderr and "group root" in p.stderr and
          "SocketGroup=" in p.stderr, p.stderr)
    os.chmod(d.control, 0o666)
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ctl, "-s", d.control,
                        "kick", "--all"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 1 and "membership of group root" in p.stderr, p.stderr)
    d.stop()


def test_log_level_names_and_shape():
    d = Daemon(LISTEN)
    for name, shown in (("warn", "warning"), ("error", "err"), ("debug", "debug")):
        r = d.ctl("log-level", name, json_out=True)
        check(r["level"] == shown, f"{name}: {r}")
        check(d.ctl("log-level", json_out=True) == {"level": shown}, "reading has the same shape as setting")
    p = d.ctl("log-level", "loud", ok=(2,))
    check("warning (warn)" in p.stderr, p.stderr)
    d.stop()


def test_check_config():
    """tcpctl check-config runs the daemon's own check, wherever the daemon
    is installed: its output and its exit status."""
    d = Daemon(LISTEN)
    env = {"TCPD_DAEMON": TCPD}
    p = _tcpctl("check-config", d.config, env=env)
    check(p.returncode == 0 and "settings are valid" in p.stderr and "[echo]" in p.stdout, p.stderr)
    bad = os.path.join(d.dir, "bad.ini")
    with open(bad, "w") as f:
        f.write("[tcpd]\nmax_conections = 10\n")
    p = _tcpctl("check-config", bad, env=env)
    check(p.returncode == 1 and f"{bad}:2: unknown key 'max_conections'" in p.stderr and
          "did you mean 'max_connections'?" in p.stderr, p.stderr)
    p = _tcpctl("check-config", bad, "extra", env=env)
    check(p.returncode == 2, p.stderr)
    p = _tcpctl("check-config", bad, env={"TCPD_DAEMON": os.path.join(d.dir, "no-daemon")})
    check(p.returncode == 1 and "cannot run" in p.stderr and "no-daemon" in p.stderr, p.stderr)
    d.stop()


def test_instance():
    """-I NAME (or TCPD_INSTANCE) picks tcpd@NAME.service's control socket
    and settings; -s still wins; a name that is no instance name is a usage
    error."""
    p = _tcpctl("-I", "web", "status", env={"TCPD_CONTROL_SOCKET": ""})
    check(p.returncode == 1 and "/run/tcpd/web/control" in p.stderr, p.stderr)
    p = _tcpctl("status", env={"TCPD_INSTANCE": "mail"})
    check(p.returncode == 1 and "/run/tcpd/mail/control" in p.stderr, p.stderr)
    p = _tcpctl("status", "--instance=x", env={})
    check(p.returncode == 1 and "/run/tcpd/x/control" in p.stderr, f"an option after the command: {p.stderr}")
    for bad in ("../etc", "a/b", ".hidden", ""):
        p = _tcpctl("-I", bad, "status")
        check(p.returncode == 2 and "instance name" in p.stderr, f"-I {bad!r}: {p.stderr}")
    d = Daemon(LISTEN)
    p = _tcpctl("-I", "web", "-s", d.control, "--json", "status")
    check(p.returncode == 0 and '"connections_open"' in p.stdout, f"-s wins over -I: {p.stderr}")
    # check-config without a file reads the instance's NAME.ini
    p = _tcpctl("-I", "nosuchinstance", "check-config", env={"TCPD_DAEMON": TCPD})
    check(p.returncode == 1 and "nosuchinstance.ini" in p.stderr, p.stderr)
    d.stop()


if __name__ == "__main__":
    main([test_status_human_and_json, test_list_shows_real_peers_and_counts, test_kick_by_id_and_by_cidr,
          test_kick_sends_fin_not_reset, test_non_admin_can_list_but_not_kick, test_usage_errors_and_exit_codes, test_reload_command,
          test_options_anywhere_as_systemctl, test_errors_in_words, test_log_level_names_and_shape,
          test_check_config, test_instance])
