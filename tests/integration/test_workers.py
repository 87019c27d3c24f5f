#!/usr/bin/env python3
"""Several workers, one daemon: connections land on every worker, and
status, list, kick, reload, the limits and shutdown cover them all."""

import os
import signal
import socket
import subprocess
import threading

from tcpdtest import (Daemon, TestFailure, activated, check, connect, echo_roundtrip, free_port, main, reads_eof, recv_exact,
                      refused, run_config_check, wait_for)

LISTEN = "[echo]\nlisten = 127.0.0.1:0\n"
# connections are given to whichever worker the kernel wakes: open them
# until every worker has some, within a bound
MAX_TRIES = 2000


def spread(d, workers, want_each=1, keep=None):
    """Opens connections until each of the workers holds want_each; returns
    them (each has echoed once)."""
    port = d.port()
    conns = keep if keep is not None else []
    for i in range(MAX_TRIES):
        s = connect(port)
        echo_roundtrip(s, b"w%d" % i)
        conns.append(s)
        if len(conns) % 10 == 0:
            per = d.status()["worker_connections"]
            check(len(per) == workers, f"worker_connections {per}")
            if min(per) >= want_each:
                return conns
    raise TestFailure(f"connections never reached every worker: {d.status()['worker_connections']}")


def test_status_counts_every_worker():
    d = Daemon("[tcpd]\nworkers = 3\n" + LISTEN)
    conns = spread(d, 3, want_each=2)
    st = d.status()
    check(st["workers"] == 3, f"workers {st['workers']}")
    check(sum(st["worker_connections"]) == len(conns) == st["connections_open"],
          f"{st['worker_connections']} vs {len(conns)} open, status {st['connections_open']}")
    check(st["connections_total"] == len(conns), "total counts every worker")
    # every echo above went through some worker's counters
    check(st["bytes_in"] == st["bytes_out"] == sum(len(b"w%d" % i) for i in range(len(conns))),
          f"bytes {st['bytes_in']}/{st['bytes_out']}")
    out = d.ctl("status").stdout
    check("workers:" in out and "3" in out, f"tcpctl status shows the workers:\n{out}")
    for s in conns:
        s.close()
    wait_for(lambda: d.status()["connections_open"] == 0, what="all closed")
    d.stop()


def test_auto_is_one_per_cpu():
    d = Daemon(LISTEN)
    check(d.status()["workers"] == len(os.sched_getaffinity(0)), "workers = auto follows the CPU affinity")
    d.stop()
    # a narrower affinity (as CPUAffinity= in the unit) means fewer workers
    d = Daemon(LISTEN, prefix=("taskset", "-c", "0"))
    check(d.status()["workers"] == 1, "one CPU allowed, one worker")
    d.stop()


def test_list_and_kick_cover_every_worker():
    d = Daemon("[tcpd]\nworkers = 2\nadmin_group = root\n" + LISTEN)
    conns = spread(d, 2, want_each=3)
    ports = {s.getsockname()[1]: s for s in conns}
    listed = d.connections()
    ids = [c["id"] for c in listed]
    check(len(listed) == len(conns), f"list has {len(listed)} of {len(conns)}")
    check(ids == sorted(ids) and len(set(ids)) == len(ids), "ids unique, in order")
    check({c["peer_port"] for c in listed} == set(ports), "every connection listed once")

    # kick by id: ids of connections on both workers (all of them but two)
    victims = listed[:-2]
    r = d.ctl("kick", *[str(c["id"]) for c in victims], json_out=True)
    check(r["kicked"] == len(victims) and sorted(r["ids"]) == sorted(c["id"] for c in victims),
          f"kick by id across workers: {r}")
    for c in victims:
        check(reads_eof(ports[c["peer_port"]]), f"kicked connection {c['id']} ended")
    rest = d.connections()
    check(len(rest) == 2, f"{len(rest)} left after the kick")
    check(d.ctl("kick", str(rest[0]["id"]), str(10 ** 12), json_out=True)["kicked"] == 1,
          "an unknown id beside a known one kicks only the known one")
    # refill both workers, then kick --all
    more = spread(d, 2, want_each=2, keep=[])
    r = d.ctl("kick", "--all", json_out=True)
    check(r["kicked"] == len(more) + 1, f"kick --all: {r['kicked']} of {len(more) + 1}")
    for s in more:
        check(reads_eof(s), "kicked by --all")
    wait_for(lambda: d.status()["connections_open"] == 0, what="no connection left")
    check(d.status()["connections_kicked"] == len(victims) + 1 + len(more) + 1, "kicks counted in total")
    d.stop()


