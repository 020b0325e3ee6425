"""Differences that README.md lists under "Hardening beyond stock".

LISTED maps each README item to a predicate over the minimised case, the
difference (compare.compare's dict) and both runs' normalised streams
({"stock": {...}, "ours": {...}}, bytes per stream). A predicate asks for
evidence of its item in the case itself (the input that triggers it) and in
the streams (the effect the README describes); anything no predicate claims
is UNLISTED and fails the run.

To add an item: write the README bullet first, then a predicate here with
the narrowest evidence that tells it apart, and a line in LISTED naming the
bullet. Items that a session against a running nginx cannot show (zeroed
memory, worker_shutdown_timeout) have no entry. BEYOND_STOCK holds the
features the directive table marks **beyond stock** that the tester's
configuration (stock's defaults) can meet.
"""

import base64
import binascii
import re

from .instances import BUFFER_LIMITS


def sent(case):
    """Everything the client sent, as one string."""
    return "".join(s[1] for s in case["steps"] if s[0] == "send")


def lenient_b64(token):
    """Base64 as nginx decodes it: padding optional."""
    try:
        return base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def is_error(line):
    return bool(re.search(r"^-ERR|^\S* BAD|^\S* NO|^5\d\d|^4\d\d", line))


def prefixes(streams):
    """Stock ended earlier on every stream, with the same bytes up to there."""
    return all(streams["ours"][k].startswith(streams["stock"][k]) for k in streams["stock"])


def sasl_credential_with_crlf_nul(case, diff, streams):
    """Stock passed a SASL login or password with CR, LF or NUL to the auth
    server (escaped %0D, %0A, %00); ours refused the command instead."""
    if not re.search(r"(?im)^\S*\s*(AUTH|AUTHENTICATE)\b", sent(case)):
        return False
    bad = re.compile(rb"^Auth-(User|Pass): .*%(00|0D|0A)", re.M | re.I)
    if bad.search(streams["stock"]["auth"]) and not bad.search(streams["ours"]["auth"]):
        return True
    # or a SASL response (an initial response, or a whole line) decodes to
    # it, and ours answered with an error
    data = sent(case)
    tokens = re.findall(r"(?im)^\S*[ \t]*(?:AUTH|AUTHENTICATE)[ \t]+\S+[ \t]+(\S+)", data)
    tokens += [line.strip() for line in data.splitlines()]
    for token in tokens:
        blob = lenient_b64(token) if re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", token) else None
        if blob and (b"\r" in blob or b"\n" in blob or blob.count(b"\0") not in (0, 2)):
            return is_error(diff["ours_line"])
    return False


def external_with_response_disabled(case, diff, streams):
    """AUTH EXTERNAL <response> on a server without `external`: ours
    refuses the command, stock goes to the auth server."""
    return (not case["server"].endswith("_all")
            and re.search(r"(?i)(AUTH|AUTHENTICATE)[ \t]+EXTERNAL[ \t]+\S", sent(case)) is not None
            and b"Auth-Method: external" in streams["stock"]["auth"]
            and b"Auth-Method: external" not in streams["ours"]["auth"])


def imap_empty_tag(case, diff, streams):
    """A command with an empty tag (the line starts with a space): stock
    runs it (or answers ` BAD` with the empty tag), ours answers `* BAD`."""
    return (case["protocol"] == "imap" and diff["stream"] == "client"
            and re.search(r"(?m)^ ", sent(case)) is not None
            and diff["ours_line"].startswith("* BAD invalid command"))


def imap_literal_overflow(case, diff, streams):
    """A literal length that overflows is refused instead of wrapping."""
    return case["protocol"] == "imap" and re.search(r"\{\d{10,}\+?\}", sent(case)) is not None


def imap_empty_literal(case, diff, streams):
    """`{0}` is an empty literal; stock takes one byte of what follows.
    Stock reads `{}` as `{0}` too (it answers `+ OK` to both); `{+}` is no
    literal for either."""
    return case["protocol"] == "imap" and re.search(r"\{(?:0+\+?)?\}", sent(case)) is not None


