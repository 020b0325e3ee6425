"""Seeded generation of sessions from the POP3 (RFC 1939, 2449, 5034), IMAP
(RFC 3501, 7888 literals) and SMTP (RFC 5321, 4954) grammars.

A session is some commands before login, a login by one of the SASL or
plain mechanisms (most of the time), commands for the backend, and an end.
Lines are then mutated (case, tabs, bare LF or CR, NUL and 8-bit bytes,
lengths near the command buffer, cuts, duplicates), batched (pipelining),
split into packets at random points, and the session may close mid-command.
The auth server's answers (OK, refusals with Auth-Wait and Auth-Error-Code,
WAIT, odd headers, garbage, silence) and the backend's behaviour are chosen
per session too. `generate(protocol, seed, index)` is a pure function of its
arguments: the same case on every machine and with any --jobs.
"""

import base64
import random

from .instances import BUFFER_LIMITS, VARIANTS

USERS = ["alice", "bob@example.com", "u", "Alice.Smith", "user+tag@example.org",
         "us er", "caf\xe9", "%41", "a\\b", "x" * 40]
PASSWORDS = ["secret", "p w", "100%", "", "pa\tss", "\xe9t\xe9", "s" * 50, "a\"b"]
DOMAINS = ["client.example", "[127.0.0.1]", "x", "very.long." * 8 + "example", ""]
ADDRESSES = ["<a@example.com>", "<>", "a@example.com", "<\"q u\"@example.com>",
             "<postmaster>", "<a@[127.0.0.1]>"]


def b64(text):
    return base64.b64encode(text.encode("latin-1")).decode("ascii")


def hexdigest(rng):
    return "".join(rng.choice("0123456789abcdef") for _ in range(32))


class Line:
    """One command line (without its CRLF) or a part of one.

    `reply`: whether nginx (or the backend) answers once it has the line;
    `end`: the terminator appended; `final`: the session ends with it.
    """

    def __init__(self, text, reply=True, end="\r\n", final=False):
        self.text, self.reply, self.end, self.final = text, reply, end, final


def sasl_login(rng, mechanism, protocol):
    """A SASL exchange: the command's argument text and the continuation
    lines, for PLAIN, LOGIN, CRAM-MD5 and EXTERNAL."""
    user, password = rng.choice(USERS), rng.choice(PASSWORDS)
    initial = rng.random() < 0.5
    if mechanism == "PLAIN":
        authz = rng.choice(["", "", "admin"])
        blob = b64(f"{authz}\0{user}\0{password}")
        return (f"PLAIN {blob}", []) if initial else ("PLAIN", [blob])
    if mechanism == "LOGIN":
        if initial:
            return f"LOGIN {b64(user)}", [b64(password)]
        return "LOGIN", [b64(user), b64(password)]
    if mechanism == "CRAM-MD5":
        return "CRAM-MD5", [b64(f"{user} {hexdigest(rng)}")]
    blob = rng.choice([b64(user), "="])
    return (f"EXTERNAL {blob}", []) if initial else ("EXTERNAL", [blob])


def odd_sasl_line(rng):
    return rng.choice(["*", "=", "", "!!!!", "AAA", "dXNlcg", "dXNlcg==x",
                       b64("\0only-user"), b64("no nul at all"), b64("a\0b\0c\0d")])


# POP3

def pop3_noise(rng):
    return rng.choice(["CAPA", "NOOP", "AUTH", "STLS", "RSET", "STAT", "LIST", "RETR 1",
                       "UIDL", "TOP 1 1", "XYZZY", "", "USER", "PASS", "APOP alice",
                       "AUTH FOO", "USER a b", "PASS " + rng.choice(PASSWORDS), "LAST",
                       "CAPA extra"])


def pop3_login(rng):
    kind = rng.choice(["user", "user", "apop", "auth", "auth", "auth"])
    if kind == "user":
        return [Line("USER " + rng.choice(USERS)), Line("PASS " + rng.choice(PASSWORDS))]
    if kind == "apop":
        return [Line(f"APOP {rng.choice(USERS)} {hexdigest(rng)}")]
    arg, conts = sasl_login(rng, rng.choice(["PLAIN", "LOGIN", "CRAM-MD5", "EXTERNAL"]), "pop3")
    if rng.random() < 0.1:
        conts = conts[:-1] + [odd_sasl_line(rng)]
    return [Line("AUTH " + arg)] + [Line(c) for c in conts]


def pop3_after_login(rng):
    lines = [Line(rng.choice(["STAT", "LIST", "RETR 1", "NOOP", "DELE 1", "UIDL"]))
             for _ in range(rng.randrange(0, 3))]
    return lines + [Line("QUIT", final=True)]


# IMAP

