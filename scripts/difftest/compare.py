"""Normalising the recorded streams, comparing them, and naming a difference.

What differs between two runs of the same case for reasons other than the
module: APOP/CRAM-MD5 salts `<pid.time@host>` (also base64-encoded in a
CRAM-MD5 challenge, and as Auth-Salt), and port numbers (each instance and
slot has its own). Those are replaced by placeholders.
"""

import base64
import binascii
import re

SALT = re.compile(rb"<\d+\.\d+@[^>\r\n]*>")
B64_CHALLENGE = re.compile(rb"^(\+ |334 )([A-Za-z0-9+/=]{16,})(\r?\n)", re.M)
STREAMS = ("client", "auth", "backend")


def _unsalt_challenge(m):
    try:
        decoded = base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        return m.group(0)
    if SALT.fullmatch(decoded):
        return m.group(1) + b"<B64-SALT>" + m.group(3)
    return m.group(0)


def normalise(data, port_names):
    data = B64_CHALLENGE.sub(_unsalt_challenge, data)
    data = SALT.sub(b"<SALT>", data)
    for port, name in port_names.items():
        data = re.sub(rb"(?<![0-9])%d(?![0-9])" % port, name.encode(), data)
    return data


def normalised(streams, port_names):
    """The three streams as comparable bytes (auth requests and backend
    connections joined with a visible separator)."""
    return {
        "client": normalise(streams.client, port_names),
        "auth": b"".join(b"=== request\n" + normalise(a, port_names) for a in streams.auth),
        "backend": b"".join(b"=== connection\n" + normalise(b, port_names)
                            for b in streams.backend),
    }


def lines(data):
    return data.splitlines(keepends=True)


def first_difference(a, b):
    """(index, line of a or None, line of b or None) of the first differing line."""
    la, lb = lines(a), lines(b)
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x != y:
            return i, x, y
    return None


IMAP_TAG = re.compile(rb"^[^ \r\n]+ (?=(OK|NO|BAD)\b)")
# the mock backend's answers: "+OK VERB done", "tag OK VERB done", "250 2.0.0 VERB ok"
BACKEND_ECHO = re.compile(rb"^(\+OK|<tag> OK|\d{3} [\d.]+) .* (done|ok|unknown)$")


def auth_texts(case):
    """The refusal texts the case's auth server answers, longest first."""
    texts = set()
    for answer in case["auth"]:
        for m in re.finditer(r"(?im)^Auth-(Status|Error-Code):[ \t]*(.*?)[ \t]*\r?$", answer):
            if m.group(2) and m.group(2) not in ("OK", "WAIT"):
                texts.add(m.group(2).encode("latin-1"))
    return sorted(texts, key=len, reverse=True)


def line_shape(line, case, stream):
    """A differing line with its arguments stripped, for signatures: IMAP
    tags, base64, the auth server's texts and the mock backend's echoes."""
    if line is None:
        return "<end>"
    protocol = case["protocol"]
    line = line.rstrip(b"\r\n")
    if stream == "client":
        if protocol == "imap":
            line = IMAP_TAG.sub(b"<tag> ", line)
        line = re.sub(rb"^(\+|334) [A-Za-z0-9+/=]+$", rb"\1 <base64>", line)
        texts = auth_texts(case)
        if texts:
            line = re.sub(b"|".join(re.escape(t) for t in texts), b"<auth text>", line)
        line = re.sub(rb"^\d{3} [\d.]+ <auth text>", b"<code> <auth text>", line)
        line = BACKEND_ECHO.sub(rb"\1 <backend>", line)
    elif stream == "auth":
        name, sep, _ = line.partition(b":")
        line = name + (b": ..." if sep else b"")
    else:
        line = b" ".join(line.split(b" ")[:1]) + b" ..."
    text = line[:60].decode("latin-1")
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c) for c in text)


def compare(case, stock, ours):
    """None when equal, else a dict describing the first difference."""
    protocol = case["protocol"]
    for stream in STREAMS:
        diff = first_difference(stock[stream], ours[stream])
        if diff:
            index, s_line, o_line = diff
            if stream != "client" and (s_line is None or o_line is None):
                # one side has more requests or bytes: which ones varies
                s_shape = "<end>" if s_line is None else "<more>"
                o_shape = "<end>" if o_line is None else "<more>"
            else:
                s_shape, o_shape = line_shape(s_line, case, stream), line_shape(o_line, case, stream)
            signature = f"{protocol} {stream}: stock «{s_shape}» ours «{o_shape}»"
            return {"stream": stream, "line": index, "signature": signature,
                    "stock_line": (s_line or b"").decode("latin-1"),
                    "ours_line": (o_line or b"").decode("latin-1")}
    return None
