"""Fake auth server and POP3/IMAP/SMTP backends for the soak, each with
injectable faults.

The auth server picks a fault from the login (``<fault>.<id>``, or for
``smtp_auth none`` from the MAIL FROM local part) and routes the session to
the backend that plays the named backend fault. Asked with HTTP/1.1 and
``Connection: keep-alive`` (``auth_http_keepalive``) it keeps the
connection and, at random, closes it while idle or when the next request
arrives on it, or says ``Connection: close``: no login may be lost to that.
"""

import asyncio
import hashlib
import random

AUTH_FAULTS = ("ok", "slow", "garbage", "wait", "refuse", "silent", "half")
BACKEND_FAULTS = ("refuse", "stall", "close", "midclose")


# bytes 0-255 onto letters, digits and spaces: no CR, LF or '.'
_SAFE = bytes(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789  "[i % 64]
              for i in range(256))


def body(size, seed):
    """The message a backend serves: CRLF lines, none starting with '.'.
    Built with C-speed primitives: a slow generator would stall the one
    event loop every client and server of the soak shares."""
    if size <= 0:
        return b""
    raw = random.Random(seed).randbytes(size).translate(_SAFE)
    width = 78
    lines = [raw[i:i + width] for i in range(0, size, width)]
    return (b"\r\n".join(lines) + b"\r\n")[:size - 2] + b"\r\n" if size >= 2 else b"\r\n"


def parse_login(login):
    """'<fault>.<size>.<seed>' -> (fault, size, seed)."""
    parts = login.split(".")
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return parts[0], 0, 0


async def reader_eof(reader):
    """Stays silent until the peer (nginx) gives up and closes."""
    while await reader.read(65536):
        pass


async def read_line(reader):
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed")
    return line