def imap_tag(rng, n):
    if rng.random() < 0.06:
        return rng.choice(["", "*", "+", "a(", "a{1}", "a%", "a\"", "a]", "t" * 70, "\xe9"])
    return rng.choice(["a", "A", "t", "x."]) + str(n)


def imap_string(rng, text):
    """An astring as atom, quoted string or literal: a list of (text, waits)
    fragments, a synchronising literal ending its fragment."""
    form = rng.choices(["atom", "quoted", "literal", "literal+"], [4, 3, 2, 1])[0]
    if form == "atom" and text and all(c.isalnum() or c in "@.+-_" for c in text):
        return [(text, False)]
    if form in ("atom", "quoted"):
        return [('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"', False)]
    size = len(text.encode("latin-1"))
    if form == "literal+":
        return [(f"{{{size}+}}\r\n{text}", False)]
    return [(f"{{{size}}}", True), (text, False)]


def imap_command(tag, verb, args):
    """Lines for `tag verb args...`; synchronising literals split the
    command where nginx answers `+` before the literal's bytes."""
    lines, current = [], f"{tag} {verb}".rstrip() if verb else tag
    for fragments in args:
        current += " "
        for text, waits in fragments:
            current += text
            if waits:
                lines.append(Line(current))
                current = ""
    lines.append(Line(current))
    return lines


def imap_noise(rng, tag):
    verb = rng.choice(["CAPABILITY", "NOOP", "STARTTLS", "SELECT INBOX", "ID NIL",
                       "ENABLE UTF8=ACCEPT", "XYZZY", "LOGIN", "LOGIN onlyuser",
                       "LOGIN a b c", "AUTHENTICATE", "AUTHENTICATE FOO", "CAPABILITY x",
                       "LOGIN {3}", "NOOP {2+}\r\nab", "", "LOGIN {99999999999999999999}",
                       "LOGIN {4294967297+}\r\nab", "LOGIN {2+}\r\nab{2+}\r\ncd",
                       "LOGIN {0}\r\n {0}\r\n"])
    return [Line(f"{tag} {verb}".rstrip())]


def imap_login(rng, tag):
    if rng.random() < 0.5:
        return imap_command(tag, "LOGIN", [imap_string(rng, rng.choice(USERS)),
                                           imap_string(rng, rng.choice(PASSWORDS))])
    arg, conts = sasl_login(rng, rng.choice(["PLAIN", "LOGIN", "CRAM-MD5", "EXTERNAL"]), "imap")
    if rng.random() < 0.1:
        conts = conts[:-1] + [odd_sasl_line(rng)]
    return [Line(f"{tag} AUTHENTICATE {arg}")] + [Line(c) for c in conts]


def imap_after_login(rng, next_tag):
    lines = [Line(f"{next_tag()} {rng.choice(['SELECT INBOX', 'FETCH 1 BODY[]', 'NOOP'])}")
             for _ in range(rng.randrange(0, 3))]
    return lines + [Line(f"{next_tag()} LOGOUT", final=True)]


# SMTP

def smtp_noise(rng, server):
    return rng.choice(["NOOP", "RSET", "HELP", "VRFY alice", "EXPN list", "STARTTLS",
                       "DATA", "BDAT 10", "XCLIENT ADDR=1.2.3.4", "XYZZY", "", "EHLO",
                       "HELO", "AUTH", "AUTH FOO", "MAIL FROM:<a@example.com>",
                       "RCPT TO:<b@example.com>", "NOOP extra", "HELO a b",
                       "EHLO " + rng.choice(DOMAINS)])


def smtp_login(rng, server):
    if server == "smtp_none" and rng.random() < 0.6:
        params = rng.choice(["", "", " SIZE=100", " BODY=8BITMIME"])
        lines = [Line(f"MAIL FROM:{rng.choice(ADDRESSES)}{params}")]
        lines += [Line(f"RCPT TO:{rng.choice(ADDRESSES)}") for _ in range(rng.randrange(1, 3))]
        return lines
    arg, conts = sasl_login(rng, rng.choice(["PLAIN", "LOGIN", "CRAM-MD5", "EXTERNAL"]), "smtp")
    if rng.random() < 0.1:
        conts = conts[:-1] + [odd_sasl_line(rng)]
    return [Line("AUTH " + arg)] + [Line(c) for c in conts]


def smtp_after_login(rng):
    lines = []
    if rng.random() < 0.6:
        lines += [Line("MAIL FROM:<a@example.com>"), Line("RCPT TO:<b@example.com>"),
                  Line("DATA"), Line("Subject: hi", reply=False), Line("", reply=False),
                  Line("body", reply=False), Line(".")]
    lines += [Line(rng.choice(["NOOP", "RSET", "VRFY x"])) for _ in range(rng.randrange(0, 2))]
    return lines + [Line("QUIT", final=True)]


