"""Soak clients: one session of one protocol, either complete (the transfer
checked byte for byte) or broken on purpose at some stage."""

import asyncio
import base64
import hashlib
import random
import re

from servers import AUTH_FAULTS, BACKEND_FAULTS, body

SIZES = (0, 1, 100, 4096, 65536, 300_000, 2_000_000)


class Broken(Exception):
    """The session ended early, as some faults make it."""


class Session:
    def __init__(self, reader, writer, bytewise):
        self.reader = reader
        self.writer = writer
        self.bytewise = bytewise

    async def send(self, data):
        if self.bytewise and len(data) < 200:
            for i in range(len(data)):
                self.writer.write(data[i:i + 1])
                await self.writer.drain()
                await asyncio.sleep(0.001)
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def line(self):
        line = await self.reader.readline()
        if not line:
            raise Broken("closed")
        return line

    async def expect(self, prefix):
        line = await self.line()
        if not line.startswith(prefix):
            raise Broken(line[:80])
        return line

    async def reply(self):
        """An SMTP reply: its last line."""
        while True:
            line = await self.line()
            if line[3:4] != b"-":
                return line


def plain(login):
    return base64.b64encode(b"\0" + login.encode() + b"\0secret")


async def pop3(s, login, size, seed, stop):
    await s.expect(b"+OK")
    if stop == "greeting":
        return
    mech = random.choice(("user", "plain", "login"))
    if mech == "user":
        await s.send(b"USER " + login.encode() + b"\r\n")
        await s.expect(b"+OK")
        await s.send(b"PASS secret\r\n")
    elif mech == "plain":
        await s.send(b"AUTH PLAIN " + plain(login) + b"\r\n")
    else:
        await s.send(b"AUTH LOGIN\r\n")
        await s.expect(b"+ ")
        await s.send(base64.b64encode(login.encode()) + b"\r\n")
        await s.expect(b"+ ")
        await s.send(base64.b64encode(b"secret") + b"\r\n")
    if stop == "auth":
        return
    await s.expect(b"+OK")
    await s.send(b"RETR 1\r\n")
    await s.expect(b"+OK")
    if stop == "transfer":
        await s.reader.read(random.randrange(1, size + 2))
        return
    data = await s.reader.readuntil(b"\r\n.\r\n") if size else await s.reader.readuntil(b".\r\n")
    expected = body(size, seed) + b".\r\n"
    await s.send(b"QUIT\r\n")
    await s.expect(b"+OK")
    return data == expected


async def imap(s, login, size, seed, stop):
    await s.expect(b"* OK")
    if stop == "greeting":
        return
    mech = random.choice(("atom", "literal", "plain"))
    if mech == "atom":
        await s.send(b"a1 LOGIN " + login.encode() + b" secret\r\n")
    elif mech == "literal":
        await s.send(b"a1 LOGIN {%d}\r\n" % len(login))
        await s.expect(b"+ ")
        await s.send(login.encode() + b" \"secret\"\r\n")
    else:
        await s.send(b"a1 AUTHENTICATE PLAIN " + plain(login) + b"\r\n")
    if stop == "auth":
        return
    await s.expect(b"a1 OK")
    await s.send(b"a2 FETCH 1 BODY[]\r\n")
    head = await s.expect(b"* 1 FETCH")
    if stop == "transfer":
        await s.reader.read(random.randrange(1, size + 2))
        return
    literal = re.search(rb"\{(\d+)\}\r\n$", head)
    if not literal:
        raise Broken(head[:80])
    n = int(literal.group(1))
    data = await s.reader.readexactly(n)
    await s.expect(b")")
    await s.expect(b"a2 OK")
    await s.send(b"a3 LOGOUT\r\n")
    await s.expect(b"* BYE")
    return data == body(size, seed)


