use super::*;
use crate::base64::encode;

const NEXT: &[u8] = b"334 \r\n";
const USERNAME: &[u8] = b"334 VXNlcm5hbWU6\r\n";
const PASSWORD: &[u8] = b"334 UGFzc3dvcmQ6\r\n";

fn replies() -> Replies {
    Replies::build(
        b"mx.example",
        &[b"PIPELINING"],
        auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::CRAM_MD5,
    )
}

fn cfg(replies: &Replies, methods: usize, starttls: StartTls) -> Config<'_> {
    Config {
        auth_methods: methods,
        capabilities: replies,
        starttls,
        tls: false,
        salt: Some(b"<1.2@mx>\r\n"),
    }
}

fn step<'c>(s: &mut SmtpSession, cfg: &Config<'c>, line: &[u8]) -> Action<'c> {
    match s.step(line, cfg) {
        Step::Done { consumed, action } => {
            assert_eq!(consumed, line.len());
            action
        }
        Step::Incomplete => panic!("incomplete"),
    }
}

#[test]
fn helo_ehlo() {
    let r = replies();
    let cfg = cfg(&r, auth_bits::PLAIN, StartTls::Off);
    let mut s = SmtpSession::default();
    assert_eq!(
        step(&mut s, &cfg, b"HELO client\r\n"),
        Action::Reply(Cow::Borrowed(b"250 mx.example\r\n"))
    );
    assert!(!s.esmtp);
    assert_eq!(
        step(&mut s, &cfg, b"EHLO client\r\n"),
        Action::Reply(Cow::Borrowed(&r.ehlo))
    );
    assert!(s.esmtp);
    assert_eq!(s.helo(), b"client");
    assert_eq!(
        step(&mut s, &cfg, b"EHLO\r\n"),
        Action::Reply(Cow::Borrowed(INVALID_ARGUMENT))
    );
    assert_eq!(
        step(&mut s, &cfg, b"HELO a b\r\n"),
        Action::Reply(Cow::Borrowed(INVALID_ARGUMENT))
    );
    let on = Config {
        starttls: StartTls::On,
        ..cfg
    };
    assert_eq!(
        step(&mut s, &on, b"EHLO client\r\n"),
        Action::Reply(Cow::Borrowed(&r.ehlo_starttls))
    );
}

#[test]
fn auth_mechanisms() {
    let r = replies();
    let cfg = cfg(
        &r,
        auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::CRAM_MD5,
        StartTls::Off,
    );
    let mut s = SmtpSession::default();
    let ir = [b"AUTH PLAIN ".to_vec(), encode(b"\0u\0p"), b"\r\n".to_vec()].concat();
    assert!(matches!(step(&mut s, &cfg, &ir), Action::Authenticate(_)));
    assert_eq!(
        step(&mut s, &cfg, b"AUTH LOGIN\r\n"),
        Action::Reply(Cow::Borrowed(USERNAME))
    );
    assert_eq!(
        step(&mut s, &cfg, &[encode(b"u"), b"\r\n".to_vec()].concat()),
        Action::Reply(Cow::Borrowed(PASSWORD))
    );
    match step(&mut s, &cfg, &[encode(b"p"), b"\r\n".to_vec()].concat()) {
        Action::Authenticate(c) => assert_eq!((c.login, c.passwd), (b"u".to_vec(), b"p".to_vec())),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        step(&mut s, &cfg, b"AUTH CRAM-MD5\r\n"),
        Action::Reply(Cow::Borrowed(b"334 PDEuMkBteD4=\r\n"))
    );
    assert_eq!(
        step(&mut s, &cfg, b"*\r\n"),
        refused(Invalid(Some(
            "client sent invalid base64 encoding in AUTH CRAM-MD5 command"
        )))
    );
    assert_eq!(
        step(&mut s, &cfg, b"AUTH\r\n"),
        Action::Reply(Cow::Borrowed(INVALID_ARGUMENT))
    );
    assert_eq!(
        step(&mut s, &cfg, b"AUTH PLAIN\r\n"),
        Action::Reply(Cow::Borrowed(NEXT))
    );
    let response = [encode(b"\0u\0p"), b"\r\n".to_vec()].concat();
    assert!(matches!(
        step(&mut s, &cfg, &response),
        Action::Authenticate(_)
    ));
    assert_eq!(
        step(&mut s, &cfg, b"AUTH EXTERNAL\r\n"),
        refused(Invalid(None))
    );
    assert_eq!(
        step(&mut s, &cfg, b"AUTH GSSAPI\r\n"),
        refused(Invalid(None))
    );
}