def session_lines(rng, protocol, server):
    """The unmutated lines of one session."""
    counter = iter(range(1, 1000))

    def next_tag():
        return imap_tag(rng, next(counter))

    lines = []
    if protocol == "smtp" and rng.random() < 0.85:
        lines.append(Line(rng.choice(["EHLO", "HELO"]) + " " + rng.choice(DOMAINS)))
    for _ in range(rng.choices([0, 1, 2, 4], [4, 3, 2, 1])[0]):
        if protocol == "pop3":
            lines.append(Line(pop3_noise(rng)))
        elif protocol == "imap":
            lines += imap_noise(rng, next_tag())
        else:
            lines.append(Line(smtp_noise(rng, server)))
    logins = rng.choices([0, 1, 2], [15, 75, 10])[0]
    for _ in range(logins):
        if protocol == "pop3":
            lines += pop3_login(rng)
        elif protocol == "imap":
            lines += imap_login(rng, next_tag())
        else:
            lines += smtp_login(rng, server)
    if logins and rng.random() < 0.8:
        if protocol == "pop3":
            lines += pop3_after_login(rng)
        elif protocol == "imap":
            lines += imap_after_login(rng, next_tag)
        else:
            lines += smtp_after_login(rng)
    elif rng.random() < 0.5:
        quit_ = {"pop3": "QUIT", "imap": f"{next_tag()} LOGOUT", "smtp": "QUIT"}[protocol]
        lines.append(Line(quit_, final=True))
    return lines


# mutations

def mutate_line(rng, line, protocol):
    text = line.text
    kind = rng.choice(["case", "tab", "end", "nul", "8bit", "ctrl", "long", "cut",
                       "space", "dup"])
    if kind == "case":
        text = "".join(c.swapcase() if rng.random() < 0.5 else c for c in text)
    elif kind == "tab" and " " in text:
        i = rng.choice([i for i, c in enumerate(text) if c == " "])
        text = text[:i] + rng.choice(["\t", "  ", " \t", ""]) + text[i + 1:]
    elif kind == "end":
        line.end = rng.choice(["\n", "\r", "\r\r\n", " \r\n", "\t\r\n", ""])
    elif kind in ("nul", "8bit", "ctrl"):
        byte = {"nul": "\0", "8bit": chr(rng.randrange(0x80, 0x100)),
                "ctrl": chr(rng.choice([1, 8, 0x0b, 0x0c, 0x1b, 0x7f]))}[kind]
        i = rng.randrange(len(text) + 1)
        text = text[:i] + byte + text[i:]
    elif kind == "long":
        limit = BUFFER_LIMITS[protocol]
        target = limit + rng.randrange(-6, 5) - len(line.end)
        if len(text) < target:
            text = text + (" " if " " not in text else "") + "x" * (target - len(text) - 1)
    elif kind == "cut" and text:
        text = text[:rng.randrange(len(text))]
    elif kind == "space":
        text = rng.choice([" " + text, text + " ", text.replace(" ", "  ", 1)])
    elif kind == "dup":
        return [Line(text, line.reply, line.end), Line(text, line.reply, line.end, line.final)]
    line.text = text
    return [line]


def mutate(rng, lines, protocol):
    rate = rng.choice([0, 0.05, 0.15, 0.3])
    out = []
    for line in lines:
        out += mutate_line(rng, line, protocol) if rng.random() < rate else [line]
    return out


# packets

def packets(rng, lines):
    """Steps from lines: batches of pipelined lines, packet splits, the end."""
    steps = []
    pipelining = rng.random() < 0.25
    splitting = rng.random() < 0.2
    i = 0
    while i < len(lines):
        batch = [lines[i]]
        if pipelining and rng.random() < 0.5:
            while i + len(batch) < len(lines) and rng.random() < 0.6:
                batch.append(lines[i + len(batch)])
        i += len(batch)
        data = "".join(l.text + l.end for l in batch)
        wait = "reply" if batch[-1].reply and batch[-1].end else "none"
        if splitting and len(data) > 1 and rng.random() < 0.5:
            cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 4))))
            pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
            steps += [["send", p, rng.randrange(1, 6)] for p in pieces[:-1]]
            data = pieces[-1]
        steps.append(["send", data, wait])
        if batch[-1].final:
            break
    end = rng.choices(["read", "shut", "midcommand", "idle"], [45, 35, 12, 8])[0]
    if end == "midcommand" and steps:
        text = rng.choice(["NOOP", "a1 NOOP", "AUTH PLAIN", "USER alice", "RCPT TO:<"])
        steps.append(["send", text[:rng.randrange(1, len(text) + 1)], "none"])
    if end in ("shut", "midcommand"):
        steps.append(["shut"])
    return steps


# the auth server's answers