def test_max_connections_is_exact_across_workers():
    d = Daemon("[tcpd]\nworkers = 2\nmax_connections = 40\n" + LISTEN)
    port = d.port()
    held, lock = [], threading.Lock()

    def client():
        for _ in range(20):
            try:
                s = connect(port, timeout=5)
                s.sendall(b"x")
                if s.recv(1) == b"x":
                    with lock:
                        held.append(s)
                else:
                    s.close()
            except OSError:
                pass

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    st = d.status()
    check(len(held) == 40 and st["connections_open"] == 40, f"{len(held)} held, {st['connections_open']} open")
    check(st["refused"]["max_connections"] == 80 - 40, f"refused {st['refused']}")
    for s in held:
        s.close()
    d.stop()


def test_per_source_limit_across_workers():
    d = Daemon("[tcpd]\nworkers = 2\nmax_connections_per_source = 10\n" + LISTEN)
    port = d.port()
    held = []
    for i in range(30):
        try:
            s = connect(port, source="127.0.0.5")
            s.sendall(b"y")
            if s.recv(1) == b"y":
                held.append(s)
        except OSError:
            pass
    check(len(held) == 10, f"{len(held)} connections from one source, limit 10")
    other = connect(port, source="127.0.0.6")
    echo_roundtrip(other, b"another source")
    per = d.status()["worker_connections"]
    check(sum(per) == 11, f"{per}")
    d.stop()


def test_reload_reaches_every_worker():
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN)
    conns = spread(d, 2, want_each=2)
    port = d.port()
    # a new listener and a deny rule: every worker must apply both
    new_port = free_port()
    d.write_config(f"[tcpd]\nworkers = 2\ndeny = 127.0.0.7\n[echo]\nlisten = 127.0.0.1:{port} "
                   f"127.0.0.1:{new_port}\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: len(d.status()["listeners"]) == 2, what="second listener")
    for i in range(40):
        s = connect(new_port)
        echo_roundtrip(s, b"new %d" % i)
        conns.append(s)
    for i in range(40):
        check(refused(port, source="127.0.0.7"), f"attempt {i} from a denied source was refused")
    check(d.status()["refused"]["deny"] == 40, "every worker applied deny=")
    check(min(d.status()["worker_connections"]) > 0, "both workers still serve")
    for s in conns:
        echo_roundtrip(s, b"still here after the reload")
    # remove the first listener: no worker accepts on it any more
    d.write_config(f"[tcpd]\nworkers = 2\n[echo]\nlisten = 127.0.0.1:{new_port}\n")
    d.signal(signal.SIGHUP)
    wait_for(lambda: len(d.status()["listeners"]) == 1, what="listener removed")
    try:
        connect(port, timeout=2).close()
        raise TestFailure("the removed listener still accepts")
    except ConnectionRefusedError:
        pass
    for s in conns:
        echo_roundtrip(s, b"and after the second")
    d.stop()


def test_shutdown_drains_every_worker():
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN)
    conns = spread(d, 2, want_each=3)
    # bytes in flight on every connection when SIGTERM arrives
    payload = os.urandom(100000)
    for s in conns:
        s.sendall(payload[:20000])
    d.signal(signal.SIGTERM)
    for s in conns:
        check(recv_exact(s, 20000) == payload[:20000], "owed bytes arrive before the end")
        s.shutdown(socket.SHUT_WR)
        check(reads_eof(s), "closed after the flush")
    check(d.wait_exit() == 0, f"exit status {d.returncode}: {d.stderr()}")
    check(f"{len(conns)} connections served" in d.stderr(), "the closing line counts every worker")
    d.check_clean()


def listening_sockets(pid, port):
    """How many listening TCP sockets on port the process holds."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            held += 1
    return held


def test_own_listening_socket_per_worker():
    # where tcpd binds, each worker has its own socket in one SO_REUSEPORT
    # group: the kernel spreads connections, no worker re-registers
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN)
    port = d.port()
    check(listening_sockets(d.proc.pid, port) == 2, "two listening sockets, one per worker")
    conns = []
    for i in range(200):
        s = connect(port)
        echo_roundtrip(s, b"r%d" % i)
        conns.append(s)
    per = d.status()["worker_connections"]
    # a hash of 200 source ports: each side is ~100 +- 7
    check(sum(per) == 200 and min(per) >= 60, f"connections spread over the group: {per}")
    # keepalive is set on every socket of the group (accepted ones inherit it)
    out = subprocess.run(["ss", "-Htno", "state", "established", f"sport = :{port}"], capture_output=True,
                         text=True).stdout.splitlines()
    check(len(out) == 200 and all("timer:(keepalive" in line for line in out), f"keepalive: {out[:3]}")

    # a second tcpd on the same port must fail as it would with one socket,
    # not join the group and take half of the connections
    for workers in (2, 1):
        other = Daemon(f"[tcpd]\nworkers = {workers}\n[echo]\nlisten = 127.0.0.1:{port}\n", wait_ready=False)
        check(other.wait_exit() == 1, f"a second tcpd (workers = {workers}) exited {other.returncode}")
        check(f"{other.config}:" in other.stderr() and "Address already in use" in other.stderr(),
              other.stderr())
    for i in range(50):
        s = connect(port)
        echo_roundtrip(s, b"after %d" % i)
        conns.append(s)
    check(d.status()["connections_open"] == 250, "every connection went to the first tcpd")
    # a reload's new backlog reaches every socket of the group (ss shows a
    # listening socket's backlog as Send-Q)
    d.write_config(f"[tcpd]\nworkers = 2\nbacklog = 77\n[echo]\nlisten = 127.0.0.1:{port}\n")
    d.signal(signal.SIGHUP)

    def backlogs():
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        return [int(line.split()[2]) for line in out.splitlines()]
    wait_for(lambda: backlogs() == [77, 77], what=f"backlog 77 on both sockets, not {backlogs()}")
    for s in conns:
        echo_roundtrip(s, b"after the reload")
        s.close()
    d.stop()


def test_activated_socket_is_shared_by_workers():
    # a socket from systemd is one socket: every worker waits on it
    port = free_port()
    d = Daemon("[tcpd]\nworkers = 2\n", activate=[f"127.0.0.1:{port}"], fdnames=["echo"], wait_ready=False)
    # systemd-socket-activate starts tcpd at the first connection
    first = activated(d, port)
    echo_roundtrip(first, b"first")
    tcpd_pid = int(d.status()["pid"])
    check(listening_sockets(tcpd_pid, port) == 1, "one shared listening socket")
    conns = spread(d, 2, want_each=3, keep=[first])
    for s in conns:
        echo_roundtrip(s, b"shared")
        s.close()
    d.stop()


def thread_policies(pid):
    """{thread name: scheduling policy number} of a process's threads."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[name] = int(fields[38])  # field 41 of stat(5): policy
    return out


