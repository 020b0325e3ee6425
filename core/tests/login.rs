//! One whole login per protocol, in memory, the way the nginx module drives
//! the core: the client's bytes through the session's steps, the auth
//! request built from what the session learned, the auth server's answer
//! parsed and decided, and the backend login dialogue against a scripted
//! backend, to the reply the client finally sees.
//!
//! The client's input arrives split at every byte (and a byte at a time),
//! and so do the backend's replies; whatever the splits, the auth request,
//! the commands sent to the backend and what the client is told must be the
//! same bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;

use mail_core::auth_http::{decide, parse_response, Decision, Request};
use mail_core::upstream::UpstreamStep;
use mail_core::{
    auth_bits, base64, imap, pop3, sasl, sieve, smtp, Action, Credentials, StartTls, Step,
};

/// How a stream of bytes arrives: in two reads split at an offset, or one
/// byte per read.
#[derive(Clone, Copy, Debug)]
enum Split {
    At(usize),
    Bytes,
}

impl Split {
    /// Every way of splitting streams of up to `len` bytes.
    fn all(len: usize) -> impl Iterator<Item = Split> {
        (0..=len).map(Split::At).chain([Split::Bytes])
    }

    /// The reads `bytes` arrives in; a read is never empty.
    fn reads(self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let reads: Vec<&[u8]> = match self {
            Split::At(at) => {
                let (a, b) = bytes.split_at(at.min(bytes.len()));
                vec![a, b]
            }
            Split::Bytes => bytes.chunks(1).collect(),
        };
        reads
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    }
}

/// The command loop and `apply()` before login: every read is appended to
/// the buffer and stepped until the session needs more; replies go to the
/// client; the run ends when the session asks the auth server. Returns what
/// the client was sent and that last action.
fn client_phase<'c>(
    input: &[u8],
    split: Split,
    mut step: impl FnMut(&[u8]) -> Step<'c>,
) -> (Vec<u8>, Action<'c>) {
    let mut buf = Vec::new();
    let mut sent = Vec::new();
    for read in split.reads(input) {
        buf.extend_from_slice(&read);
        while let Step::Done { consumed, action } = step(&buf) {
            buf.drain(..consumed);
            match action {
                Action::Authenticate(_) | Action::Relay(_) => {
                    assert!(buf.is_empty(), "{split:?}: left over {buf:?}");
                    return (sent, action);
                }
                Action::Reply(_) | Action::Continue(_) => sent.extend_from_slice(action.reply()),
                other => panic!("{split:?}: {other:?}"),
            }
        }
    }
    panic!("{split:?}: the input ended before the session asked the auth server");
}

/// The auth request for what the client proved, as the module builds it
/// (no TLS, no PROXY header, an `auth_http_header`).
fn auth_request(creds: &Credentials, protocol: &[u8], client_host: &[u8]) -> Vec<u8> {
    Request {
        uri: b"/mail/auth",
        host: b"auth.example",
        method: creds.method,
        login: &creds.login,
        passwd: &creds.passwd,
        salt: b"",
        protocol,
        login_attempt: 1,
        client_ip: b"192.0.2.1",
        client_host,
        proxy_protocol: None,
        smtp: None,
        ssl: None,
        extra_headers: b"X-Auth-Key: secret\r\n",
        keepalive: false,
    }
    .build()
}

/// The auth server's answer read a byte at a time: incomplete until its
/// last byte, then parsed and decided.
fn auth_answer(response: &[u8], password_required: bool) -> Decision {
    for end in 0..response.len() {
        assert_eq!(parse_response(&response[..end]), Ok(None), "prefix {end}");
    }
    let parsed = parse_response(response)
        .expect("a valid response")
        .expect("a complete response");
    decide(parsed, true, password_required)
}