def auth_answer(rng, protocol, kind):
    status_line = "HTTP/1.0 200 OK"
    ok = ["Auth-Status: OK", "Auth-Server: 127.0.0.1", "Auth-Port: $PORT"]
    if rng.random() < 0.7:
        ok.append("Auth-Pass: " + rng.choice(["secret", "secret", "p w", "x%20y"]))
    if rng.random() < 0.1:
        ok.append("Auth-User: " + rng.choice(["other", "o t", "\xe9"]))
    if kind == "ok":
        headers = ok
    elif kind == "refuse":
        headers = ["Auth-Status: " + rng.choice(["Invalid login or password", "Go away", "x",
                                                  "-ERR nested", "temporary failure"])]
        wait = rng.choices(["", "Auth-Wait: 0", "Auth-Wait: 1"], [45, 45, 10])[0]
        headers += [wait] if wait else []
        if protocol == "smtp" and rng.random() < 0.5:
            headers.append("Auth-Error-Code: " + rng.choice(["451 4.3.0", "550 5.7.1", ""]))
    elif kind == "wait":
        headers = ["Auth-Status: WAIT"] + rng.choice([[], ["Auth-Wait: 0"], ["Auth-Wait: 0"],
                                                      ["Auth-Wait: 1"]])
    elif kind == "odd":
        return odd_answer(rng, protocol, ok)
    else:
        return rng.choice(["close", "close", "silent", "garbage\r\n\r\n",
                           "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Se"])
    return status_line + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"


def odd_answer(rng, protocol, ok):
    variant = rng.randrange(16)
    status, headers, end = "HTTP/1.0 200 OK", list(ok), "\r\n"
    if variant == 0:
        headers = [h.lower() for h in headers[:1]] + [h.upper() for h in headers[1:]]
    elif variant == 1:
        headers.insert(1, "Auth-Status: Second thoughts")
    elif variant == 2:
        headers = ["Auth-Status: Refused first"] + headers
    elif variant == 3:
        headers.remove(rng.choice(headers[1:3]))
    elif variant == 4:
        headers[1] = "Auth-Server: " + rng.choice(["localhost", "127.0.0.1:1", "::1", "", "1.2.3"])
    elif variant == 5:
        headers[2] = "Auth-Port: " + rng.choice(["abc", "0", "70000", "", "$PORTx", " $PORT"])
    elif variant == 6:
        headers = [h.replace(": ", rng.choice([":", ":   ", ":\t"]), 1) for h in headers]
    elif variant == 7:
        headers = [h + rng.choice(["  ", "\t", " ;"]) for h in headers]
    elif variant == 8:
        end = "\n"
    elif variant == 9:
        status = rng.choice(["HTTP/1.1 200 OK", "HTTP/1.0 500 Internal Server Error",
                             "HTTP/1.0 200", "HTTP/2 200", "garbage"])
    elif variant == 10:
        return status + "\r\n" + "".join(h + "\r\n" for h in headers) + "\r\nbody\r\n"
    elif variant == 11:
        headers.insert(rng.randrange(len(headers) + 1), rng.choice(
            ["no colon here", "Auth Status: OK", ": empty name", "X-Long: " + "v" * 1100]))
    elif variant == 12:
        headers = ["Auth-Status: " + rng.choice(["", "ok", "OK ", "Wait", " OK"])] + headers[1:]
    elif variant == 13:
        headers.append("Auth-Wait: " + rng.choice(["-1", "abc", "0x1", ""]))
    elif variant == 14:
        headers.append("Auth-Pass: " + rng.choice(["a\0b", "", "\xe9"]))
    else:
        headers.append("Auth-User: " + rng.choice(["a\0b", "", "x" * 200, "u\x7f"]))
    return status + end + "".join(h + end for h in headers) + end


def auth_answers(rng, protocol):
    count = rng.choices([1, 2, 3], [70, 20, 10])[0]
    kinds = rng.choices(["ok", "refuse", "wait", "odd", "fail"], [50, 20, 6, 20, 4], k=count)
    answers = [auth_answer(rng, protocol, k) for k in kinds]
    if kinds[-1] == "wait":  # a WAIT repeated for ever would never end
        answers.append(auth_answer(rng, protocol, "ok"))
    return answers


def generate(protocol, seed, index):
    rng = random.Random(f"{seed}/{protocol}/{index}")
    server = rng.choice([v for v, _, _ in VARIANTS[protocol]])
    lines = mutate(rng, session_lines(rng, protocol, server), protocol)
    return {
        "protocol": protocol,
        "server": server,
        "seed": seed,
        "index": index,
        "auth": auth_answers(rng, protocol),
        "backend": rng.choices(["ok", "refuse", "close", "garbage"], [85, 7, 4, 4])[0],
        "steps": packets(rng, lines),
    }
