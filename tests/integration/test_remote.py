#!/usr/bin/env python3
"""tcpctl -H HOST: tcpctl on one host talking to tcpd on another through
"ssh -xT HOST tcpctl bridge", as systemctl -H does through
systemd-stdio-bridge. The other host is Debian's sshd, started here by PID
on loopback with keys made for the test; nothing leaves the machine."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tcpdtest import TCPCTL, Daemon, check, connect, echo_roundtrip, free_port, main, reads_eof, wait_for

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"


class Sshd:
    """sshd -D on 127.0.0.1:port, root logins by a key of the test's own; an
    ssh configuration that names it "tcpdtest" (and "downhost", a closed
    port)."""

    def __init__(self, setenv=None):
        self.dir = tempfile.mkdtemp(prefix="tcpd-ssh-")
        self.port = free_port()
        d = self.dir
        for key in ("host", "user"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{key}"], check=True,
                           timeout=30)
        shutil.copy(f"{d}/user.pub", f"{d}/authorized_keys")
        with open(f"{d}/sshd_config", "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile {d}/sshd.pid\n"
                    f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                    "PrintMotd no\nX11Forwarding no\nAcceptEnv none\n" +
                    (f"SetEnv {setenv}\n" if setenv else ""))
        with open(f"{d}/ssh_config", "w") as f:
            f.write(self.host_block("tcpdtest") +
                    f"Host downhost\n  HostName 127.0.0.1\n  Port {free_port()}\n  BatchMode yes\n"
                    "  LogLevel ERROR\n")
        # sshd's privilege separation directory; made here only if missing
        self.made_run = not os.path.isdir("/run/sshd")
        if self.made_run:
            os.makedirs("/run/sshd", mode=0o755)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(f"{d}/sshd.log", "wb"))
        wait_for(self.listening, what="sshd listening")
        # the remote tcpctl: this build's, on the same machine
        self.env = dict(os.environ, TCPCTL_SSH=f"ssh -F {d}/ssh_config", TCPCTL_REMOTE=TCPCTL)

    def host_block(self, alias):
        """The ssh configuration that names this sshd alias."""
        d = self.dir
        return (f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n  User root\n"
                f"  IdentityFile {d}/user\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
                "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n")

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def ctl(self, *args, ok=(0,)):
        p = subprocess.run([TCPCTL, *args], capture_output=True, text=True, timeout=60, env=self.env)
        check(p.returncode in ok, f"tcpctl {' '.join(args)} exited {p.returncode}: {p.stderr}{p.stdout}")
        return p

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.made_run:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_bridge_speaks_varlink():
    """tcpctl bridge joins standard input and output to the control socket:
    a Varlink call in, its reply out, and the end when input ends."""
    d = Daemon(LISTEN)
    p = subprocess.run([TCPCTL, "-s", d.control, "bridge"], input=b'{"method":"org.tcpd.Daemon.GetStatus"}\0'
                       b'{"method":"org.varlink.service.GetInfo"}\0', capture_output=True, timeout=10)
    check(p.returncode == 0, p.stderr.decode())
    replies = [json.loads(x) for x in p.stdout.split(b"\0") if x]
    check(len(replies) == 2 and replies[0]["parameters"]["pid"] == d.proc.pid and
          replies[1]["parameters"]["product"] == "tcpd", f"{replies}")
    p = subprocess.run([TCPCTL, "-s", os.path.join(d.dir, "nope"), "bridge"], input=b"", capture_output=True,
                       timeout=10)
    check(p.returncode == 1 and "cannot connect" in p.stderr.decode(), p.stderr.decode())
    d.stop()


def test_host_over_ssh():
    sshd = Sshd()
    d = Daemon(LISTEN)
    try:
        s = connect(d.port())
        echo_roundtrip(s, b"remote")
        st = json.loads(sshd.ctl("-H", "tcpdtest", "-s", d.control, "--json", "status").stdout)
        check(st["pid"] == d.proc.pid and st["connections_open"] == 1, f"{st}")
        table = sshd.ctl("--host=tcpdtest", "-s", d.control, "list").stdout
        check(str(s.getsockname()[1]) in table, table)
        conn = json.loads(sshd.ctl("-H", "tcpdtest", "-s", d.control, "--json", "list").stdout)[0]
        # root over ssh: the remote side's rules make it an admin there
        out = sshd.ctl("-H", "tcpdtest", "-s", d.control, "kick", str(conn["id"])).stdout
        check("kicked 1 connection" in out, out)
        check(reads_eof(s), "the kicked client sees the end")
        metrics = sshd.ctl("-H", "tcpdtest", "-s", d.control, "metrics").stdout
        check("tcpd_connections_kicked_total 1" in metrics, metrics)
        # a host that does not answer: ssh's own message, exit 1
        p = sshd.ctl("-H", "downhost", "status", ok=(1,))
        check("ssh" in p.stderr and "downhost" in p.stderr, p.stderr)
        # an instance name goes along as an option (sshd passes no environment)
        p = sshd.ctl("-H", "tcpdtest", "-I", "nosuch", "status", ok=(1,))
        check("/run/tcpd/nosuch/control" in p.stderr, p.stderr)
    finally:
        d.stop()
        sshd.stop()


def test_several_hosts():
    """-H a -H b: one view. Two "hosts" are two sshds on loopback, each
    giving its sessions another tcpd's socket (sshd's SetEnv), and a third
    that is down: status has a line per host and the totals, list a HOST
    column in -H's order, kick --peer acts on all, --json says the host,
    and the host that is down is reported while the others answer (exit 1)."""
    d1, d2 = Daemon(LISTEN), Daemon(LISTEN)
    a = Sshd(setenv=f"TCPD_CONTROL_SOCKET={d1.control}")
    b = Sshd(setenv=f"TCPD_CONTROL_SOCKET={d2.control}")
    clients = []
    try:
        cfg = os.path.join(a.dir, "fleet_config")
        with open(cfg, "w") as f:
            f.write(a.host_block("web1") + b.host_block("web2") +
                    f"Host down1\n  HostName 127.0.0.1\n  Port {free_port()}\n  BatchMode yes\n  LogLevel ERROR\n")
        env = dict(a.env, TCPCTL_SSH=f"ssh -F {cfg}")

        def ctl(*args, ok=(0,)):
            p = subprocess.run([TCPCTL, *args], capture_output=True, text=True, timeout=60, env=env)
            check(p.returncode in ok, f"tcpctl {' '.join(args)} exited {p.returncode}: {p.stderr}{p.stdout}")
            return p

        for port, n in ((d1.port(), 2), (d2.port(), 3)):
            for _ in range(n):
                s = connect(port)
                echo_roundtrip(s, b"fleet")
                clients.append(s)

        out = ctl("-H", "web1", "-H", "web2", "status").stdout
        lines = out.splitlines()
        check(lines[0].split()[:4] == ["HOST", "STATE", "UP", "OPEN"], out)
        row = {ln.split()[0]: ln.split() for ln in lines[1:]}
        check(row["web1"][1] == "running" and row["web1"][3] == "2" and row["web2"][3] == "3", out)
        check(row["total"][1:4] == ["2", "of", "2"] and "5" in row["total"], out)

        st = json.loads(ctl("-H", "web1,web2", "--json", "status").stdout)
        check([x["host"] for x in st] == ["web1", "web2"] and st[0]["pid"] == d1.proc.pid and
              st[1]["pid"] == d2.proc.pid, f"{st}")

        # a host that is down: named, the others answer, exit 1
        p = ctl("-H", "web1", "-H", "down1", "-H", "web2", "status", ok=(1,))
        check("down1" in p.stderr, p.stderr)
        row = {ln.split()[0]: ln.split() for ln in p.stdout.splitlines()[1:]}
        check(row["down1"][1] == "failed" and row["web2"][3] == "3", p.stdout)
        check(row["total"][1:4] == ["2", "of", "3"], p.stdout)
        st = json.loads(ctl("-H", "web1,down1", "--json", "status", ok=(1,)).stdout)
        check(st[1]["host"] == "down1" and "error" in st[1] and st[0]["connections_open"] == 2, f"{st}")

        # list: a HOST column, web1's rows first, each host's in id order
        out = ctl("-H", "web2", "-H", "web1", "list").stdout
        lines = out.splitlines()
        check(lines[0].split()[0] == "HOST" and len(lines) == 6, out)
        hosts = [ln.split()[0] for ln in lines[1:]]
        check(hosts == ["web2"] * 3 + ["web1"] * 2, out)
        conns = json.loads(ctl("-H", "web1", "-H", "web2", "--json", "list").stdout)
        check([c["host"] for c in conns] == ["web1"] * 2 + ["web2"] * 3, f"{conns}")
        check(list(conns[0])[0] == "host", "host is the first member")
        srt = json.loads(ctl("-H", "web1", "-H", "web2", "--json", "list", "--sort", "peer").stdout)
        ports = [c["peer_port"] for c in srt]
        check(ports == sorted(ports) and len(srt) == 5, f"{ports}")

        # kick by id needs one host; a selection goes to all
        p = ctl("-H", "web1", "-H", "web2", "kick", "1", ok=(2,))
        check("one -H" in p.stderr, p.stderr)
        p = ctl("-H", "web1", "-H", "web2", "monitor", ok=(2,))
        check("one host" in p.stderr, p.stderr)
        out = ctl("-H", "web1", "-H", "web2", "kick", "--peer", "127.0.0.1").stdout
        check("web1: kicked 2 connections" in out and "web2: kicked 3 connections" in out and
              "kicked 5 connections on 2 of 2 hosts" in out, out)
        for s in clients:
            check(reads_eof(s), "every kicked client sees the end")
        p = ctl("-H", "web1", "-H", "web2", "--json", "kick", "--all", ok=(1,))
        check([x["kicked"] for x in json.loads(p.stdout)] == [0, 0], p.stdout)
        out = ctl("-H", "web1", "-H", "web2", "reload").stdout
        check(out == "web1: reloaded\nweb2: reloaded\n", out)
    finally:
        for s in clients:
            s.close()
        a.stop()
        b.stop()
        d1.stop()
        d2.stop()


if __name__ == "__main__":
    main([test_bridge_speaks_varlink, test_host_over_ssh, test_several_hosts])
