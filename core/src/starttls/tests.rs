use super::*;

fn send(step: UpstreamStep) -> Vec<u8> {
    match step {
        UpstreamStep::Send(line) => line,
        other => panic!("expected Send, got {other:?}"),
    }
}

#[test]
fn pop3_stls() {
    let mut d = StartTls::new(Protocol::Pop3);
    assert_eq!(d.on_data(b"+OK ready", false), UpstreamStep::NeedMore);
    assert_eq!(send(d.on_data(b"+OK ready\r\n", false)), b"CAPA\r\n");
    assert_eq!(
        d.on_data(b"+OK\r\nUSER\r\nSTLS\r\n", false),
        UpstreamStep::NeedMore
    );
    assert_eq!(
        send(d.on_data(b"+OK\r\nUSER\r\nSTLS\r\n.\r\n", false)),
        b"STLS\r\n"
    );
    assert!(!d.ready());
    assert_eq!(
        d.on_data(b"+OK Begin TLS\r\n", false),
        UpstreamStep::StartTls
    );
    assert!(d.ready());
    assert_eq!(d.take_greeting().as_deref(), Some(&b"+OK ready\r\n"[..]));
}

#[test]
fn pop3_without_stls_is_refused() {
    let mut d = StartTls::new(Protocol::Pop3);
    let _ = send(d.on_data(b"+OK ready\r\n", false));
    assert_eq!(
        d.on_data(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n", false),
        UpstreamStep::Failed(NOT_OFFERED)
    );
    let mut d = StartTls::new(Protocol::Pop3);
    let _ = send(d.on_data(b"+OK ready\r\n", false));
    assert_eq!(
        d.on_data(b"-ERR no CAPA\r\n", false),
        UpstreamStep::Failed(NOT_OFFERED)
    );
    // a refused STLS is a refusal
    let mut d = StartTls::new(Protocol::Pop3);
    let _ = send(d.on_data(b"+OK ready\r\n", false));
    let _ = send(d.on_data(b"+OK\r\nSTLS\r\n.\r\n", false));
    assert!(matches!(
        d.on_data(b"-ERR not now\r\n", false),
        UpstreamStep::Refused { .. }
    ));
}

#[test]
fn imap_starttls() {
    let mut d = StartTls::new(Protocol::Imap {
        tag: b"a1 ".to_vec(),
    });
    assert_eq!(
        send(d.on_data(b"* OK [CAPABILITY IMAP4rev1] ready\r\n", false)),
        b"a1 CAPABILITY\r\n"
    );
    assert_eq!(
        d.on_data(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n", false),
        UpstreamStep::NeedMore
    );
    assert_eq!(
        send(d.on_data(
            b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\na1 OK done\r\n",
            false
        )),
        b"a1 STARTTLS\r\n"
    );
    assert_eq!(
        d.on_data(b"a1 OK Begin TLS\r\n", false),
        UpstreamStep::StartTls
    );
    assert_eq!(
        d.take_greeting().as_deref(),
        Some(&b"* OK [CAPABILITY IMAP4rev1] ready\r\n"[..])
    );
}

#[test]
fn imap_without_starttls_is_refused() {
    let mut d = StartTls::new(Protocol::Imap {
        tag: b"a1 ".to_vec(),
    });
    let _ = send(d.on_data(b"* OK ready\r\n", false));
    assert_eq!(
        d.on_data(
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK done\r\n",
            false
        ),
        UpstreamStep::Failed(NOT_OFFERED)
    );
    // STARTTLS in the greeting's text or a tagged line does not count
    let mut d = StartTls::new(Protocol::Imap {
        tag: b"a1 ".to_vec(),
    });
    let _ = send(d.on_data(b"* OK ready\r\n", false));
    assert_eq!(
        d.on_data(b"* OK STARTTLS\r\na1 OK STARTTLS\r\n", false),
        UpstreamStep::Failed(NOT_OFFERED)
    );
}

#[test]
fn smtp_starttls_then_ehlo_again() {
    let mut d = StartTls::new(Protocol::Smtp {
        server_name: b"proxy.example".to_vec(),
    });
    assert_eq!(
        send(d.on_data(b"220-mx ESMTP\r\n220 more\r\n", false)),
        b"EHLO proxy.example\r\n"
    );
    assert_eq!(
        d.on_data(b"250-mx\r\n250-STARTTLS\r\n", false),
        UpstreamStep::NeedMore
    );
    assert_eq!(
        send(d.on_data(b"250-mx\r\n250-STARTTLS\r\n250 8BITMIME\r\n", false)),
        b"STARTTLS\r\n"
    );
    assert_eq!(
        d.on_data(b"220 2.0.0 Ready to start TLS\r\n", false),
        UpstreamStep::StartTls
    );
    assert_eq!(
        d.take_greeting().as_deref(),
        Some(&b"220-mx ESMTP\r\n220 more\r\n"[..])
    );
}

#[test]
fn smtp_without_starttls_is_refused() {
    let mut d = StartTls::new(Protocol::Smtp {
        server_name: b"p".to_vec(),
    });
    let _ = send(d.on_data(b"220 mx\r\n", false));
    assert_eq!(
        d.on_data(b"250-mx STARTTLS\r\n250 XSTARTTLS\r\n", false),
        UpstreamStep::Failed(NOT_OFFERED)
    );
}

#[test]
fn sieve_starttls_reads_capabilities_anew() {
    let mut d = StartTls::new(Protocol::Sieve);
    assert_eq!(
        d.on_data(b"\"IMPLEMENTATION\" \"x\"\r\n\"STARTTLS\"\r\n", false),
        UpstreamStep::NeedMore
    );
    assert_eq!(
        send(d.on_data(b"\"IMPLEMENTATION\" \"x\"\r\n\"STARTTLS\"\r\nOK\r\n", false)),
        b"STARTTLS\r\n"
    );
    assert_eq!(
        d.on_data(b"OK \"Begin\"\r\n", false),
        UpstreamStep::StartTls
    );
    assert_eq!(d.take_greeting(), None);
    let mut d = StartTls::new(Protocol::Sieve);
    assert_eq!(
        d.on_data(b"\"SASL\" \"PLAIN\"\r\nOK\r\n", false),
        UpstreamStep::Failed(NOT_OFFERED)
    );
}

/// Plain text after the positive reply in the same read is never looked
/// at: the step is the same with or without it, and the greeting handed on
/// is the one from before.
#[test]
fn bytes_after_the_upgrade_reply_are_not_read() {
    let mut d = StartTls::new(Protocol::Imap {
        tag: b"a1 ".to_vec(),
    });
    let _ = send(d.on_data(b"* OK ready\r\n", false));
    let _ = send(d.on_data(b"* CAPABILITY STARTTLS\r\na1 OK\r\n", false));
    assert_eq!(
        d.on_data(
            b"a1 OK Begin TLS\r\n* injected\r\na1 OK LOGIN done\r\n",
            false
        ),
        UpstreamStep::StartTls
    );
    assert_eq!(d.take_greeting().as_deref(), Some(&b"* OK ready\r\n"[..]));

    let mut d = StartTls::new(Protocol::Pop3);
    let _ = send(d.on_data(b"+OK ready\r\n", false));
    let _ = send(d.on_data(b"+OK\r\nSTLS\r\n.\r\n", false));
    assert_eq!(
        d.on_data(b"+OK Begin TLS\r\n+OK injected\r\n", false),
        UpstreamStep::StartTls
    );
    assert_eq!(d.take_greeting().as_deref(), Some(&b"+OK ready\r\n"[..]));
}

/// Every reply of each protocol's upgrade, cut anywhere before its end,
/// is waited for; whole, it gives the same step as when it came at once.
#[test]
fn every_split_gives_the_same_steps() {
    let scripts: [(Protocol, &[&[u8]]); 4] = [
        (
            Protocol::Pop3,
            &[b"+OK hi\r\n", b"+OK\r\nSTLS\r\n.\r\n", b"+OK go\r\n"],
        ),
        (
            Protocol::Imap {
                tag: b"t ".to_vec(),
            },
            &[
                b"* OK hi\r\n",
                b"* CAPABILITY IMAP4rev1 STARTTLS\r\nt OK done\r\n",
                b"t OK go\r\n",
            ],
        ),
        (
            Protocol::Smtp {
                server_name: b"p".to_vec(),
            },
            &[b"220 mx\r\n", b"250-mx\r\n250 STARTTLS\r\n", b"220 go\r\n"],
        ),
        (
            Protocol::Sieve,
            &[
                b"\"SASL\" \"PLAIN\"\r\n\"STARTTLS\"\r\nOK\r\n",
                b"OK go\r\n",
            ],
        ),
    ];
    for (protocol, script) in scripts {
        let mut whole = StartTls::new(protocol.clone());
        let steps: Vec<UpstreamStep> = script.iter().map(|r| whole.on_data(r, false)).collect();
        assert_eq!(steps.last(), Some(&UpstreamStep::StartTls), "{protocol:?}");
        for (i, reply) in script.iter().enumerate() {
            for cut in 0..reply.len() {
                let mut d = StartTls::new(protocol.clone());
                for done in &script[..i] {
                    let _ = d.on_data(done, false);
                }
                assert_eq!(
                    d.on_data(&reply[..cut], false),
                    UpstreamStep::NeedMore,
                    "{protocol:?} reply {i} cut at {cut}"
                );
                assert_eq!(d.on_data(reply, false), steps[i], "{protocol:?} reply {i}");
            }
        }
    }
}