def imap_literal_behind_literal(case, diff, streams):
    """As nginx 1.29.6: a literal is followed by SP or CRLF only (a literal
    right behind a literal included); stock 1.28 reads on."""
    if case["protocol"] != "imap":
        return False
    data = sent(case)
    for m in re.finditer(r"\{(\d{1,6})\+?\}\r?\n", data):
        after = m.end() + int(m.group(1))
        if data[after:after + 1] not in ("", " ", "\r", "\n"):
            return True
    return False


def imap_authenticate_login_tag(case, diff, streams):
    """A bad user name in AUTHENTICATE LOGIN: ours answers with the tag,
    stock omits it."""
    return (case["protocol"] == "imap" and diff["stream"] == "client"
            and re.search(r"(?i)AUTHENTICATE[ \t]+LOGIN", sent(case)) is not None
            and re.match(r" ?BAD", diff["stock_line"]) is not None
            and re.match(r"[^ *]+ BAD", diff["ours_line"]) is not None)


def auth_requests(stream):
    """An auth stream's requests, each as {header name: value}."""
    out = []
    for block in stream.split(b"=== request\n")[1:]:
        fields = {}
        for line in block.splitlines():
            name, sep, value = line.partition(b": ")
            if sep:
                fields.setdefault(name.decode("latin-1"), value)
        out.append(fields)
    return out


def retry_without_old_secret(case, diff, streams):
    """A retry after a refusal that waited (Auth-Wait) carries no password
    or digest of the refused attempt. Seen in the auth stream, or first in
    what follows from it: with the old password stock logs in to the
    backend where ours, with none, answers internal server error."""
    if not any(re.search(r"Auth-Wait: *[1-9]", a) for a in case["auth"]):
        return False
    if diff["stream"] == "auth" and re.match(r"Auth-(Pass|Salt)", diff["stock_line"]):
        before = streams["stock"]["auth"].splitlines(keepends=True)[:diff["line"]]
        return before.count(b"=== request\n") >= 2
    stock, ours = (auth_requests(streams[k]["auth"]) for k in ("stock", "ours"))
    for i in range(1, min(len(stock), len(ours))):
        old = {r.get("Auth-Pass") for r in stock[:i]} - {None, b""}
        if stock[i].get("Auth-Pass") in old and ours[i].get("Auth-Pass") == b"":
            return True
    return False


def pipelined_batch_compacted(case, diff, streams):
    """Commands arriving in one batch that crosses the command buffer
    (each line fits): stock refuses the line that crosses its end as too
    long, ours compacts the buffer and goes on."""
    limit = BUFFER_LIMITS[case["protocol"]]
    groups, group = [], ""
    for step in case["steps"]:
        if step[0] != "send":
            continue
        group += step[1]
        if step[2] == "reply" and step[1].endswith("\n"):
            groups.append(group)  # answered: the buffer may start afresh
            group = ""
    for group in groups + [group]:
        offset = 0
        for line in group.splitlines(keepends=True):
            offset += len(line)
            if offset > limit and len(line) <= limit:
                return is_error(diff["stock_line"]) or not diff["stock_line"]
    return False


def pop3_backend_login_nul(case, diff, streams):
    """The POP3 backend login with a NUL (or CR) in the user or password:
    stock sends it in USER/PASS, ours answers -ERR internal server error."""
    return (case["protocol"] == "pop3"
            and re.search(rb"(?m)^(USER|PASS) [^\n]*[\0\r][^\n]*\n", streams["stock"]["backend"])
            is not None
            and b"-ERR internal server error" in streams["ours"]["client"])


def smtp_pipelined_behind_refused_mail(case, diff, streams):
    """Without `smtp_auth none`, commands that arrived with a refused MAIL
    still run in ours; stock turns their CR and LF into `_` when it logs the
    refusal, so they are lost, run together into one invalid line, or read
    as another credential. The difference comes after the 530 reply.
    Whether bytes sent after the MAIL line arrived in the same read is up
    to timing (the client runs ahead of replies to earlier lines), so any
    bytes behind it count."""
    if case["protocol"] != "smtp" or case["server"] == "smtp_none":
        return False
    if re.search(r"(?i)(?:^|\n)MAIL[^\n]*\n.", sent(case), re.S) is None:
        return False
    if diff["stream"] == "auth":
        return b"530 5.7.1" in streams["stock"]["client"]
    if diff["stream"] != "client":
        return False
    before = b"".join(streams["stock"]["client"].splitlines(keepends=True)[:diff["line"]])
    return b"530 5.7.1" in before


