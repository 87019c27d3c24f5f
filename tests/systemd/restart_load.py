"""Load for the restart test, run in the box's network namespace: N echo
clients, each with one patterned message in flight at a time, every byte
checked. Reads commands on stdin, one per line:
  report          -> a JSON line with the counters so far
  relaxed         -> from now on a changed byte is counted, not fatal (a crash
                     may lose what tcpd had read but not yet written)
  probe           -> open and echo on one new connection; {"probe": "ok"|error}
  stop            -> final report, then exit
It prints {"ready": N} once every client has echoed once."""

import json
import selectors
import socket
import sys
import threading
import time

N = int(sys.argv[1])
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 7788
MSG = 64

lock = threading.Lock()
stats = {"connections": 0, "eof": 0, "reset": 0, "mismatch": 0, "echoes": 0, "max_wait_ms": 0.0}
relaxed = False
running = True


def pattern(off, n):
    return bytes((off + i) % 251 for i in range(n))


class Client:
    def __init__(self, s):
        self.s = s
        self.sent = 0
        self.got = 0
        self.since = 0.0
        self.dead = False

    def send(self):
        self.s.send(pattern(self.sent, MSG))  # 64 bytes always fit
        self.sent += MSG
        self.since = time.monotonic()


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run(clients, sel):
    global relaxed
    ready = False
    while running:
        for key, _ in sel.select(timeout=0.2):
            c = key.data
            try:
                d = c.s.recv(65536)
            except ConnectionResetError:
                d = None
            with lock:
                if d is None or d == b"":
                    stats["reset" if d is None else "eof"] += 1
                    sel.unregister(c.s)
                    c.dead = True
                    continue
                if d != pattern(c.got, len(d)):
                    stats["mismatch"] += 1
                    if not relaxed:
                        say({"error": f"echo differs at byte {c.got}"})
                c.got += len(d)
                if c.got >= c.sent:
                    wait = (time.monotonic() - c.since) * 1000
                    stats["max_wait_ms"] = max(stats["max_wait_ms"], wait)
                    stats["echoes"] += 1
                    c.got = c.sent  # after a loss, go on from here
                    c.send()
        if not ready and stats["echoes"] >= len(clients):
            ready = True
            say({"ready": len(clients)})


def main():
    global relaxed, running
    clients = []
    for i in range(N):
        if i % 100 == 0 and i:
            time.sleep(0.05)  # in steps: a burst past the backlog costs SYN retries
        s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        s.setblocking(False)
        clients.append(Client(s))
    stats["connections"] = len(clients)
    sel = selectors.DefaultSelector()
    for c in clients:
        sel.register(c.s, selectors.EVENT_READ, c)
        c.send()
    t = threading.Thread(target=run, args=(clients, sel), daemon=True)
    t.start()
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "relaxed":
            with lock:
                relaxed = True
            say({"relaxed": True})
        elif cmd == "report":
            with lock:
                say(dict(stats))
        elif cmd == "probe":
            try:
                p = socket.create_connection(("127.0.0.1", PORT), timeout=5)
                p.sendall(b"probe")
                ok = p.recv(5) == b"probe"
                p.close()
                say({"probe": "ok" if ok else "bad echo"})
            except OSError as e:
                say({"probe": f"{e.__class__.__name__}: {e}"})
        elif cmd == "stop":
            break
    running = False
    t.join(2)
    with lock:
        say(dict(stats, final=True))


if __name__ == "__main__":
    main()
