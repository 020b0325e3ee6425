"""Plays one case's client side against one instance and collects the three
byte streams: what the client, the auth server and the backend received.

A case's steps (JSON lists, bytes as latin-1 strings):
  ["send", data, "reply"]  send, then wait for the first byte of an answer
  ["send", data, "none"]   send and go on (pipelining)
  ["send", data, ms]       send, then pause ms milliseconds (a split packet)
  ["shut"]                 shut the write half (a close, maybe mid-command)
After the last step the client reads until nginx closes the connection,
which is also when nginx has closed its auth and backend connections: the
next session of the slot cannot receive anything of this one.
"""

import select
import socket
import time

REPLY_WAIT = 1.5  # an answer's first byte (an auth request and a login included)
END_WAIT = 6.0  # nginx closes within its timeouts (400-600 ms, Auth-Wait 1 s)


class Streams:
    def __init__(self, client, auth, backend, note=""):
        self.client = client  # bytes
        self.auth = auth  # [bytes], one per auth request, in order
        self.backend = backend  # [bytes], one per backend connection
        self.note = note  # "" or why the run is not trustworthy

    def as_dict(self):
        return {"client": self.client.decode("latin-1"),
                "auth": [a.decode("latin-1") for a in self.auth],
                "backend": [b.decode("latin-1") for b in self.backend],
                "note": self.note}


def read_some(sock, buf, timeout):
    """Appends what arrives within `timeout`; False once the peer closed."""
    ready, _, _ = select.select([sock], [], [], max(timeout, 0))
    if not ready:
        return True
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, TimeoutError):
        return False
    if not data:
        return False
    buf += data
    return True


def wait_reply(sock, buf, timeout):
    """Waits until at least one new byte arrived; False once closed."""
    start, deadline = len(buf), time.monotonic() + timeout
    while len(buf) == start:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        if not read_some(sock, buf, left):
            return False
    return True


def play(case, port):
    """Runs the client side; returns (received bytes, note)."""
    buf = bytearray()
    note = ""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        open_ = wait_reply(sock, buf, REPLY_WAIT)  # the greeting
        for step in case["steps"]:
            if not open_:
                break
            if step[0] == "shut":
                sock.shutdown(socket.SHUT_WR)
                continue
            _, data, wait = step
            try:
                sock.sendall(data.encode("latin-1"))
            except (BrokenPipeError, ConnectionResetError):
                break
            if wait == "reply":
                open_ = wait_reply(sock, buf, REPLY_WAIT)
            elif wait != "none":
                time.sleep(wait / 1000)
                open_ = read_some(sock, buf, 0)
        deadline = time.monotonic() + END_WAIT
        while open_:
            left = deadline - time.monotonic()
            if left <= 0:
                note = "nginx kept the client connection open"
                break
            open_ = read_some(sock, buf, left)
    except OSError as e:
        note = f"client error: {e}"
    finally:
        sock.close()
    return bytes(buf), note


def run_case(case, slot_ports, mocks):
    """One run of `case` against one instance's slot."""
    mocks.begin(case)
    client, note = play(case, slot_ports.listen[case["server"]])
    auth, backend, idle = mocks.finish()
    if not idle and not note:
        note = "an auth or backend connection stayed open"
    return Streams(client, auth, backend, note)
