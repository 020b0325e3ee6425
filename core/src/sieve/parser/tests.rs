use super::*;

fn parse(input: &[u8]) -> Event {
    Parser::default().feed(input)
}

fn command(input: &[u8]) -> (Option<Verb>, Vec<Vec<u8>>) {
    match parse(input) {
        Event::Command(c) => {
            assert_eq!(c.consumed, input.len(), "{input:?}");
            (c.verb, c.args)
        }
        other => panic!("{input:?}: {other:?}"),
    }
}

fn invalid(input: &[u8]) -> (usize, bool) {
    match parse(input) {
        Event::Invalid { consumed, quit } => (consumed, quit),
        other => panic!("{input:?}: {other:?}"),
    }
}

#[test]
fn simple_commands() {
    assert_eq!(command(b"CAPABILITY\r\n"), (Some(Verb::Capability), vec![]));
    assert_eq!(command(b"noop\n"), (Some(Verb::Noop), vec![]));
    assert_eq!(command(b"Logout\r\n"), (Some(Verb::Logout), vec![]));
    assert_eq!(command(b"STARTTLS\r\n"), (Some(Verb::Starttls), vec![]));
    // spaces as Dovecot takes them: several between, trailing ones
    assert_eq!(
        command(b"NOOP  \"x\" \r\n"),
        (Some(Verb::Noop), vec![b"x".to_vec()])
    );
    assert_eq!(command(b"NOOP \r\n"), (Some(Verb::Noop), vec![]));
    assert_eq!(
        command(b"AUTHENTICATE \"PLAIN\" \"AGEAYg==\"\r\n"),
        (
            Some(Verb::Authenticate),
            vec![b"PLAIN".to_vec(), b"AGEAYg==".to_vec()]
        )
    );
}

#[test]
fn quoted_strings() {
    let (_, args) = command(b"NOOP \"a\\\"b\\\\c\"\r\n");
    assert_eq!(args, vec![b"a\"b\\c".to_vec()]);
    let (_, args) = command(b"NOOP \"\"\r\n");
    assert_eq!(args, vec![b"".to_vec()]);
    let (_, args) = command("NOOP \"caf\u{e9} \u{1F600}\"\r\n".as_bytes());
    assert_eq!(args, vec!["caf\u{e9} \u{1F600}".as_bytes().to_vec()]);
    // at most 1024 octets between the quotes
    let ok = [&b"NOOP \""[..], &[b'a'; 1024], b"\"\r\n"].concat();
    assert_eq!(command(&ok).1, vec![vec![b'a'; 1024]]);
    let escaped = [&b"NOOP \""[..], &[b'a'; 1022], b"\\\"\"\r\n"].concat();
    assert_eq!(command(&escaped).1.len(), 1);
    let long = [&b"NOOP \""[..], &[b'a'; 1025], b"\"\r\n"].concat();
    assert_eq!(invalid(&long), (long.len(), false));
    let long = [&b"NOOP \""[..], &[b'a'; 1023], b"\\\"\"\r\n"].concat();
    assert_eq!(invalid(&long), (long.len(), false));
}

#[test]
fn literals() {
    let (_, args) = command(b"AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYg==\r\n");
    assert_eq!(args, vec![b"PLAIN".to_vec(), b"AGEAYg==".to_vec()]);
    // {n} too, with no continuation request, as Dovecot takes it
    let (_, args) = command(b"AUTHENTICATE {5}\r\nPLAIN {4}\na\r\nb\r\n");
    assert_eq!(args, vec![b"PLAIN".to_vec(), b"a\r\nb".to_vec()]);
    let (_, args) = command(b"NOOP {0+}\r\n\r\n");
    assert_eq!(args, vec![b"".to_vec()]);
    // a literal's data is taken whole: quotes, braces, any byte
    let (_, args) = command(b"NOOP {6+}\r\n\"{1}\0\xff\r\n");
    assert_eq!(args, vec![b"\"{1}\0\xff".to_vec()]);
}

