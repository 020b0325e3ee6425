use super::*;

/// Feeds everything, answering each `Continue` as the shell does.
fn feed_all(input: &[u8]) -> (Parser, Event) {
    let mut p = Parser::default();
    loop {
        match p.feed(input) {
            Event::Continue => continue,
            ev => return (p, ev),
        }
    }
}

fn command(input: &[u8]) -> (Vec<u8>, Option<Verb>, Vec<Vec<u8>>) {
    match feed_all(input) {
        (p, Event::Command(c)) => (p.tag().to_vec(), c.verb, c.args),
        other => panic!("{other:?}"),
    }
}

#[test]
fn simple_commands() {
    assert_eq!(
        command(b"a1 NOOP\r\n"),
        (b"a1 ".to_vec(), Some(Verb::Noop), vec![])
    );
    assert_eq!(
        command(b"x.y-z_0 capability\n"),
        (b"x.y-z_0 ".to_vec(), Some(Verb::Capability), vec![])
    );
    assert_eq!(
        command(b"a LOGIN user pass\r\n"),
        (
            b"a ".to_vec(),
            Some(Verb::Login),
            vec![b"user".to_vec(), b"pass".to_vec()]
        )
    );
}

#[test]
fn quoted_strings() {
    let (_, _, args) = command(b"a LOGIN \"us er\" \"p\\\"a\\\\ss\"\r\n");
    assert_eq!(args, vec![b"us er".to_vec(), b"p\"a\\ss".to_vec()]);
    let (_, _, args) = command(b"a LOGIN \"\" x\r\n");
    assert_eq!(args, vec![b"".to_vec(), b"x".to_vec()]);
}

#[test]
fn literals() {
    let mut p = Parser::default();
    let input = b"a LOGIN {4}\r\nuser {6}\r\npa\r\nss\r\n";
    assert_eq!(p.feed(&input[..13]), Event::Continue);
    assert_eq!(p.feed(&input[..23]), Event::Continue);
    match p.feed(input) {
        Event::Command(c) => assert_eq!(c.args, vec![b"user".to_vec(), b"pa\r\nss".to_vec()]),
        other => panic!("{other:?}"),
    }
    let (_, _, args) = command(b"a LOGIN {4+}\r\nuser {0+}\r\n\r\n");
    assert_eq!(args, vec![b"user".to_vec(), b"".to_vec()]);
}

#[test]
fn same_result_at_every_split() {
    let input: &[u8] = b"tag LOGIN {3+}\r\na b \"c\\\\d\"\r\n";
    let want = feed_all(input).1;
    for split in 0..input.len() {
        let mut p = Parser::default();
        let first = p.feed(&input[..split]);
        assert!(
            matches!(first, Event::Incomplete),
            "split {split}: {first:?}"
        );
        assert_eq!(p.feed(input), want, "split {split}");
    }
    // byte by byte
    let mut p = Parser::default();
    for end in 1..input.len() {
        assert_eq!(p.feed(&input[..end]), Event::Incomplete);
    }
    assert_eq!(p.feed(input), want);
}

#[test]
fn bad_input() {
    for bad in [
        &b"\r\n"[..],
        b" NOOP\r\n",
        b"a\x00 NOOP\r\n",
        b"a NOOP\rx\r\n",
        b"a BOGUS\r\n",
        b"a LOGIN a b c d\r\n",
        b"a LOGIN \"a\\\r\n",
        b"a LOGIN {x}\r\n",
        b"a LOGIN {99999999999999999999999999}\r\n",
        b"a LOGIN {1}x\r\n",
        b"a LOGIN {1}\r\nxy z\r\n",
        // a literal right behind a literal (nginx 1.29.6)
        b"a LOGIN {1}\r\nx{1}\r\ny\r\n",
        b"a LOGIN {1+}\r\nx{1+}\r\ny\r\n",
        // a length that cannot take another digit, as stock 1.29.6
        b"a LOGIN {1844674407370955162}\r\n",
        b"a\r\n",
        b"a \r\n",
    ] {
        let got = feed_all(bad).1;
        assert!(
            matches!(got, Event::Invalid { .. }),
            "{:?}: {got:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let long_tag = [&[b'a'; 33][..], b" NOOP\r\n"].concat();
    assert!(matches!(feed_all(&long_tag).1, Event::Invalid { .. }));
    let max_tag = [&[b'a'; 32][..], b" NOOP\r\n"].concat();
    assert!(matches!(feed_all(&max_tag).1, Event::Command(_)));
}

#[test]
fn invalid_with_a_non_sync_literal_quits() {
    assert_eq!(
        feed_all(b"a BOGUS {5+}\r\n").1,
        Event::Invalid {
            consumed: 14,
            quit: true
        }
    );
    assert_eq!(
        feed_all(b"a BOGUS {5}\r\n").1,
        Event::Invalid {
            consumed: 13,
            quit: false
        }
    );
}

#[test]
fn unterminated_input_waits() {
    assert_eq!(feed_all(b"a LOGIN \"never closed").1, Event::Incomplete);
    assert_eq!(
        Parser::default().feed(b"a LOGIN {5}\r\nabc"),
        Event::Continue
    );
    let mut p = Parser::default();
    assert_eq!(p.feed(b"a LOGIN {5}\r\n"), Event::Continue);
    assert_eq!(p.feed(b"a LOGIN {5}\r\nabc"), Event::Incomplete);
}

#[test]
fn continuation_keeps_the_tag() {
    let mut p = Parser::default();
    assert!(matches!(
        p.feed(b"A1 AUTHENTICATE PLAIN\r\n"),
        Event::Command(_)
    ));
    p.expect_continuation();
    match p.feed(b"dGVzdA==\r\n") {
        Event::Command(c) => {
            assert_eq!(c.verb, None);
            assert_eq!(c.args, vec![b"dGVzdA==".to_vec()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.tag(), b"A1 ");
}

#[test]
fn synchronizing_literals_at_every_split() {
    let input: &[u8] = b"a LOGIN {5}\r\nu\r\n\"r {0}\r\n\r\n";
    let want = feed_all(input).1;
    assert!(
        matches!(&want, Event::Command(c) if c.args == vec![b"u\r\n\"r".to_vec(), Vec::new()]),
        "{want:?}"
    );
    for split in 0..input.len() {
        let mut p = Parser::default();
        let mut continues = 0;
        let mut last = Event::Incomplete;
        for part in [&input[..split], input] {
            last = loop {
                match p.feed(part) {
                    Event::Continue => continues += 1,
                    ev => break ev,
                }
            };
        }
        assert_eq!(last, want, "split {split}");
        // one `+ OK` per literal, however the bytes arrive
        assert_eq!(continues, 2, "split {split}");
    }
}

#[test]
fn non_sync_literal_quit_needs_the_lf_past_four_bytes() {
    // stock measures the LF's offset, CR included
    for (line, quit) in [
        (&b"a{+}\n"[..], false),
        (b"a{+}\r\n", true),
        (b"a B {+}\n", true),
        (b"{1+}\n", false),
    ] {
        let mut p = Parser::default();
        match p.feed(line) {
            Event::Invalid { quit: q, .. } => assert_eq!(q, quit, "{line:?}"),
            other => panic!("{line:?}: {other:?}"),
        }
    }
}
