use super::*;
use crate::base64::encode;
use crate::{auth_bits, StartTls};

const PLAIN_NEXT: &[u8] = b"+ \r\n";
const USERNAME: &[u8] = b"+ VXNlcm5hbWU6\r\n";
const PASSWORD: &[u8] = b"+ UGFzc3dvcmQ6\r\n";

fn caps() -> Capabilities {
    Capabilities::build(
        &[b"IMAP4rev1"],
        auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::CRAM_MD5,
    )
}

fn cfg(caps: &Capabilities, starttls: StartTls) -> Config<'_> {
    Config {
        auth_methods: auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::CRAM_MD5,
        capabilities: caps,
        starttls,
        tls: false,
        salt: Some(b"<1.2@h>\r\n"),
    }
}

fn reply<'c>(s: &mut ImapSession, cfg: &Config<'c>, line: &[u8]) -> Action<'c> {
    match s.step(line, cfg) {
        Step::Done { consumed, action } => {
            assert_eq!(consumed, line.len());
            action
        }
        other => panic!("{other:?}"),
    }
}

fn text(a: Action) -> Vec<u8> {
    assert!(!matches!(a, Action::Authenticate(_)), "authenticate");
    a.reply().to_vec()
}

#[test]
fn tagged_replies() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off);
    let mut s = ImapSession::default();
    assert_eq!(
        text(reply(&mut s, &cfg, b"a1 NOOP\r\n")),
        b"a1 OK completed\r\n"
    );
    assert_eq!(
        text(reply(&mut s, &cfg, b"a2 CAPABILITY\r\n")),
        b"* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5\r\na2 OK completed\r\n"
    );
    assert_eq!(
        text(reply(&mut s, &cfg, b"a3 BOGUS\r\n")),
        b"a3 BAD invalid command\r\n"
    );
    assert_eq!(
        text(reply(&mut s, &cfg, b"#bad NOOP\r\n")),
        b"* BAD invalid command\r\n"
    );
    assert_eq!(
        text(reply(&mut s, &cfg, b"a4 LOGOUT\r\n")),
        b"* BYE\r\na4 OK completed\r\n"
    );
}

#[test]
fn login_and_literal() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off);
    let mut s = ImapSession::default();
    let input = b"a1 LOGIN {4}\r\nuser \"pass\"\r\n";
    assert_eq!(
        s.step(&input[..14], &cfg),
        Step::Done {
            consumed: 0,
            action: Action::Continue(Cow::Borrowed(CONTINUE))
        }
    );
    match reply(&mut s, &cfg, input) {
        Action::Authenticate(c) => {
            assert_eq!((c.login, c.passwd), (b"user".to_vec(), b"pass".to_vec()))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.tag(), b"a1 ");
    assert_eq!(s.auth_error_reply(b"Go away"), b"a1 NO Go away\r\n");
    assert!(matches!(
        reply(&mut s, &cfg, b"a2 LOGIN \"\" x\r\n"),
        Action::Invalid { .. }
    ));
    assert!(matches!(
        reply(&mut s, &cfg, b"a2 LOGIN x\r\n"),
        Action::Invalid { .. }
    ));
}

#[test]
fn authenticate_exchanges_keep_the_tag() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off);
    let mut s = ImapSession::default();
    assert_eq!(
        text(reply(&mut s, &cfg, b"A AUTHENTICATE LOGIN\r\n")),
        USERNAME
    );
    assert_eq!(
        text(reply(
            &mut s,
            &cfg,
            &[encode(b"joe"), b"\r\n".to_vec()].concat()
        )),
        PASSWORD
    );
    match reply(&mut s, &cfg, &[encode(b"pw"), b"\r\n".to_vec()].concat()) {
        Action::Authenticate(c) => assert_eq!(c.login, b"joe".to_vec()),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.tag(), b"A ");

    assert_eq!(
        text(reply(&mut s, &cfg, b"B AUTHENTICATE PLAIN\r\n")),
        PLAIN_NEXT
    );
    assert_eq!(
        text(reply(&mut s, &cfg, b"*\r\n")),
        b"B BAD invalid command\r\n"
    );
    assert_eq!(
        text(reply(&mut s, &cfg, b"C AUTHENTICATE CRAM-MD5\r\n")),
        b"+ PDEuMkBoPg==\r\n"
    );
    let resp = [
        encode(b"u 0123456789abcdef0123456789abcdef"),
        b"\r\n".to_vec(),
    ]
    .concat();
    assert!(matches!(
        reply(&mut s, &cfg, &resp),
        Action::Authenticate(_)
    ));
    let ir = [
        b"D AUTHENTICATE PLAIN ".to_vec(),
        encode(b"\0u\0p"),
        b"\r\n".to_vec(),
    ]
    .concat();
    assert!(matches!(reply(&mut s, &cfg, &ir), Action::Authenticate(_)));
    assert!(matches!(
        reply(&mut s, &cfg, b"E AUTHENTICATE EXTERNAL\r\n"),
        Action::Invalid { .. }
    ));
    assert!(matches!(
        reply(&mut s, &cfg, b"F AUTHENTICATE GSSAPI\r\n"),
        Action::Invalid { .. }
    ));
}

