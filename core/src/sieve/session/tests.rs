use super::*;
use crate::base64::encode;
use crate::{auth_bits, AuthMethod, Credentials};

const METHODS: usize = auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::CRAM_MD5;

fn caps() -> Capabilities {
    Capabilities::build(&[b"\"SIEVE\" \"fileinto\""], METHODS)
}

fn cfg(caps: &Capabilities, starttls: StartTls, tls: bool) -> Config<'_> {
    Config {
        auth_methods: METHODS,
        capabilities: caps,
        starttls,
        tls,
        salt: Some(b"<1.2@h>\r\n"),
    }
}

/// One whole line in, its action out.
fn action<'c>(s: &mut SieveSession, cfg: &Config<'c>, line: &[u8]) -> Action<'c> {
    match s.step(line, cfg) {
        Step::Done { consumed, action } => {
            assert_eq!(consumed, line.len(), "{line:?}");
            action
        }
        other => panic!("{line:?}: {other:?}"),
    }
}

fn text(a: Action) -> String {
    assert!(!matches!(a, Action::Authenticate(_)), "authenticate");
    String::from_utf8_lossy(a.reply()).into_owned()
}

fn login(a: Action) -> Credentials {
    match a {
        Action::Authenticate(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn replies() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off, false);
    let mut s = SieveSession::default();
    assert_eq!(
        text(action(&mut s, &cfg, b"CAPABILITY\r\n")),
        "\"SIEVE\" \"fileinto\"\r\n\"SASL\" \"PLAIN LOGIN CRAM-MD5\"\r\nOK \"completed\"\r\n"
    );
    assert_eq!(
        text(action(&mut s, &cfg, b"noop\r\n")),
        "OK \"completed\"\r\n"
    );
    assert_eq!(
        text(action(&mut s, &cfg, b"NOOP \"STARTTLS-RESYNC-CAPA\"\r\n")),
        "OK (TAG \"STARTTLS-RESYNC-CAPA\") \"completed\"\r\n"
    );
    assert_eq!(
        text(action(&mut s, &cfg, b"NOOP {3+}\r\na\"b\r\n")),
        "OK (TAG \"a\\\"b\") \"completed\"\r\n"
    );
    assert_eq!(
        text(action(&mut s, &cfg, b"NOOP {3+}\r\na\nb\r\n")),
        "OK (TAG {3}\r\na\nb) \"completed\"\r\n"
    );
    let quit = action(&mut s, &cfg, b"LOGOUT\r\n");
    assert_eq!(quit, Action::Quit(Cow::Borrowed(COMPLETED)));
}

#[test]
fn refusals_and_errors() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off, false);
    let mut s = SieveSession::default();
    // the parser's: counted toward max_errors
    for line in [
        &b"FOO\r\n"[..],
        b"LISTSCRIPTS\r\n",
        b"NOOP abc\r\n",
        b"\r\n",
    ] {
        assert_eq!(
            action(&mut s, &cfg, line),
            Action::Invalid {
                reason: Invalid(None),
                reply: Cow::Borrowed(INVALID),
                quit: false,
                counted: true
            },
            "{line:?}"
        );
    }
    // a literal that was not read: its data would follow
    assert!(matches!(
        action(&mut s, &cfg, b"NOOP {99999999999999999999999+}\r\n"),
        Action::Invalid {
            quit: true,
            counted: true,
            ..
        }
    ));
    // well-formed, refused here: not counted
    for line in [
        &b"CAPABILITY \"x\"\r\n"[..],
        b"NOOP \"a\" \"b\"\r\n",
        b"LOGOUT \"x\"\r\n",
        b"STARTTLS\r\n",
        b"AUTHENTICATE\r\n",
        b"AUTHENTICATE \"GSSAPI\"\r\n",
        b"AUTHENTICATE \"PLAIN\" \"!!!\"\r\n",
    ] {
        assert!(
            matches!(
                action(&mut s, &cfg, line),
                Action::Invalid {
                    counted: false,
                    quit: false,
                    reply: Cow::Borrowed(INVALID),
                    ..
                }
            ),
            "{line:?}"
        );
    }
    // and the session goes on
    assert_eq!(
        text(action(&mut s, &cfg, b"NOOP\r\n")),
        "OK \"completed\"\r\n"
    );
    assert_eq!(s.too_long(), Action::Quit(Cow::Borrowed(BYE)));
}