async def smtp(s, login, size, seed, stop, relay=False):
    await s.expect(b"220")
    if stop == "greeting":
        return
    await s.send(b"EHLO soak.example\r\n")
    if not (await s.reply()).startswith(b"250"):
        raise Broken("ehlo")
    if relay:
        await s.send(b"MAIL FROM:<" + login.encode() + b"@soak.example>\r\n")
        await s.expect(b"250")
        await s.send(b"RCPT TO:<rcpt@soak.example>\r\n")
    else:
        await s.send(b"AUTH PLAIN " + plain(login) + b"\r\n")
    if stop == "auth":
        return
    if relay:
        await s.expect(b"250")
    else:
        await s.expect(b"235")
        await s.send(b"MAIL FROM:<a@soak.example>\r\n")
        await s.expect(b"250")
        await s.send(b"RCPT TO:<b@soak.example>\r\n")
        await s.expect(b"250")
    await s.send(b"DATA\r\n")
    await s.expect(b"354")
    data = body(size, seed)
    if stop == "transfer":
        await s.send(data[: len(data) // 2])
        return
    await s.send(data + b".\r\n")
    got = await s.expect(b"250")
    await s.send(b"QUIT\r\n")
    await s.expect(b"221")
    want = b"250 %d %s" % (len(data), hashlib.md5(data).hexdigest().encode())
    return got.rstrip() == want


def pick():
    """A session plan: (protocol, fault kind, fault, stop stage, bytewise)."""
    proto = random.choice(("pop3", "imap", "smtp", "smtp-none"))
    roll = random.random()
    if roll < 0.40:
        return proto, "none", "ok", None, random.random() < 0.1
    if roll < 0.55:
        return proto, "auth", random.choice(AUTH_FAULTS[1:]), None, False
    if roll < 0.70:
        return proto, "backend", random.choice(BACKEND_FAULTS), None, False
    if roll < 0.88:
        stage = random.choice(("connect", "greeting", "midline", "auth", "transfer"))
        return proto, "disconnect", "ok", stage, False
    if roll < 0.96:
        return proto, "garbage", "ok", None, False
    # a DNS server that never answers; an auth server that is down
    return random.choice((("smtp-dns", "dns", "silent", None, False),
                          ("pop3-down", "auth", "down", None, False)))


async def garbage(s):
    for _ in range(random.randrange(1, 6)):
        kind = random.random()
        if kind < 0.3:
            data = bytes(random.randrange(256) for _ in range(random.randrange(1, 100)))
        elif kind < 0.6:
            data = b"X" * random.randrange(100, 20000) + b"\r\n"
        else:
            data = random.choice((b"AUTH PLAIN !!!\r\n", b"a1 LOGIN {99999999999}\r\n",
                                  b"a1 LOGIN {5}\r\nab", b"USER\r\n", b"MAIL FROM:\r\n",
                                  b"AUTH LOGIN\r\n*\r\n", b"\r\n\r\n\r\n", b"STARTTLS\r\n"))
        s.writer.write(data)
        await s.writer.drain()
        try:
            await asyncio.wait_for(s.reader.read(65536), 0.2)
        except asyncio.TimeoutError:
            pass


async def run_one(ports, stats):
    proto, kind, fault, stop, bytewise = pick()
    size = random.choice(SIZES)
    # a few logins come back, so that auth_http_cache (SMTP) has hits
    seed = random.randrange(20) if random.random() < 0.3 else random.randrange(1 << 30)
    login = "%s.%d.%d" % (fault, size, seed)
    port = ports["smtp" if proto == "smtp-none" else proto]
    proto = {"smtp-dns": "smtp", "pop3-down": "pop3"}.get(proto, proto)
    stats.count("sessions")
    stats.count("%s %s %s" % (proto, kind, fault if kind != "disconnect" else stop))
    if kind != "none":
        stats.count("faults")
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
    s = Session(reader, writer, bytewise)
    try:
        if stop == "connect":
            return
        if stop == "midline":
            await s.line()
            writer.write(b"AUTH PLA")
            await writer.drain()
            return
        if kind == "garbage":
            await garbage(s)
            return
        if proto == "pop3":
            ok = await pop3(s, login, size, seed, stop)
        elif proto == "imap":
            ok = await imap(s, login, size, seed, stop)
        else:
            ok = await smtp(s, login, size, seed, stop, relay=proto == "smtp-none")
        if ok is True:
            stats.count("transfers byte-exact")
            stats.add("bytes verified", size)
        elif ok is False:
            stats.count("transfers corrupt")
    except Broken as e:
        if kind != "none":
            stats.count("ended by nginx (expected for faults)")
        else:
            stats.count("ended by nginx during a clean session")
            stats.note("%s %s: %r" % (proto, login, e.args[0] if e.args else ""))
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        stats.count("connection reset")
    finally:
        writer.close()


async def warm_up(ports):
    """One clean session of every kind, the same before and after the load,
    so the measured worker holds the same long-lived sockets (the resolver's
    UDP socket among them) at both measurements."""
    for proto, port in (("pop3", "pop3"), ("imap", "imap"), ("smtp", "smtp"),
                        ("smtp", "smtp-dns"), ("smtp-none", "smtp")):
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[port], limit=1 << 24)
        s = Session(reader, writer, False)
        login = "ok.100.1"
        try:
            if proto == "pop3":
                await pop3(s, login, 100, 1, None)
            elif proto == "imap":
                await imap(s, login, 100, 1, None)
            else:
                await smtp(s, login, 100, 1, None, relay=proto == "smtp-none")
        except (Broken, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
