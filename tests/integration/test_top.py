#!/usr/bin/env python3
"""tcpctl top, driven as an admin would in a terminal: tmux runs it in a
detached 80x24 window of its own server (-L, a socket of this test's), keys
go in with send-keys and the screen comes back with capture-pane."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from tcpdtest import TCPCTL, Daemon, check, connect, echo_roundtrip, main, reads_eof, wait_for

LISTEN = "[tcpd]\nworkers = 2\n[echo]\nlisten = 127.0.0.1:0\n"


class Tmux:
    """A tmux server of the test's own, with one window running cmd."""

    def __init__(self, cmd, width=80, height=24):
        self.dir = tempfile.mkdtemp(prefix="tcpd-top-")
        self.sock = os.path.join(self.dir, "tmux")
        self.status = os.path.join(self.dir, "status")
        # the exit status, once tcpctl ends, in a file; the window then waits
        # for the test to read the last screen
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height),
                  f"{cmd}; echo $? > {self.status}; sleep 60")

    def tmux(self, *args):
        return subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                              timeout=10, env=dict(os.environ, TERM="xterm"))

    def screen(self):
        return self.tmux("capture-pane", "-p").stdout

    def keys(self, *keys):
        self.tmux("send-keys", *keys)

    def wait_screen(self, pred, what):
        last = [""]

        def seen():
            last[0] = self.screen()
            return pred(last[0])
        try:
            wait_for(seen, timeout=15, what=what)
        except Exception:
            print(last[0])
            raise
        return last[0]

    def exit_status(self):
        try:
            with open(self.status) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def stop(self):
        self.tmux("kill-server")
        shutil.rmtree(self.dir, ignore_errors=True)


def rows(screen):
    """The connection rows: the lines under the ID PEER ... header."""
    lines = screen.splitlines()
    for i, ln in enumerate(lines):
        if ln.split()[:2] == ["ID", "PEER"]:
            return [x.split() for x in lines[i + 1:] if x.strip() and x.split()[0].isdigit()]
    return []


def test_top_in_a_terminal():
    d = Daemon(LISTEN)
    port = d.port()
    clients = []
    for _ in range(5):
        s = connect(port)
        echo_roundtrip(s, b"hello")
        clients.append(s)
        time.sleep(0.05)  # distinct ages: the oldest is clients[0]
    busy, stop = clients[3], threading.Event()

    def traffic():  # bounded: stops when told, or after 60 s
        end = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < end:
            echo_roundtrip(busy, b"x" * 4096)
            time.sleep(0.01)
    th = threading.Thread(target=traffic, daemon=True)
    th.start()
    busy_port = str(busy.getsockname()[1])
    link_dir = tempfile.mkdtemp(prefix="tcpd-top-link-")
    link = os.path.join(link_dir, "control")
    os.symlink(d.control, link)
    t = Tmux(f"{TCPCTL} -s {link} top")
    d2 = None
    try:
        # by rate: the busy client first; the services line counts them all
        scr = t.wait_screen(lambda s: rows(s) and rows(s)[0][1].endswith(":" + busy_port), "the busy client on top")
        check("busiest connections by rate (of 5 open)" in scr, scr)
        svc = [ln.split() for ln in scr.splitlines() if ln.startswith("echo")]
        check(svc and svc[0][1] == "5", scr)
        check(all(len(ln) <= 80 for ln in scr.splitlines()), "fits 80 columns")
        check(len(rows(scr)) == 5, scr)
        stop.set()
        th.join()

        # by age: the oldest first, in the order they came
        t.keys("a")
        scr = t.wait_screen(lambda s: "by age" in s, "sorted by age")
        ids = [r[0] for r in rows(scr)]
        check(ids == sorted(ids, key=int), scr)
        t.keys("i")
        t.wait_screen(lambda s: "by idle" in s, "sorted by idle")
        t.keys("a")
        scr = t.wait_screen(lambda s: "by age" in s, "sorted by age again")

        # the second row selected, k, and n: nothing happens; k, y: kicked
        t.keys("Down")
        t.keys("k")
        scr = t.wait_screen(lambda s: "kick connection" in s, "the question")
        victim = rows(scr)[1][0]
        check(f"kick connection {victim}? y/n" in scr, scr)
        t.keys("n")
        t.wait_screen(lambda s: "not kicked" in s, "not kicked")
        t.keys("k")
        t.wait_screen(lambda s: "kick connection" in s, "the question again")
        t.keys("y")
        t.wait_screen(lambda s: f"kicked connection {victim}" in s, "kicked")
        check(reads_eof(clients[1]), "the second oldest client was kicked")
        t.wait_screen(lambda s: len(rows(s)) == 4, "four left")

        # a bigger window: more columns; a narrow one: fewer, still fitting
        t.tmux("resize-window", "-x", "60", "-y", "30")
        scr = t.wait_screen(lambda s: "ID" in s and all(len(ln) <= 60 for ln in s.splitlines()) and len(rows(s)) == 4,
                            "60 columns")
        check("PEER" in scr, scr)
        t.tmux("resize-window", "-x", "120", "-y", "40")
        t.wait_screen(lambda s: "IDLE" in s and len(rows(s)) == 4, "120 columns")

        # tcpd goes away: said, retried; a new one at the same socket: back
        d.stop()
        t.wait_screen(lambda s: "trying again every second" in s, "the lost connection said")
        d2 = Daemon(LISTEN)
        os.unlink(link)
        os.symlink(d2.control, link)
        s2 = connect(d2.port())
        clients.append(s2)
        t.wait_screen(lambda s: "(of 1 open)" in s and len(rows(s)) == 1, "the new tcpd shown")

        t.keys("q")
        wait_for(lambda: t.exit_status() is not None, what="tcpctl top ends on q")
        check(t.exit_status() == 0, f"exit status {t.exit_status()}")
    finally:
        stop.set()
        for s in clients:
            s.close()
        t.stop()
        shutil.rmtree(link_dir, ignore_errors=True)