/// Where to log in, and as whom: the auth server's `Auth-User` and
/// `Auth-Pass` when it sent them, else the client's own.
fn proxy_to(decision: Decision, creds: &Credentials) -> (SocketAddr, Vec<u8>, Vec<u8>) {
    let Decision::Proxy {
        addr,
        login,
        passwd,
        ..
    } = decision
    else {
        panic!("{decision:?}");
    };
    (
        addr,
        login.unwrap_or_else(|| creds.login.clone()),
        passwd.unwrap_or_else(|| creds.passwd.clone()),
    )
}

/// A backend that greets, then answers each command it expects, in order.
struct Backend<'a> {
    greeting: &'a [u8],
    script: &'a [(&'a [u8], &'a [u8])],
}

impl Backend<'_> {
    fn longest_reply(&self) -> usize {
        self.script
            .iter()
            .map(|(_, reply)| reply.len())
            .chain([self.greeting.len()])
            .max()
            .unwrap_or(0)
    }
}

/// The proxy's buffer for the backend's replies (`proxy_buffer`).
const PROXY_BUFFER: usize = 4096;

/// The proxy's login dialogue: every read is appended to the buffer and
/// stepped; a line sent clears the buffer and lets the backend answer it.
/// Returns the commands sent and what the client is told once logged in.
fn backend_phase(
    backend: &Backend<'_>,
    split: Split,
    mut on_data: impl FnMut(&[u8], bool) -> UpstreamStep,
) -> (Vec<u8>, Vec<u8>) {
    let mut script = backend.script.iter();
    let mut reads: VecDeque<Vec<u8>> = split.reads(backend.greeting).into();
    let mut buf = Vec::new();
    let mut sent = Vec::new();
    loop {
        let read = reads
            .pop_front()
            .unwrap_or_else(|| panic!("{split:?}: waiting, but the backend said all it had"));
        buf.extend_from_slice(&read);
        match on_data(&buf, buf.len() >= PROXY_BUFFER) {
            UpstreamStep::NeedMore => {}
            UpstreamStep::Send(line) => {
                let (want, reply) = script
                    .next()
                    .unwrap_or_else(|| panic!("{split:?}: unexpected {line:?}"));
                assert_eq!(line, *want, "{split:?}");
                sent.extend_from_slice(&line);
                buf.clear();
                reads.extend(split.reads(reply));
            }
            UpstreamStep::LoggedIn => return (sent, finish(split, &reads, script, buf)),
            UpstreamStep::LoggedInReplacing(reply) => {
                return (sent, finish(split, &reads, script, reply.to_vec()))
            }
            other => panic!("{split:?}: {other:?}"),
        }
    }
}

/// Logged in: the backend has nothing more to say, nor the script to play.
fn finish<'a>(
    split: Split,
    reads: &VecDeque<Vec<u8>>,
    mut script: impl Iterator<Item = &'a (&'a [u8], &'a [u8])>,
    to_client: Vec<u8>,
) -> Vec<u8> {
    assert!(reads.is_empty(), "{split:?}: unread {reads:?}");
    assert!(script.next().is_none(), "{split:?}: logged in early");
    to_client
}

#[track_caller]
fn same(got: &[u8], want: &[u8], what: &str, splits: (Split, Split)) {
    assert_eq!(
        String::from_utf8_lossy(got),
        String::from_utf8_lossy(want),
        "{what}, client {:?}, backend {:?}",
        splits.0,
        splits.1
    );
}