class AuthServer:
    def __init__(self, ports, stats):
        self.ports = ports  # (proto, fault) -> port
        self.stats = stats
        self.waited = set()

    async def handle(self, reader, writer):
        try:
            kept = False
            while True:
                request = await reader.readline()
                if not request:
                    return
                if kept and random.random() < 0.05:
                    # the server restarts under a kept connection: nginx
                    # must ask again on a new one
                    self.stats.count("auth: kept connection closed under a request")
                    return
                headers = {}
                while True:
                    line = await read_line(reader)
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.stats.auth_requests += 1
                keep = (request.rstrip().endswith(b"HTTP/1.1")
                        and headers.get("connection", "").lower() == "keep-alive")
                if not await self.answer(headers, reader, writer, keep) or not keep:
                    return
                await writer.drain()
                if random.random() < 0.05:
                    self.stats.count("auth: kept connection closed while idle")
                    return
                kept = True
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def reply(writer, headers, keep):
        """An answer: stock's HTTP/1.0 read to the close, or with keepalive
        HTTP/1.1 with a length (and a body to skip); True when the
        connection may carry the next request."""
        if not keep:
            writer.write(b"HTTP/1.0 200 OK\r\n" + headers + b"\r\n")
            return False
        body = b"x" * random.choice((0, 0, 0, 5, 2000))
        close = random.random() < 0.05
        writer.write(b"HTTP/1.1 200 OK\r\n" + headers
                     + (b"Connection: close\r\n" if close else b"")
                     + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return not close

    async def answer(self, h, reader, writer, keep):
        proto = h.get("auth-protocol", "pop3")
        login = h.get("auth-user", "")
        if h.get("auth-method") == "none":
            sender = h.get("auth-smtp-from", "")
            login = sender.partition("<")[2].partition("@")[0]
        fault, _, _ = parse_login(login)
        if fault == "silent":
            await reader_eof(reader)
            return False
        if fault == "slow":
            await asyncio.sleep(random.uniform(0, 1.5))
        if fault == "garbage":
            writer.write(bytes(random.randrange(256) for _ in range(random.randrange(1, 300))))
            return False
        if fault == "half":
            # a length, then less than it, then the close
            writer.write(b"HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
                         b"Auth-Port: %d\r\nContent-Length: 10\r\n\r\nabc"
                         % self.ports[(proto, "ok")])
            return False
        if fault == "wait" and login not in self.waited:
            self.waited.add(login)
            return self.reply(writer, b"Auth-Status: WAIT\r\nAuth-Wait: 1\r\n", keep)
        if fault == "refuse":
            return self.reply(writer, b"Auth-Status: Go away\r\n", keep)
        port = self.ports.get((proto, fault)) or self.ports[(proto, "ok")]
        # SMTP needs no Auth-Pass, and an answer without it may be cached
        auth_pass = b"" if proto == "smtp" else b"Auth-Pass: secret\r\n"
        return self.reply(writer, b"Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
                          b"Auth-Port: %d\r\n" % port + auth_pass, keep)


class Backend:
    """One protocol, one behaviour ('ok' or a BACKEND_FAULTS member)."""

    def __init__(self, proto, fault, stats):
        self.proto = proto
        self.fault = fault
        self.stats = stats

    async def handle(self, reader, writer):
        self.stats.backend_sessions += 1
        try:
            if self.fault == "close":
                return
            await getattr(self, self.proto)(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()


    def send_body(self, writer, data):
        if self.fault == "midclose":
            writer.write(data[: len(data) // 2])
            raise ConnectionError("midclose")
        writer.write(data)

    async def pop3(self, reader, writer):
        writer.write(b"+OK backend\r\n")
        login = ""
        while True:
            line = await read_line(reader)
            verb = line.split(b" ", 1)[0].strip().upper()
            if self.fault == "stall":
                await reader_eof(reader)
            if verb == b"USER":
                login = line[5:].strip().decode("latin-1")
                writer.write(b"+OK\r\n")
            elif verb == b"PASS":
                writer.write(b"-ERR refused\r\n" if self.fault == "refuse" else b"+OK in\r\n")
            elif verb == b"RETR":
                _, size, seed = parse_login(login)
                self.send_body(writer, b"+OK\r\n" + body(size, seed) + b".\r\n")
            elif verb == b"QUIT":
                writer.write(b"+OK bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()

    async def imap(self, reader, writer):
        writer.write(b"* OK backend\r\n")
        login = ""
        while True:
            line = await read_line(reader)
            if self.fault == "stall":
                await reader_eof(reader)
            parts = line.rstrip(b"\r\n").split(b" ")
            tag = parts[0]
            verb = parts[1].upper() if len(parts) > 1 else b""
            if verb == b"LOGIN":
                # LOGIN {n}\r\n<user> {m}\r\n<pass>: collect the literals
                words = []
                rest = line
                while rest.rstrip().endswith(b"}"):
                    n = int(rest.rstrip()[:-1].rsplit(b"{", 1)[1])
                    writer.write(b"+ go\r\n")
                    await writer.drain()
                    words.append((await reader.readexactly(n)).decode("latin-1"))
                    rest = await read_line(reader)
                if not words and len(parts) > 2:
                    words.append(parts[2].decode("latin-1").strip('"'))
                login = words[0] if words else ""
                writer.write(tag + (b" NO refused\r\n" if self.fault == "refuse" else b" OK in\r\n"))
            elif verb == b"FETCH":
                _, size, seed = parse_login(login)
                data = body(size, seed)
                self.send_body(writer, b"* 1 FETCH (BODY[] {%d}\r\n" % len(data) + data
                               + b")\r\n" + tag + b" OK done\r\n")
            elif verb == b"LOGOUT":
                writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(tag + b" OK\r\n")
            await writer.drain()

    async def smtp(self, reader, writer):
        writer.write(b"220 backend\r\n")
        while True:
            line = await read_line(reader)
            if self.fault == "stall":
                await reader_eof(reader)
            verb = line[:4].upper()
            if verb == b"AUTH" and self.fault == "refuse":
                writer.write(b"535 5.7.8 refused\r\n")
            elif verb == b"XCLI" and self.fault == "refuse":
                writer.write(b"550 5.7.0 refused\r\n")
            elif verb == b"XCLI":
                writer.write(b"220 ok\r\n")
            elif verb == b"AUTH":
                writer.write(b"235 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                data = bytearray()
                while True:
                    line = await read_line(reader)
                    if line == b".\r\n":
                        break
                    data += line
                if self.fault == "midclose":
                    raise ConnectionError("midclose")
                writer.write(b"250 %d %s\r\n" % (len(data), hashlib.md5(data).hexdigest().encode()))
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()


async def start(stats):
    """Starts every backend and the auth server; returns the auth port and
    the servers (to keep them open)."""
    ports = {}
    servers = []
    for proto in ("pop3", "imap", "smtp"):
        for fault in ("ok",) + BACKEND_FAULTS:
            backend = Backend(proto, fault, stats)
            server = await asyncio.start_server(backend.handle, "127.0.0.1", 0, limit=1 << 24)
            servers.append(server)
            ports[(proto, fault)] = server.sockets[0].getsockname()[1]
    auth = AuthServer(ports, stats)
    server = await asyncio.start_server(auth.handle, "127.0.0.1", 0)
    servers.append(server)
    return server.sockets[0].getsockname()[1], servers
