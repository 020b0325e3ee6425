"""The mock auth server and backend of one slot of one instance.

Each records every byte it receives during a session. The session's case
says what the auth server answers (one answer per request, the last one
repeated) and how the backend behaves; both instances get the same answers,
with only the backend's port differing (normalised away when comparing).
"""

import socket
import threading

BACKEND_MODES = ("ok", "refuse", "close", "garbage")

# Requests of one session beyond this get no answer (the connection is
# closed), so that nginx ends a session that would ask for ever (stock
# re-asks without end after a WAIT answered at once, then anything).
MAX_AUTH_REQUESTS = 10


class Recorder:
    """Counts open connections so a session can wait until nginx closed them."""

    def __init__(self):
        self.cond = threading.Condition()
        self.active = 0

    def opened(self):
        with self.cond:
            self.active += 1

    def closed(self):
        with self.cond:
            self.active -= 1
            self.cond.notify_all()

    def wait_idle(self, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.active == 0, timeout)


class LineReader:
    """Reads LF-terminated lines from a socket, recording every byte."""

    def __init__(self, sock, record):
        self.sock = sock
        self.record = record
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.record += data
        self.buf += data

    def line(self):
        while b"\n" not in self.buf:
            self.fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def drain(self):
        """Records whatever comes until the peer closes."""
        try:
            while True:
                self.fill()
        except OSError:
            pass


class SlotMocks:
    """The auth server and backend nginx uses for one slot of one instance."""

    def __init__(self, auth_port, backend_port):
        self.auth_port = auth_port
        self.backend_port = backend_port
        self.recorder = Recorder()
        self.begin(None)
        for port, handler in ((auth_port, self.serve_auth), (backend_port, self.serve_backend)):
            lsock = socket.socket()
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("127.0.0.1", port))
            lsock.listen(64)
            threading.Thread(target=self.accept_loop, args=(lsock, handler), daemon=True).start()

    def begin(self, case):
        """Forgets the last session and takes the answers of the next one."""
        self.case = case
        self.auth_requests = []
        self.backend_bytes = []

    def finish(self, timeout=3.0):
        """Waits for nginx to close the slot's connections; the records."""
        idle = self.recorder.wait_idle(timeout)
        return ([bytes(r) for r in self.auth_requests],
                [bytes(b) for b in self.backend_bytes], idle)

    def accept_loop(self, lsock, handler):
        while True:
            conn, _ = lsock.accept()
            self.recorder.opened()
            threading.Thread(target=self.run_handler, args=(handler, conn), daemon=True).start()

    def run_handler(self, handler, conn):
        try:
            conn.settimeout(10)
            handler(conn)
        except (OSError, ValueError, IndexError):
            pass
        finally:
            try:
                conn.close()
            finally:
                self.recorder.closed()

    # the auth server

    def serve_auth(self, conn):
        record = bytearray()
        self.auth_requests.append(record)
        n = len(self.auth_requests)
        reader = LineReader(conn, record)
        while b"\r\n\r\n" not in reader.buf and b"\n\n" not in reader.buf:
            reader.fill()
        answers = self.case["auth"] if self.case else ["close"]
        answer = answers[min(n, len(answers)) - 1] if n <= MAX_AUTH_REQUESTS else "close"
        if answer == "silent":
            reader.drain()
            return
        if answer == "close":
            return
        conn.sendall(answer.replace("$PORT", str(self.backend_port)).encode("latin-1"))
        conn.shutdown(socket.SHUT_WR)
        reader.drain()

    # the backend

    def serve_backend(self, conn):
        record = bytearray()
        self.backend_bytes.append(record)
        reader = LineReader(conn, record)
        mode = self.case["backend"] if self.case else "close"
        protocol = self.case["protocol"] if self.case else "pop3"
        try:
            if mode == "close":
                return
            if mode == "garbage":
                conn.sendall(b"garbage \x01\xff\r\n")
                reader.drain()
                return
            getattr(self, "backend_" + protocol)(conn, reader, mode == "refuse")
            conn.shutdown(socket.SHUT_WR)  # after QUIT or LOGOUT, as a server does
        finally:
            reader.drain()

    @staticmethod
    def backend_pop3(conn, reader, refuse):
        conn.sendall(b"+OK backend ready\r\n")
        while True:
            line = reader.line()
            verb = line.split(None, 1)[0].upper() if line.split() else b""
            if verb == b"PASS" and refuse:
                conn.sendall(b"-ERR backend refuses\r\n")
            elif verb == b"RETR":
                conn.sendall(b"+OK 12 octets\r\nHello world\r\n.\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"+OK backend bye\r\n")
                return
            else:
                conn.sendall(b"+OK " + verb[:20] + b" done\r\n")

    @staticmethod
    def backend_imap(conn, reader, refuse):
        conn.sendall(b"* OK backend ready\r\n")
        while True:
            line = reader.line()
            # literals are collected into the line they belong to
            while line.rstrip().endswith(b"}") and b"{" in line:
                count = line.rstrip()[:-1].rsplit(b"{", 1)[1].rstrip(b"+")
                if not count.isdigit() or int(count) > 65536:
                    break
                if not line.rstrip()[:-1].endswith(b"+"):
                    conn.sendall(b"+ go ahead\r\n")
                line = line + reader.exactly(int(count)) + reader.line()
            parts = line.split(None, 2)
            tag = parts[0] if parts else b"*"
            verb = parts[1].upper() if len(parts) > 1 else b""
            if verb == b"LOGIN" and refuse:
                conn.sendall(tag + b" NO backend refuses\r\n")
            elif verb == b"LOGOUT":
                conn.sendall(b"* BYE backend\r\n" + tag + b" OK bye\r\n")
                return
            elif verb == b"FETCH":
                conn.sendall(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n" + tag + b" OK done\r\n")
            else:
                conn.sendall(tag + b" OK " + verb[:20] + b" done\r\n")

    @staticmethod
    def backend_smtp(conn, reader, refuse):
        conn.sendall(b"220 backend ESMTP\r\n")
        in_data = False
        while True:
            line = reader.line()
            if in_data:
                if line.rstrip(b"\r\n") == b".":
                    in_data = False
                    conn.sendall(b"250 2.0.0 queued\r\n")
                continue
            verb = line.split(None, 1)[0].upper() if line.split() else b""
            if verb == b"EHLO":
                conn.sendall(b"250-backend\r\n250-XCLIENT ADDR LOGIN NAME\r\n"
                             b"250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == b"XCLIENT":
                conn.sendall(b"550 5.7.0 backend refuses\r\n" if refuse
                             else b"220 backend ESMTP again\r\n")
            elif verb == b"AUTH":
                conn.sendall(b"535 5.7.8 backend refuses\r\n" if refuse
                             else b"235 2.0.0 ok\r\n")
            elif verb == b"DATA":
                in_data = True
                conn.sendall(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                conn.sendall(b"250 2.0.0 " + verb + b" ok\r\n")
            else:
                conn.sendall(b"502 5.5.2 " + verb[:20] + b" unknown\r\n")