#[test]
fn pop3_user_pass() {
    let caps = pop3::Capabilities::build(&[b"TOP", b"USER", b"UIDL"], auth_bits::PLAIN);
    let cfg = pop3::Config {
        auth_methods: auth_bits::PLAIN,
        capabilities: &caps,
        starttls: StartTls::Off,
        tls: false,
        salt: None,
    };
    let input: &[u8] = b"USER joe\r\nPASS se cret\r\n";
    let response: &[u8] = b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\
        Auth-Server: 127.0.0.1\r\nAuth-Port: 8110\r\n\r\n";
    let backend = Backend {
        greeting: b"+OK POP3 backend ready\r\n",
        script: &[
            (b"USER joe\r\n", b"+OK\r\n"),
            (b"PASS se cret\r\n", b"+OK 2 messages\r\n"),
        ],
    };
    let want_request: &[u8] = b"GET /mail/auth HTTP/1.0\r\nHost: auth.example\r\n\
        Auth-Method: plain\r\nAuth-User: joe\r\nAuth-Pass: se%20cret\r\n\
        Auth-Protocol: pop3\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.1\r\n\
        X-Auth-Key: secret\r\n\r\n";
    let want_client: &[u8] = b"+OK POP3 ready\r\n+OK\r\n+OK 2 messages\r\n";
    const GREETING: &[u8] = pop3::GREETING;

    let mut runs = 0;
    for client in Split::all(input.len()) {
        let mut session = pop3::Pop3Session::default();
        let (seen, action) = client_phase(input, client, |buf| session.step(buf, &cfg));
        let Action::Authenticate(creds) = action else {
            panic!("{action:?}");
        };
        let request = auth_request(&creds, b"pop3", b"");
        let (addr, login, passwd) = proxy_to(auth_answer(response, true), &creds);
        assert_eq!(addr, "127.0.0.1:8110".parse().unwrap());
        for upstream in Split::all(backend.longest_reply()) {
            let mut dialogue = pop3::LoginDialogue::new(&login, &passwd, None);
            let (sent, last) =
                backend_phase(&backend, upstream, |buf, full| dialogue.on_data(buf, full));
            let splits = (client, upstream);
            same(&request, want_request, "auth request", splits);
            same(&sent, b"USER joe\r\nPASS se cret\r\n", "backend", splits);
            let client_sees = [GREETING, &seen, &last].concat();
            same(&client_sees, want_client, "client", splits);
            runs += 1;
        }
    }
    assert_eq!(runs, (input.len() + 2) * (backend.longest_reply() + 2));
}

#[test]
fn imap_login_with_a_literal() {
    let caps = imap::Capabilities::build(&[b"IMAP4rev1"], auth_bits::PLAIN);
    let cfg = imap::Config {
        auth_methods: auth_bits::PLAIN,
        capabilities: &caps,
        starttls: StartTls::Off,
        tls: false,
        salt: None,
    };
    let input: &[u8] = b"a1 LOGIN {3}\r\njoe \"se \\\"cret\\\"\"\r\n";
    // the auth server names the backend's own user and password
    let response: &[u8] = b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\
        Auth-Server: 127.0.0.1\r\nAuth-Port: 8143\r\n\
        Auth-User: joe@backend\r\nAuth-Pass: back end\r\n\r\n";
    let backend = Backend {
        greeting: b"* OK IMAP4rev1 backend ready\r\n",
        script: &[
            (b"a1 LOGIN {11}\r\n", b"+ go ahead\r\n"),
            (b"joe@backend {8}\r\n", b"+ go ahead\r\n"),
            (
                b"back end\r\n",
                b"* CAPABILITY IMAP4rev1 IDLE\r\na1 OK LOGIN completed\r\n",
            ),
        ],
    };
    let want_request: &[u8] = b"GET /mail/auth HTTP/1.0\r\nHost: auth.example\r\n\
        Auth-Method: plain\r\nAuth-User: joe\r\nAuth-Pass: se%20\"cret\"\r\n\
        Auth-Protocol: imap\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.1\r\n\
        X-Auth-Key: secret\r\n\r\n";
    let want_backend: &[u8] = b"a1 LOGIN {11}\r\njoe@backend {8}\r\nback end\r\n";
    // the greeting, `+ OK` for the literal, then the backend's last reply
    let want_client: &[u8] = b"* OK IMAP4 ready\r\n+ OK\r\n\
        * CAPABILITY IMAP4rev1 IDLE\r\na1 OK LOGIN completed\r\n";
    const GREETING: &[u8] = imap::GREETING;

    let mut runs = 0;
    for client in Split::all(input.len()) {
        let mut session = imap::ImapSession::default();
        let (seen, action) = client_phase(input, client, |buf| session.step(buf, &cfg));
        let Action::Authenticate(creds) = action else {
            panic!("{action:?}");
        };
        assert_eq!(session.tag(), b"a1 ");
        let request = auth_request(&creds, b"imap", b"");
        let (addr, login, passwd) = proxy_to(auth_answer(response, true), &creds);
        assert_eq!(addr, "127.0.0.1:8143".parse().unwrap());
        for upstream in Split::all(backend.longest_reply()) {
            let mut dialogue = imap::LoginDialogue::new(session.tag(), &login, &passwd, None);
            let (sent, last) =
                backend_phase(&backend, upstream, |buf, full| dialogue.on_data(buf, full));
            let splits = (client, upstream);
            same(&request, want_request, "auth request", splits);
            same(&sent, want_backend, "backend", splits);
            let client_sees = [GREETING, &seen, &last].concat();
            same(&client_sees, want_client, "client", splits);
            runs += 1;
        }
    }
    assert_eq!(runs, (input.len() + 2) * (backend.longest_reply() + 2));
}

