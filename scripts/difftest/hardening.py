"""Differences that README.md lists under "Hardening beyond stock".

Each entry is (README item, predicate). A predicate sees the minimised case,
the difference (compare.compare's dict) and both runs' raw streams, and
says whether this difference is that item. Only items the README lists
belong here; anything else fails the run.
"""

import base64
import binascii
import re


def sent(case):
    """Everything the client sent, as one string."""
    return "".join(s[1] for s in case["steps"] if s[0] == "send")


def decoded_sasl(case):
    """Decoded base64 tokens of the client's lines."""
    out = []
    for token in re.findall(r"[A-Za-z0-9+/]{4,}={0,2}", sent(case)):
        try:
            out.append(base64.b64decode(token, validate=True).decode("latin-1"))
        except (binascii.Error, ValueError):
            pass
    return out


def ours_refuses(diff, *texts):
    return any(t in diff["ours_line"] for t in texts)


def sasl_credential_with_crlf_nul(case, diff, runs):
    """A decoded SASL login or password holding CR, LF or NUL is refused."""
    if diff["stream"] != "client" or not ours_refuses(diff, "invalid", "BAD", "501"):
        return False
    for blob in decoded_sasl(case):
        fields = blob.split("\0")
        if any(c in f for f in fields for c in "\r\n") or (len(fields) > 3):
            return True
        if "\0" in blob and not re.fullmatch(r"[^\0]*\0[^\0]*\0[^\0]*", blob):
            return True
    return False


def external_with_response_disabled(case, diff, runs):
    """AUTH EXTERNAL <response> refused unless external is enabled."""
    return (case["server"] in ("pop3_plain", "imap_plain", "smtp_none", "smtp_noxclient")
            and re.search(r"(?i)(AUTH|AUTHENTICATE)[ \t]+EXTERNAL[ \t]+\S", sent(case)) is not None
            and diff["stream"] == "client")


LISTED = [
    ("a decoded SASL login or password holding CR, LF or NUL is refused",
     sasl_credential_with_crlf_nul),
    ("AUTH EXTERNAL <response> is refused unless external is enabled",
     external_with_response_disabled),
]


def classify(case, diff, runs):
    """The README item a difference is, or None (unlisted)."""
    for item, predicate in LISTED:
        if predicate(case, diff, runs):
            return item
    return None