def worker_policies(pid, workers):
    """thread_policies() once every worker has named itself (a worker sets
    its name and policy as its thread starts, which READY=1 does not wait
    for)."""
    def named():
        pol = thread_policies(pid)
        return pol if all(f"tcpd-worker-{i}" in pol for i in range(workers)) else None
    return wait_for(named, what="worker threads named")


def test_workers_run_sched_batch():
    # the default: workers under SCHED_BATCH, the control thread not
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN)
    pol = worker_policies(d.proc.pid, 2)
    check(pol.get("tcpd-worker-0") == os.SCHED_BATCH and pol.get("tcpd-worker-1") == os.SCHED_BATCH,
          f"worker policies {pol}")
    check(pol.get("tcpd") == os.SCHED_OTHER, f"the control thread keeps SCHED_OTHER: {pol}")
    echo_roundtrip(connect(d.port()), b"batch")
    # a change is noted on reload and waits for the next start
    d.write_config("[tcpd]\nworkers = 2\nworker_scheduling = inherit\n" + LISTEN.replace(":0", f":{d.port()}"))
    d.signal(signal.SIGHUP)
    wait_for(lambda: "worker_scheduling changed; it takes effect at the next start" in d.stderr(), what="notice")
    d.stop()
    d = Daemon("[tcpd]\nworkers = 2\nworker_scheduling = inherit\n" + LISTEN)
    pol = worker_policies(d.proc.pid, 2)
    check(pol.get("tcpd-worker-0") == os.SCHED_OTHER, f"inherit: {pol}")
    d.stop()
    # a policy set for the whole process (CPUSchedulingPolicy=idle, say) is not overridden
    d = Daemon("[tcpd]\nworkers = 2\n" + LISTEN, prefix=("chrt", "-i", "0"))
    pol = worker_policies(d.proc.pid, 2)
    check(pol.get("tcpd-worker-0") == os.SCHED_IDLE, f"an inherited SCHED_IDLE stays: {pol}")
    d.stop()
    p, path = run_config_check("[tcpd]\nworker_scheduling = fifo\n")
    check(p.returncode == 1 and f"{path}:2" in p.stderr and "'batch' or 'inherit'" in p.stderr, p.stderr)


def test_bad_workers_values():
    for value in ("0", "257", "many", "-1"):
        p, path = run_config_check(f"[tcpd]\nworkers = {value}\n")
        check(p.returncode == 1, f"workers = {value} accepted")
        check(f"{path}:2" in p.stderr and "workers" in p.stderr and "auto" in p.stderr, p.stderr)
    p, _ = run_config_check("[tcpd]\nworkers = 4\n")
    check(p.returncode == 0 and "workers = 4" in p.stdout, p.stdout + p.stderr)
    p, _ = run_config_check("[tcpd]\n")
    check("workers = auto" in p.stdout, p.stdout)


if __name__ == "__main__":
    main([test_status_counts_every_worker, test_auto_is_one_per_cpu, test_list_and_kick_cover_every_worker,
          test_max_connections_is_exact_across_workers, test_per_source_limit_across_workers,
          test_reload_reaches_every_worker, test_shutdown_drains_every_worker, test_own_listening_socket_per_worker,
          test_activated_socket_is_shared_by_workers, test_workers_run_sched_batch, test_bad_workers_values])