#[test]
fn smtp_ehlo_auth_plain_xclient() {
    let methods = auth_bits::PLAIN | auth_bits::LOGIN;
    let replies = smtp::Replies::build(b"mx.example", &[b"PIPELINING", b"SIZE 10240000"], methods);
    let cfg = smtp::Config {
        auth_methods: methods,
        capabilities: &replies,
        starttls: StartTls::Off,
        tls: false,
        salt: None,
    };
    // pipelined: both commands may come in one read
    let input = [
        &b"EHLO client.example\r\nAUTH PLAIN "[..],
        &base64::encode(b"\0joe\0se cret"),
        b"\r\n",
    ]
    .concat();
    let response: &[u8] = b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\
        Auth-Server: 127.0.0.1\r\nAuth-Port: 8025\r\n\r\n";
    let backend = Backend {
        greeting: b"220 backend.example ESMTP\r\n",
        script: &[
            (
                b"EHLO proxy.example\r\n",
                b"250-backend.example\r\n250-XCLIENT ADDR LOGIN NAME\r\n250 8BITMIME\r\n",
            ),
            (
                b"XCLIENT ADDR=192.0.2.1 LOGIN=joe NAME=client.example\r\n",
                b"220 backend.example ESMTP\r\n",
            ),
            (
                b"EHLO client.example\r\n",
                b"250-backend.example\r\n250 8BITMIME\r\n",
            ),
        ],
    };
    let want_request: &[u8] = b"GET /mail/auth HTTP/1.0\r\nHost: auth.example\r\n\
        Auth-Method: plain\r\nAuth-User: joe\r\nAuth-Pass: se%20cret\r\n\
        Auth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.1\r\n\
        Client-Host: client.example\r\nX-Auth-Key: secret\r\n\r\n";
    let want_backend: &[u8] = b"EHLO proxy.example\r\n\
        XCLIENT ADDR=192.0.2.1 LOGIN=joe NAME=client.example\r\n\
        EHLO client.example\r\n";
    // the banner, our EHLO reply, then our own 235 instead of the
    // backend's reply to the client's EHLO
    let want_client: &[u8] = b"220 mx.example ESMTP ready\r\n\
        250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
        250 AUTH PLAIN LOGIN\r\n\
        235 2.0.0 OK\r\n";
    let greeting = replies.greeting.clone();

    let mut runs = 0;
    for client in Split::all(input.len()) {
        let mut session = smtp::SmtpSession::default();
        let (seen, action) = client_phase(&input, client, |buf| session.step(buf, &cfg));
        let Action::Authenticate(creds) = action else {
            panic!("{action:?}");
        };
        let request = auth_request(&creds, b"smtp", b"client.example");
        let (addr, login, passwd) = proxy_to(auth_answer(response, false), &creds);
        assert_eq!(addr, "127.0.0.1:8025".parse().unwrap());
        for upstream in Split::all(backend.longest_reply()) {
            let mut dialogue = smtp::LoginDialogue::new(smtp::Login {
                server_name: b"proxy.example".to_vec(),
                xclient: true,
                smtp_auth: smtp::BackendAuth::Off,
                client_addr: b"192.0.2.1".to_vec(),
                client_ipv6: false,
                client_host: b"client.example".to_vec(),
                helo: session.helo().to_vec(),
                esmtp: session.esmtp,
                login: login.clone(),
                passwd: Some(passwd.clone()),
                envelope: None,
            });
            let (sent, last) =
                backend_phase(&backend, upstream, |buf, full| dialogue.on_data(buf, full));
            let splits = (client, upstream);
            same(&request, want_request, "auth request", splits);
            same(&sent, want_backend, "backend", splits);
            let client_sees = [&greeting[..], &seen, &last].concat();
            same(&client_sees, want_client, "client", splits);
            runs += 1;
        }
    }
    assert_eq!(runs, (input.len() + 2) * (backend.longest_reply() + 2));
}