def test_top_refuses_what_it_cannot_do():
    d = Daemon(LISTEN)
    p = subprocess.run([TCPCTL, "-s", d.control, "top"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=10)
    check(p.returncode == 1 and "needs a terminal" in p.stderr, p.stderr)
    p = subprocess.run([TCPCTL, "-s", d.control, "--json", "top"], capture_output=True, text=True, timeout=10)
    check(p.returncode == 2 and "status --json" in p.stderr, p.stderr)
    # no tcpd: said as every command says it, before any screen
    t = Tmux(f"{TCPCTL} -s {d.dir}/nope top 2> {d.dir}/err")
    try:
        wait_for(lambda: t.exit_status() is not None, what="tcpctl top ends")
        check(t.exit_status() == 1, f"exit status {t.exit_status()}")
        err = open(f"{d.dir}/err").read()
        check("cannot connect to" in err and "is tcpd running?" in err, err)
    finally:
        t.stop()
    # the daemon's side: a top list is each worker's largest, and checked
    p = subprocess.run([TCPCTL, "-s", d.control, "bridge"], capture_output=True, timeout=10,
                       input=b'{"method":"org.tcpd.Daemon.ListConnections","parameters":{"by":"age"},"more":true}\0'
                       b'{"method":"org.tcpd.Daemon.ListConnections","parameters":{"top":0},"more":true}\0'
                       b'{"method":"org.tcpd.Daemon.ListConnections","parameters":{"top":5,"by":"x"},"more":true}\0')
    check(p.stdout.count(b"InvalidParameter") == 3, p.stdout.decode())
    for key in (b'"by"', b'"top"', b'"by"'):
        check(key in p.stdout, p.stdout.decode())


def test_top_list_picks_the_largest():
    """ListConnections with top: each worker's largest by rate, age or
    idle, with bytes_per_sec; the rate is the bytes since the previous top
    list."""
    import json
    d = Daemon(LISTEN)
    clients = [connect(d.port()) for _ in range(12)]
    for i, s in enumerate(clients):
        echo_roundtrip(s, b"y" * (100 * (i + 1)))

    def top(n, by):
        p = subprocess.run([TCPCTL, "-s", d.control, "bridge"], capture_output=True, timeout=10,
                           input=json.dumps({"method": "org.tcpd.Daemon.ListConnections",
                                             "parameters": {"top": n, "by": by}, "more": True}).encode() + b"\0")
        return [json.loads(x)["parameters"]["connection"] for x in p.stdout.split(b"\0") if x]
    conns = d.connections()
    ids = {c["peer_port"]: c["id"] for c in conns}
    top(3, "rate")  # marks every connection's bytes
    time.sleep(0.6)
    for i in (2, 7):  # only these move now
        echo_roundtrip(clients[i], b"z" * 50000)
    got = top(1, "rate")
    # two workers: each gives its largest; the two movers are the two largest
    movers = {ids[clients[i].getsockname()[1]] for i in (2, 7)}
    check(len(got) <= 2 and max(c["bytes_per_sec"] for c in got) > 50000, f"{got}")
    best = max(got, key=lambda c: c["bytes_per_sec"])
    check(best["id"] in movers, f"{got} {movers}")
    oldest = min(c["id"] for c in conns)
    got = top(2, "age")
    check(oldest in [c["id"] for c in got] and all("bytes_per_sec" in c for c in got), f"{got}")
    check(len(top(1000, "idle")) == 12, "every one when top is larger")
    for s in clients:
        s.close()


if __name__ == "__main__":
    main([test_top_in_a_terminal, test_top_refuses_what_it_cannot_do, test_top_list_picks_the_largest])