#[test]
fn bad_lines() {
    for (input, quit) in [
        (&b"\r\n"[..], false),
        (b" NOOP\r\n", false),
        (b"NO0P\r\n", false),
        (b"NOOP\"x\"\r\n", false),
        (b"NOOP x\r\n", false),
        (b"NOOP \"x\"\"y\"\r\n", false),
        (b"NOOP \"a\\qb\"\r\n", false),
        (b"NOOP \"a\xe9b\"\r\n", false),
        (b"NOOP \"a\0b\"\r\n", false),
        (b"NOOP \"a\rb\"\r\n", false),
        (b"NOOP\r\r\n", false),
        (b"NOOP\tx\r\n", false),
        (b"AUTHENTICATE \"A\" \"B\" \"C\"\r\n", false),
        (b"NOOP {}\r\n", true),
        (b"NOOP {+}\r\n", true),
        (b"NOOP {1a}\r\n", true),
        (b"NOOP {99999999999999999999999+}\r\n", true),
        (b"NOOP {3+} \r\n", false),
        (b"NOOP {3+}x\r\n", false),
        (b"NOOP {3+}\r\rabc\r\n", false),
    ] {
        assert_eq!(invalid(input), (input.len(), quit), "{input:?}");
    }
    // an unterminated quoted string ends at the line's end, refused
    assert_eq!(invalid(b"NOOP \"abc\r\nNOOP\r\n"), (11, false));
    // a literal followed by anything but SP or the line end
    let input = b"NOOP {3+}\r\nabcd\r\n";
    assert_eq!(invalid(input), (input.len(), false));
}

#[test]
fn commands_not_served_before_login() {
    // parsed to their end, literals included, then refused
    for input in [
        &b"LISTSCRIPTS\r\n"[..],
        b"PUTSCRIPT \"x\" {12+}\r\nkeep;\r\nstop;\r\n",
        b"HAVESPACE \"x\" {1}\r\n9\r\n",
    ] {
        assert_eq!(invalid(input), (input.len(), false), "{input:?}");
    }
}

#[test]
fn continuation() {
    let mut p = Parser::default();
    p.expect_continuation();
    match p.feed(b"\"AGEAYg==\"\r\n") {
        Event::Command(c) => {
            assert_eq!(c.verb, None);
            assert_eq!(c.args, vec![b"AGEAYg==".to_vec()]);
        }
        other => panic!("{other:?}"),
    }
    // back to commands
    assert!(matches!(p.feed(b"NOOP\r\n"), Event::Command(_)));
    p.expect_continuation();
    match p.feed(b"{4+}\r\nYWJj\r\n") {
        Event::Command(c) => assert_eq!(c.args, vec![b"YWJj".to_vec()]),
        other => panic!("{other:?}"),
    }
    // an empty line is a response with no string; the session refuses it
    p.expect_continuation();
    assert!(matches!(p.feed(b"\r\n"), Event::Command(Command { ref args, .. }) if args.is_empty()));
    // one string only, and no atom
    p.expect_continuation();
    assert_eq!(
        p.feed(b"\"a\" \"b\"\r\n"),
        Event::Invalid {
            consumed: 9,
            quit: false
        }
    );
    p.expect_continuation();
    assert_eq!(
        p.feed(b"*\r\n"),
        Event::Invalid {
            consumed: 3,
            quit: false
        }
    );
}

/// Every command, fed whole and fed growing a byte at a time (as the
/// buffer fills), gives the same event.
#[test]
fn restartable() {
    let inputs: [&[u8]; 8] = [
        b"AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYg==\r\n",
        b"NOOP \"a\\\"b\"\r\n",
        b"NOOP {0}\r\n\r\n",
        b"PUTSCRIPT \"x\" {3+}\r\na\nb\r\n",
        b"NOOP {3+}x\r\n",
        b"NOOP \"a\\qb\" {3+}\r\n",
        b"LOGOUT\n",
        b"NOOP \"\xc3\xa9\"\r\n",
    ];
    for input in inputs {
        let whole = parse(input);
        let mut p = Parser::default();
        let mut last = Event::Incomplete;
        for end in 0..=input.len() {
            last = p.feed(&input[..end]);
            if end < input.len() {
                assert_eq!(last, Event::Incomplete, "{input:?} at {end}");
            }
        }
        assert_eq!(last, whole, "{input:?}");
    }
}