#[test]
fn starttls() {
    let caps = caps();
    let on = cfg(&caps, StartTls::On, false);
    let mut s = SieveSession::default();
    assert!(text(action(&mut s, &on, b"CAPABILITY\r\n")).contains("\"STARTTLS\"\r\n"));
    assert_eq!(
        action(&mut s, &on, b"STARTTLS\r\n"),
        Action::StartTls(Cow::Borrowed(COMPLETED))
    );
    // after the handshake: the block without STARTTLS, and no second one
    let tls = cfg(&caps, StartTls::On, true);
    assert_eq!(
        String::from_utf8_lossy(capability(&tls)),
        "\"SIEVE\" \"fileinto\"\r\n\"SASL\" \"PLAIN LOGIN CRAM-MD5\"\r\nOK \"completed\"\r\n"
    );
    assert!(matches!(
        action(&mut s, &tls, b"STARTTLS\r\n"),
        Action::Invalid { counted: false, .. }
    ));

    // starttls only: no mechanism, and no login, before TLS
    let only = cfg(&caps, StartTls::Only, false);
    assert!(String::from_utf8_lossy(greeting(&only)).contains("\"SASL\" \"\"\r\n\"STARTTLS\"\r\n"));
    let plain = encode(b"\0u\0p");
    let line = [&b"AUTHENTICATE \"PLAIN\" \""[..], &plain, b"\"\r\n"].concat();
    assert_eq!(
        text(action(&mut s, &only, &line)),
        "NO (ENCRYPT-NEEDED) \"TLS required\"\r\n"
    );
    let tls = cfg(&caps, StartTls::Only, true);
    assert_eq!(login(action(&mut s, &tls, &line)).login, b"u");
}

#[test]
fn authenticate_plain() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off, false);
    let want = Credentials {
        method: AuthMethod::Plain,
        login: b"joe".to_vec(),
        passwd: b"se cret".to_vec(),
    };
    let resp = encode(b"\0joe\0se cret");
    // an initial response, quoted and as a literal (as sieve-connect sends it)
    let mut s = SieveSession::default();
    let quoted = [&b"AUTHENTICATE \"PLAIN\" \""[..], &resp, b"\"\r\n"].concat();
    assert_eq!(login(action(&mut s, &cfg, &quoted)), want);
    let literal = [
        format!("Authenticate \"plain\" {{{}+}}\r\n", resp.len()).as_bytes(),
        &resp,
        b"\r\n",
    ]
    .concat();
    assert_eq!(login(action(&mut s, &cfg, &literal)), want);
    // an empty challenge, then the response as a string or a literal
    for response in [
        [&b"\""[..], &resp, b"\"\r\n"].concat(),
        [
            format!("{{{}+}}\r\n", resp.len()).as_bytes(),
            &resp,
            b"\r\n",
        ]
        .concat(),
    ] {
        assert_eq!(
            text(action(&mut s, &cfg, b"AUTHENTICATE \"PLAIN\"\r\n")),
            "\"\"\r\n"
        );
        assert_eq!(login(action(&mut s, &cfg, &response)), want);
    }
}