/// The client's answer to an error challenge, split as `split`: the one
/// action it ends in.
fn answer_phase<'c>(
    input: &[u8],
    split: Split,
    mut step: impl FnMut(&[u8]) -> Step<'c>,
) -> Action<'c> {
    let mut buf = Vec::new();
    for read in split.reads(input) {
        buf.extend_from_slice(&read);
        if let Step::Done { consumed, action } = step(&buf) {
            assert_eq!(consumed, buf.len(), "{split:?}");
            return action;
        }
    }
    panic!("{split:?}: no answer");
}

/// A bearer token login the auth server refuses with `Auth-Error-SASL`, in
/// every protocol: the request, the error challenge the shell builds, the
/// dummy response and the refusal, whatever the splits.
#[test]
fn bearer_token_refused_with_an_error_challenge() {
    let methods = auth_bits::PLAIN | auth_bits::XOAUTH2 | auth_bits::OAUTHBEARER;
    let xoauth2 = base64::encode(b"user=joe@example.com\x01auth=Bearer t0k%n\x01\x01");
    let bearer = base64::encode(b"n,a=joe=2Cx,\x01host=mx\x01auth=Bearer t0k%n\x01\x01");
    // Auth-Wait: the session goes on after the refusal
    let response: &[u8] = b"HTTP/1.0 200 OK\r\nAuth-Status: Invalid token\r\n\
        Auth-Error-SASL: eyJzdGF0dXMiOiI0MDEifQ==\r\nAuth-Wait: 1\r\n\r\n";
    let request = |method: &str, user: &str, protocol: &str| {
        format!(
            "GET /mail/auth HTTP/1.0\r\nHost: auth.example\r\n\
            Auth-Method: {method}\r\nAuth-User: {user}\r\nAuth-Pass: t0k%25n\r\n\
            Auth-Protocol: {protocol}\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.1\r\n\
            X-Auth-Key: secret\r\n\r\n"
        )
        .into_bytes()
    };
    // what the shell makes of the decision
    let refusal = |prefix: &[u8], method, reply: Vec<u8>| -> (Vec<u8>, sasl::Refusal) {
        let Decision::Refused {
            sasl: Some(value),
            sleep: 1,
            ..
        } = auth_answer(response, true)
        else {
            panic!("not refused with a challenge");
        };
        let challenge = sasl::error_challenge(prefix, &value);
        (
            challenge,
            sasl::Refusal {
                method,
                reply,
                quit: false,
            },
        )
    };

    let pop3_caps = pop3::Capabilities::build(&[b"USER"], methods);
    let pop3_cfg = pop3::Config {
        auth_methods: methods,
        capabilities: &pop3_caps,
        starttls: StartTls::Off,
        tls: false,
        salt: None,
    };
    let input = [&b"AUTH XOAUTH2 "[..], &xoauth2, b"\r\n"].concat();
    for client in Split::all(input.len()) {
        let mut session = pop3::Pop3Session::default();
        let (seen, action) = client_phase(&input, client, |buf| session.step(buf, &pop3_cfg));
        assert!(seen.is_empty());
        let Action::Authenticate(creds) = action else {
            panic!("{action:?}");
        };
        let got = auth_request(&creds, b"pop3", b"");
        assert_eq!(
            got,
            request("xoauth2", "joe@example.com", "pop3"),
            "{client:?}"
        );
        session.reset();
        let (challenge, r) = refusal(
            b"+ ",
            creds.method,
            pop3::auth_error_reply(b"Invalid token"),
        );
        assert_eq!(challenge, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
        session.sasl_refused(r.clone());
        let action = answer_phase(b"\r\n", client, |buf| session.step(buf, &pop3_cfg));
        assert_eq!(action, Action::Reply(b"-ERR Invalid token\r\n"[..].into()));
        // OAUTHBEARER's dummy is not XOAUTH2's
        session.sasl_refused(r);
        let action = answer_phase(b"AQ==\r\n", client, |buf| session.step(buf, &pop3_cfg));
        assert_eq!(
            action.reply(),
            pop3::INVALID_COMMAND,
            "XOAUTH2's dummy is empty"
        );
    }

    let imap_caps = imap::Capabilities::build(&[b"IMAP4rev1"], methods);
    let imap_cfg = imap::Config {
        auth_methods: methods,
        capabilities: &imap_caps,
        starttls: StartTls::Off,
        tls: false,
        salt: None,
    };
    let input: &[u8] = b"a1 AUTHENTICATE OAUTHBEARER\r\n";
    for client in Split::all(input.len()) {
        let mut session = imap::ImapSession::default();
        let (seen, action) = client_phase(&[input, &bearer, b"\r\n"].concat(), client, |buf| {
            session.step(buf, &imap_cfg)
        });
        assert_eq!(seen, b"+ \r\n");
        let Action::Authenticate(creds) = action else {
            panic!("{action:?}");
        };
        let got = auth_request(&creds, b"imap", b"");
        assert_eq!(got, request("oauthbearer", "joe,x", "imap"), "{client:?}");
        session.reset();
        let reply = session.auth_error_reply(b"Invalid token");
        let (challenge, r) = refusal(b"+ ", creds.method, reply);
        assert_eq!(challenge, b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
        session.sasl_refused(r);
        let action = answer_phase(b"AQ==\r\n", client, |buf| session.step(buf, &imap_cfg));
        assert_eq!(action, Action::Reply(b"a1 NO Invalid token\r\n"[..].into()));
        // the next command brings its own tag
        let action = answer_phase(b"NOOP\r\n", Split::Bytes, |buf| {
            session.step(buf, &imap_cfg)
        });
        assert_eq!(action.reply(), b"* BAD invalid command\r\n");
    }

    let replies = smtp::Replies::build(b"mx.example", &[], methods);
    let smtp_cfg = smtp::Config {
        auth_methods: methods,
        capabilities: &replies,
        starttls: StartTls::Off,
        tls: false,
        salt: None,
    };
    let input = [&b"EHLO c\r\nAUTH XOAUTH2 "[..], &xoauth2, b"\r\n"].concat();
    for client in Split::all(input.len()) {
        let mut session = smtp::SmtpSession::default();
        let (_, action) = client_phase(&input, client, |buf| session.step(buf, &smtp_cfg));
        let Action::Authenticate(creds) = action else {
            panic!("{action:?}");
        };
        session.reset();
        let reply = smtp::auth_error_reply(b"Invalid token", None);
        let (challenge, mut r) = refusal(b"334 ", creds.method, reply);
        assert_eq!(challenge, b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n");
        // no Auth-Wait: the refusal ends the session
        r.quit = true;
        session.sasl_refused(r);
        let action = answer_phase(b"\r\n", Split::Bytes, |buf| session.step(buf, &smtp_cfg));
        assert_eq!(
            action,
            Action::Quit(b"535 5.7.0 Invalid token\r\n"[..].into())
        );
    }
}

#[test]
fn sieve_authenticate_plain_literal() {
    let caps = sieve::Capabilities::build(&[b"\"SIEVE\" \"fileinto\""], auth_bits::PLAIN);
    let cfg = sieve::Config {
        auth_methods: auth_bits::PLAIN,
        capabilities: &caps,
        starttls: StartTls::Off,
        tls: false,
        salt: None,
    };
    // as sieve-connect sends it: the initial response as a literal
    let plain = base64::encode(b"\0joe\0se cret");
    let input = [
        &b"NOOP \"resync\"\r\nAUTHENTICATE \"PLAIN\" {"[..],
        plain.len().to_string().as_bytes(),
        b"+}\r\n",
        &plain,
        b"\r\n",
    ]
    .concat();
    let response: &[u8] = b"HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\
        Auth-Server: 127.0.0.1\r\nAuth-Port: 4190\r\nAuth-Pass: back\"end\r\n\r\n";
    let backend = Backend {
        greeting: b"\"IMPLEMENTATION\" \"Backend\"\r\n\"SASL\" \"PLAIN\"\r\n\
            \"SIEVE\" \"fileinto\"\r\nOK \"Backend ready.\"\r\n",
        script: &[(
            b"AUTHENTICATE \"PLAIN\" \"AGpvZQBiYWNrImVuZA==\"\r\n",
            b"OK \"Logged in.\"\r\n",
        )],
    };
    let want_request: &[u8] = b"GET /mail/auth HTTP/1.0\r\nHost: auth.example\r\n\
        Auth-Method: plain\r\nAuth-User: joe\r\nAuth-Pass: se%20cret\r\n\
        Auth-Protocol: sieve\r\nAuth-Login-Attempt: 1\r\nClient-IP: 192.0.2.1\r\n\
        X-Auth-Key: secret\r\n\r\n";
    // the greeting, the NOOP's TAG, then the backend's OK
    let want_client: &[u8] = b"\"SIEVE\" \"fileinto\"\r\n\"SASL\" \"PLAIN\"\r\n\
        OK \"ManageSieve ready\"\r\nOK (TAG \"resync\") \"completed\"\r\n\
        OK \"Logged in.\"\r\n";
    let greeting = sieve::greeting(&cfg);

    let mut runs = 0;
    for client in Split::all(input.len()) {
        let mut session = sieve::SieveSession::default();
        let (seen, action) = client_phase(&input, client, |buf| session.step(buf, &cfg));
        let Action::Authenticate(creds) = action else {
            panic!("{action:?}");
        };
        let request = auth_request(&creds, b"sieve", b"");
        let (addr, login, passwd) = proxy_to(auth_answer(response, true), &creds);
        assert_eq!(addr, "127.0.0.1:4190".parse().unwrap());
        for upstream in Split::all(backend.longest_reply()) {
            let mut dialogue = sieve::LoginDialogue::new(&login, &passwd);
            let (sent, last) =
                backend_phase(&backend, upstream, |buf, full| dialogue.on_data(buf, full));
            let splits = (client, upstream);
            same(&request, want_request, "auth request", splits);
            same(&sent, backend.script[0].0, "backend", splits);
            let client_sees = [greeting, &seen, &last].concat();
            same(&client_sees, want_client, "client", splits);
            runs += 1;
        }
    }
    assert_eq!(runs, (input.len() + 2) * (backend.longest_reply() + 2));
}