def half_close_after_login(case, diff, streams):
    """After login, a side that closed its write half: ours keeps the other
    direction flowing, stock ends the session at once; so stock's streams
    are the beginning of ours."""
    backend_closed = re.search(r"(?im)^(\S+ )?(QUIT|LOGOUT)\b", sent(case)) is not None
    client_closed = any(s[0] == "shut" for s in case["steps"])
    # stock may cut the last line short: what it relayed is a prefix
    return (streams["ours"]["backend"] != b"" and (backend_closed or client_closed)
            and prefixes(streams) and diff["ours_line"].startswith(diff["stock_line"]))


def imap_id_before_login(case, diff, streams):
    """IMAP ID before login: ours answers it (`* ID NIL`), stock says BAD."""
    # its effect may show first in what follows: the ID is no error, so
    # a later max_errors close comes later, or not at all
    return (case["protocol"] == "imap"
            and re.search(r"(?im)^\S* ID\b", sent(case)) is not None
            and re.search(rb"(?m)^\* ID ", streams["ours"]["client"]) is not None
            and re.search(rb"(?m)^\* ID ", streams["stock"]["client"]) is None)


def wait_without_delay(case, diff, streams):
    """`Auth-Status: WAIT` with no (or a zero) `Auth-Wait`: stock asks the
    auth server again for ever, ours acts on the next answer; stock's auth
    stream has more requests."""
    waits = [a for a in case["auth"]
             if re.search(r"(?im)^Auth-Status:[ \t]*WAIT[ \t]*\r?$", a)
             and not re.search(r"(?im)^Auth-Wait:[ \t]*[1-9]", a)]
    requests = {k: streams[k]["auth"].count(b"=== request\n") for k in streams}
    return bool(waits) and requests["stock"] > requests["ours"]


def smtp_empty_auth_status(case, diff, streams):
    """SMTP: an empty `Auth-Status` is a refusal in ours (`535 5.7.0`);
    stock takes it for OK."""
    empty = any(re.search(r"(?im)^Auth-Status:[ \t]*\r?$", a) for a in case["auth"])
    return (case["protocol"] == "smtp" and empty
            and b"535 5.7.0" in streams["ours"]["client"]
            and b"535 5.7.0" not in streams["stock"]["client"])


def imap_continuation_measured_alone(case, diff, streams):
    """IMAP: an AUTHENTICATE continuation line that fits `imap_client_buffer`
    on its own, but not with the AUTHENTICATE stock keeps in its buffer:
    stock refuses it as too long, ours takes it."""
    limit = BUFFER_LIMITS["imap"]
    data = sent(case)
    if case["protocol"] != "imap" or "BAD invalid command" not in diff["stock_line"]:
        return False
    # any line of an exchange (LOGIN asks twice, PLAIN and CRAM-MD5 once)
    for command in re.finditer(r"(?im)^\S+ AUTHENTICATE\b[^\n]*\n", data):
        rest = data[command.end():].splitlines(keepends=True)
        if any(len(line) <= limit < len(command.group(0)) + len(line) for line in rest[:2]):
            return True
    return False


def imap_tag_after_wait(case, diff, streams):
    """IMAP: after a refusal with `Auth-Wait`, an invalid line gets `* BAD`
    in ours; stock answers with a tag cut from the line at the old tag's
    length."""
    waited = any(re.search(r"(?im)^Auth-Wait:[ \t]*[1-9]", a) for a in case["auth"])
    if not (case["protocol"] == "imap" and waited and diff["stream"] == "client"
            and diff["ours_line"].startswith("* BAD")):
        return False
    # the cut tag may hold the line's own CR or LF, which splits the reply
    rest = b"".join(streams["stock"]["client"].splitlines(keepends=True)[diff["line"]:])
    cut = re.match(rb"(.{0,16}?)BAD invalid command\r\n", rest, re.S)
    return cut is not None and cut.group(1) != b"* "