#[test]
fn authenticate_login_and_cram_md5() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off, false);
    let mut s = SieveSession::default();
    assert_eq!(
        text(action(&mut s, &cfg, b"AUTHENTICATE \"LOGIN\"\r\n")),
        "\"VXNlcm5hbWU6\"\r\n"
    );
    assert_eq!(
        text(action(&mut s, &cfg, b"\"am9l\"\r\n")),
        "\"UGFzc3dvcmQ6\"\r\n"
    );
    let c = login(action(&mut s, &cfg, b"{8+}\r\nc2VjcmV0\r\n"));
    assert_eq!((c.login, c.passwd), (b"joe".to_vec(), b"secret".to_vec()));

    assert_eq!(
        text(action(&mut s, &cfg, b"AUTHENTICATE \"CRAM-MD5\"\r\n")),
        format!("\"{}\"\r\n", String::from_utf8_lossy(&encode(b"<1.2@h>")))
    );
    let digest = encode(b"joe 0123456789abcdef0123456789abcdef");
    let c = login(action(
        &mut s,
        &cfg,
        &[&b"\""[..], &digest, b"\"\r\n"].concat(),
    ));
    assert_eq!(c.method, AuthMethod::CramMd5);
    // EXTERNAL is not enabled here
    assert!(matches!(
        action(&mut s, &cfg, b"AUTHENTICATE \"EXTERNAL\" \"am9l\"\r\n"),
        Action::Invalid { counted: false, .. }
    ));
}

#[test]
fn sasl_cancel_and_bad_responses() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off, false);
    let mut s = SieveSession::default();
    // "*" cancels (RFC 5804 2.1): NO, and back to commands
    assert_eq!(
        text(action(&mut s, &cfg, b"AUTHENTICATE \"PLAIN\"\r\n")),
        "\"\"\r\n"
    );
    assert_eq!(
        action(&mut s, &cfg, b"\"*\"\r\n"),
        Action::Reply(Cow::Borrowed(CANCELLED))
    );
    assert_eq!(
        text(action(&mut s, &cfg, b"NOOP\r\n")),
        "OK \"completed\"\r\n"
    );
    // a bare * is no string; an empty line neither: the exchange ends
    for line in [&b"*\r\n"[..], b"\r\n", b"\"a\" \"b\"\r\n"] {
        assert_eq!(
            text(action(&mut s, &cfg, b"AUTHENTICATE \"LOGIN\"\r\n")),
            "\"VXNlcm5hbWU6\"\r\n"
        );
        assert!(
            matches!(
                action(&mut s, &cfg, line),
                Action::Invalid { counted: true, .. }
            ),
            "{line:?}"
        );
        assert_eq!(
            text(action(&mut s, &cfg, b"NOOP\r\n")),
            "OK \"completed\"\r\n"
        );
    }
    // bad base64 in a response: refused, with nginx's reason
    assert_eq!(
        text(action(&mut s, &cfg, b"AUTHENTICATE \"PLAIN\"\r\n")),
        "\"\"\r\n"
    );
    assert_eq!(
        action(&mut s, &cfg, b"\"@@\"\r\n"),
        Action::Invalid {
            reason: Invalid(Some(
                "client sent invalid base64 encoding in AUTH PLAIN command"
            )),
            reply: Cow::Borrowed(INVALID),
            quit: false,
            counted: false
        }
    );
    // a command where a response is due is no string either
    assert_eq!(
        text(action(&mut s, &cfg, b"AUTHENTICATE \"PLAIN\"\r\n")),
        "\"\"\r\n"
    );
    assert!(matches!(
        action(&mut s, &cfg, b"LOGOUT\r\n"),
        Action::Invalid { counted: true, .. }
    ));
}

/// A whole dialogue fed in two reads, split at every byte, and a byte at a
/// time: the same actions.
#[test]
fn split_anywhere() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::On, false);
    let resp = encode(b"\0joe\0secret");
    let input = [
        &b"CAPABILITY\r\nNOOP \"t\\\"1\"\r\nFOO {3+}\r\nabc\r\nNOOP {2}\r\nxy\r\n"[..],
        b"AUTHENTICATE \"PLAIN\"\r\n{",
        resp.len().to_string().as_bytes(),
        b"+}\r\n",
        &resp,
        b"\r\n",
    ]
    .concat();
    let run = |reads: &[&[u8]]| {
        let mut s = SieveSession::default();
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for read in reads {
            buf.extend_from_slice(read);
            while let Step::Done { consumed, action } = s.step(&buf, &cfg) {
                buf.drain(..consumed);
                seen.push(format!("{action:?}"));
            }
        }
        assert!(buf.is_empty());
        seen
    };
    let whole = run(&[&input]);
    assert_eq!(whole.len(), 6);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(run(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
}
