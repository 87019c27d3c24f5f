"""One echo client, driven by JSON lines on stdin, answering on stdout.

Run by nspawn.EchoClient in the box's network namespace. It connects at
start and says {"local_port": N} (or {"error": ...}); then for each request:
  {"op": "echo", "data": S, "timeout": T}  -> {"data": what came back} or {"error": ...}
  {"op": "wait_closed", "timeout": T}      -> {"result": "eof" | "reset" | "timeout"}
  {"op": "fill"}                           -> {"sent": N}: sends without reading until nothing moves
  {"op": "read_all", "timeout": T}         -> {"got": N, "result": "eof" | "reset" | "timeout"}
It exits, closing the connection, when stdin closes.
"""

import json
import socket
import sys
import time


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def echo(sock, data, timeout):
    want = data.encode()
    got = b""
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(want)
        while len(got) < len(want):
            left = deadline - time.monotonic()
            if left <= 0:
                return {"error": f"timeout after {timeout} s with {got!r} of {want!r}"}
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                return {"error": f"EOF after {got!r} of {want!r}"}
            got += chunk
    except socket.timeout:
        return {"error": f"timeout after {timeout} s with {got!r} of {want!r}"}
    except OSError as e:
        return {"error": f"{e.__class__.__name__}: {e}"}
    return {"data": got.decode(errors="replace")}


def wait_closed(sock, timeout):
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"result": "timeout"}
            sock.settimeout(left)
            if not sock.recv(65536):
                return {"result": "eof"}
    except socket.timeout:
        return {"result": "timeout"}
    except ConnectionResetError:
        return {"result": "reset"}


def fill(sock):
    import select
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            sent += sock.send(b"f" * 65536)
        except BlockingIOError:
            if not select.select([], [sock], [], 0.5)[1]:
                break
    sock.setblocking(True)
    return {"sent": sent}


def read_all(sock, timeout):
    got = 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return {"got": got, "result": "timeout"}
            sock.settimeout(left)
            chunk = sock.recv(1 << 20)
            if not chunk:
                return {"got": got, "result": "eof"}
            got += len(chunk)
    except socket.timeout:
        return {"got": got, "result": "timeout"}
    except ConnectionResetError:
        return {"got": got, "result": "reset"}


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        say({"error": f"{e.__class__.__name__}: {e}"})
        return 1
    say({"local_port": sock.getsockname()[1]})
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "echo":
            say(echo(sock, req["data"], req.get("timeout", 10)))
        elif req["op"] == "wait_closed":
            say(wait_closed(sock, req.get("timeout", 10)))
        elif req["op"] == "fill":
            say(fill(sock))
        elif req["op"] == "read_all":
            say(read_all(sock, req.get("timeout", 10)))
        else:
            say({"error": f"unknown op {req['op']!r}"})
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