def cram_digest_left_behind(case, diff, streams):
    """A CRAM-MD5 response whose digest has the wrong length (SMTP AUTH,
    IMAP AUTHENTICATE); stock keeps it as the password and sends it with a
    following EXTERNAL, ours sends none."""
    data = sent(case)
    return (diff["stream"] == "auth"
            and re.search(r"(?i)AUTH(ENTICATE)? CRAM-MD5", data) is not None
            and re.search(r"(?i)AUTH(ENTICATE)? EXTERNAL", data) is not None
            and diff["stock_line"].startswith("Auth-Pass: ")
            and diff["stock_line"].strip() != "Auth-Pass:")


def smtp_none_no_stale_login(case, diff, streams):
    """SMTP with `smtp_auth none`: a login name from an AUTH exchange
    refused halfway after MAIL; stock clears credentials at MAIL only and
    sends it as `Auth-User`, ours sends none."""
    return (case["protocol"] == "smtp" and case["server"] == "smtp_none"
            and diff["stream"] == "auth"
            and re.search(r"(?i)AUTH[ \t]+(LOGIN|PLAIN|CRAM-MD5)", sent(case)) is not None
            and re.match(r"Auth-User: \S", diff["stock_line"]) is not None
            and diff["ours_line"] == "Auth-User: \r\n")


def quit_discards_unread(case, diff, streams):
    """A session that ends after its last reply: stock closed over bytes
    the client sent and nobody read, and the reset cut the client's stream
    short; ours delivered the rest. Stock's client stream is the start of
    ours, the other streams the same."""
    stock, ours = streams["stock"], streams["ours"]
    return (diff["stream"] == "client" and diff["stock_line"] == ""
            and ours["client"].startswith(stock["client"])
            and stock["auth"] == ours["auth"] and stock["backend"] == ours["backend"])


LISTED = [
    ("a decoded SASL login or password holding CR, LF or NUL is refused",
     sasl_credential_with_crlf_nul),
    ("AUTH EXTERNAL <response> is refused unless external is enabled",
     external_with_response_disabled),
    ("IMAP: an empty tag is refused (* BAD)", imap_empty_tag),
    ("IMAP: a literal length that overflows is refused", imap_literal_overflow),
    ("IMAP: a {0} literal is empty", imap_empty_literal),
    ("IMAP: a bad user name in AUTHENTICATE LOGIN gets a tagged BAD",
     imap_authenticate_login_tag),
    ("IMAP: a literal is followed by SP or CRLF only", imap_literal_behind_literal),
    ("a retry after a refusal starts with no password or digest of the refused attempt",
     retry_without_old_secret),
    ("a pipelined batch that crosses the command buffer is compacted",
     pipelined_batch_compacted),
    ("the POP3 backend login refuses a user name or password holding CR, LF or NUL",
     pop3_backend_login_nul),
    ("SMTP: commands pipelined behind a refused MAIL still run",
     smtp_pipelined_behind_refused_mail),
    ("after login, a side that closes only its write half is half-closed",
     half_close_after_login),
    ("SMTP with smtp_auth none: the login of an AUTH exchange refused halfway is not sent",
     smtp_none_no_stale_login),
    ("a session that ends after its last reply first discards what the client sent",
     quit_discards_unread),
    ("after Auth-Status: WAIT with no Auth-Wait, the session acts on the next answer",
     wait_without_delay),
    ("SMTP: an empty Auth-Status is a refusal (535 5.7.0)", smtp_empty_auth_status),
    ("IMAP: an AUTHENTICATE continuation line is measured on its own",
     imap_continuation_measured_alone),
    ("IMAP: after a refusal with Auth-Wait, an invalid line is answered * BAD",
     imap_tag_after_wait),
    ("a CRAM-MD5 digest of the wrong length leaves nothing behind",
     cram_digest_left_behind),
]


# Features the README's directive table marks **beyond stock**, outside the
# hardening list; a session with default directives can meet these.
BEYOND_STOCK = [
    ("beyond stock: imap_id, ID before login answered by the proxy (RFC 2971)",
     imap_id_before_login),
]


def classify(case, diff, streams):
    """The README item a difference is, or None (unlisted)."""
    for item, predicate in LISTED + BEYOND_STOCK:
        if predicate(case, diff, streams):
            return item
    return None
