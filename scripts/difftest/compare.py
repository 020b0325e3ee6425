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


def line_shape(line, protocol, stream):
    """A differing line with its arguments stripped, for signatures."""
    if line is None:
        return "<end>"
    line = line.rstrip(b"\r\n")
    if stream == "client":
        if protocol == "imap":
            line = IMAP_TAG.sub(b"<tag> ", line)
        line = re.sub(rb"^(\+|334) [A-Za-z0-9+/=]+$", rb"\1 <base64>", line)
    elif stream == "auth":
        name, sep, _ = line.partition(b":")
        line = name + (b": ..." if sep else b"")
    else:
        line = b" ".join(line.split(b" ")[:1]) + b" ..."
    text = line[:60].decode("latin-1")
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c) for c in text)


def compare(protocol, stock, ours):
    """None when equal, else a dict describing the first difference."""
    for stream in STREAMS:
        diff = first_difference(stock[stream], ours[stream])
        if diff:
            index, s_line, o_line = diff
            signature = (f"{protocol} {stream}: stock «{line_shape(s_line, protocol, stream)}»"
                         f" ours «{line_shape(o_line, protocol, stream)}»")
            return {"stream": stream, "line": index, "signature": signature,
                    "stock_line": (s_line or b"").decode("latin-1"),
                    "ours_line": (o_line or b"").decode("latin-1")}
    return None