#[test]
fn starttls_modes() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Only);
    let mut s = ImapSession::default();
    assert_eq!(
        text(reply(&mut s, &cfg, b"a CAPABILITY\r\n")),
        b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\na OK completed\r\n"
    );
    assert!(matches!(
        reply(&mut s, &cfg, b"a LOGIN u p\r\n"),
        Action::Invalid { .. }
    ));
    assert_eq!(
        reply(&mut s, &cfg, b"a STARTTLS\r\n"),
        Action::StartTls(Cow::Borrowed(b"a OK completed\r\n"))
    );
    let off = Config {
        starttls: StartTls::Off,
        ..cfg
    };
    assert!(matches!(
        reply(&mut s, &off, b"a STARTTLS\r\n"),
        Action::Invalid { .. }
    ));
}

#[test]
fn invalid_non_sync_literal_quits() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off);
    let mut s = ImapSession::default();
    assert!(matches!(
        reply(&mut s, &cfg, b"a BOGUS {3+}\r\n"),
        Action::Invalid { quit: true, .. }
    ));
}

/// Whether stock's `ngx_mail_read_command` would count the command's
/// refusal toward `max_errors`; `None` when it was not refused.
fn counted(s: &mut ImapSession, cfg: &Config<'_>, line: &[u8]) -> Option<bool> {
    match reply(s, cfg, line) {
        Action::Invalid { counted, .. } => Some(counted),
        _ => None,
    }
}

#[test]
fn only_parser_rejections_count() {
    let caps = caps();
    let cfg = cfg(&caps, StartTls::Off);
    let mut s = ImapSession::default();
    for refused in [
        &b"a LOGIN x\r\n"[..],
        b"a LOGIN \"\" x\r\n",
        b"a AUTHENTICATE GSSAPI\r\n",
        b"a AUTHENTICATE PLAIN !!!\r\n",
        b"a STARTTLS\r\n",
    ] {
        assert_eq!(counted(&mut s, &cfg, refused), Some(false), "{refused:?}");
    }
    assert_eq!(counted(&mut s, &cfg, b"b AUTHENTICATE LOGIN\r\n"), None);
    assert_eq!(counted(&mut s, &cfg, b"*\r\n"), Some(false));
    for malformed in [&b"a BOGUS\r\n"[..], b"a\r\n", b"\r\n", b"a N0OP\r\n"] {
        assert_eq!(
            counted(&mut s, &cfg, malformed),
            Some(true),
            "{malformed:?}"
        );
    }
}

#[test]
fn id_before_login() {
    let with_id = caps().with_id(&[b"name", b"nginx"]);
    let conf = cfg(&with_id, StartTls::Off);
    let mut s = ImapSession::default();
    let list = b"a1 ID (\"name\" \"Thunderbird\" \"version\" \"115\")\r\n";
    // the same answer whichever way the command is split
    for split in 1..list.len() {
        let mut buf = list[..split].to_vec();
        assert_eq!(s.step(&buf, &conf), Step::Incomplete, "split at {split}");
        buf.extend_from_slice(&list[split..]);
        assert_eq!(
            s.step(&buf, &conf),
            Step::Done {
                consumed: list.len(),
                action: Action::Reply(Cow::Owned(
                    b"* ID (\"name\" \"nginx\")\r\na1 OK completed\r\n".to_vec()
                ))
            }
        );
    }
    assert_eq!(
        text(reply(&mut s, &conf, b"a2 id nil\r\n")),
        b"* ID (\"name\" \"nginx\")\r\na2 OK completed\r\n"
    );
    assert_eq!(counted(&mut s, &conf, b"a3 ID (\"name\")\r\n"), Some(true));
    assert_eq!(counted(&mut s, &conf, b"a4 ID\r\n"), Some(true));
    let plain = caps();
    let conf = cfg(&plain, StartTls::Off);
    assert_eq!(
        text(reply(&mut s, &conf, b"a5 ID NIL\r\n")),
        b"* ID NIL\r\na5 OK completed\r\n"
    );
}