#[test]
fn auth_none_envelope() {
    let r = replies();
    let cfg = cfg(&r, auth_bits::NONE, StartTls::Off);
    let mut s = SmtpSession::default();
    let _ = step(&mut s, &cfg, b"EHLO client.example\r\n");
    assert_eq!(
        step(&mut s, &cfg, b"RCPT TO:<b@x>\r\n"),
        Action::Reply(Cow::Borrowed(BAD_SEQUENCE))
    );
    assert_eq!(
        step(&mut s, &cfg, b"MAIL\r\n"),
        Action::Reply(Cow::Borrowed(INVALID_ARGUMENT))
    );
    assert_eq!(
        step(&mut s, &cfg, b"MAIL FROM:<a@x> SIZE=10\r\n"),
        Action::Reply(Cow::Borrowed(OK))
    );
    assert_eq!(
        step(&mut s, &cfg, b"MAIL FROM:<c@x>\r\n"),
        Action::Reply(Cow::Borrowed(BAD_SEQUENCE))
    );
    assert_eq!(
        step(&mut s, &cfg, b"RCPT TO:<b@x>\r\n"),
        Action::Relay(Envelope {
            helo: b"client.example".to_vec(),
            from: b"MAIL FROM:<a@x> SIZE=10".to_vec(),
            to: b"RCPT TO:<b@x>".to_vec(),
        })
    );
    // a tab is an argument byte, kept as stock keeps it; spaces are not
    let _ = step(&mut s, &cfg, b"RSET\r\n");
    let _ = step(&mut s, &cfg, b"MAIL FROM:<a@x>\t  \r\n");
    assert_eq!(
        step(&mut s, &cfg, b"RCPT TO:<b@x>\t\r\n"),
        Action::Relay(Envelope {
            helo: b"client.example".to_vec(),
            from: b"MAIL FROM:<a@x>\t".to_vec(),
            to: b"RCPT TO:<b@x>\t".to_vec(),
        })
    );
    assert_eq!(
        step(&mut s, &cfg, b"RSET\r\n"),
        Action::Reply(Cow::Borrowed(OK))
    );
    assert_eq!(
        step(&mut s, &cfg, b"RCPT TO:<b@x>\r\n"),
        Action::Reply(Cow::Borrowed(BAD_SEQUENCE))
    );
    // the lines end at the last argument, as stock keeps them
    let _ = step(&mut s, &cfg, b"MAIL FROM:<a@x>  \r\n");
    assert_eq!(
        step(&mut s, &cfg, b"RCPT TO:<b@x> \r\n"),
        Action::Relay(Envelope {
            helo: b"client.example".to_vec(),
            from: b"MAIL FROM:<a@x>".to_vec(),
            to: b"RCPT TO:<b@x>".to_vec(),
        })
    );
}

#[test]
fn mail_needs_auth_none() {
    let r = replies();
    let cfg = cfg(&r, auth_bits::PLAIN, StartTls::Off);
    let mut s = SmtpSession::default();
    assert_eq!(
        step(&mut s, &cfg, b"MAIL FROM:<a@x>\r\n"),
        Action::Rejected {
            reply: Cow::Borrowed(AUTH_REQUIRED)
        }
    );
}

#[test]
fn starttls_forgets_the_envelope() {
    let r = replies();
    let cfg = cfg(&r, auth_bits::NONE, StartTls::Only);
    let mut s = SmtpSession::default();
    let _ = step(&mut s, &cfg, b"EHLO c\r\n");
    // starttls only: no relaying before STARTTLS either (nginx PR 705)
    assert_eq!(
        step(&mut s, &cfg, b"MAIL FROM:<a@x>\r\n"),
        refused(Invalid(None))
    );
    assert_eq!(
        step(&mut s, &cfg, b"AUTH PLAIN\r\n"),
        refused(Invalid(None))
    );
    assert_eq!(
        step(&mut s, &cfg, b"STARTTLS\r\n"),
        Action::StartTls(Cow::Borrowed(START_TLS))
    );
    assert_eq!(s.helo(), b"");
    assert_eq!(
        step(&mut s, &cfg, b"RCPT TO:<b@x>\r\n"),
        Action::Reply(Cow::Borrowed(BAD_SEQUENCE))
    );
    let tls = Config { tls: true, ..cfg };
    assert_eq!(step(&mut s, &tls, b"STARTTLS\r\n"), refused(Invalid(None)));
    assert_eq!(
        step(&mut s, &tls, b"MAIL FROM:<a@x>\r\n"),
        Action::Reply(Cow::Borrowed(OK))
    );
    // without `none`, the refusal is stock's, starttls or not
    let cfg = self::cfg(&r, auth_bits::PLAIN, StartTls::Only);
    assert_eq!(
        step(&mut SmtpSession::default(), &cfg, b"MAIL FROM:<a@x>\r\n"),
        Action::Rejected {
            reply: Cow::Borrowed(AUTH_REQUIRED)
        }
    );
}

#[test]
fn other_commands() {
    let r = replies();
    let cfg = cfg(&r, auth_bits::PLAIN, StartTls::Off);
    let mut s = SmtpSession::default();
    // verbs stock's parser knows are refused by its handler, uncounted
    for cmd in [&b"VRFY a\r\n"[..], b"EXPN a\r\n", b"HELP\r\n"] {
        assert_eq!(step(&mut s, &cfg, cmd), refused(Invalid(None)), "{cmd:?}");
    }
    // the parser rejects the rest, counted toward max_errors
    for cmd in [&b"DATA\r\n"[..], b"BOGUS\r\n", b"\r\n", b"NO OP\r\n"] {
        assert_eq!(step(&mut s, &cfg, cmd), malformed(), "{cmd:?}");
    }
    assert_eq!(
        step(&mut s, &cfg, b"NOOP\r\n"),
        Action::Reply(Cow::Borrowed(OK))
    );
    assert_eq!(
        step(&mut s, &cfg, b"QUIT\r\n"),
        Action::Quit(Cow::Borrowed(BYE))
    );
}
