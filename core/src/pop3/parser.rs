//! The POP3 command line grammar of `ngx_mail_pop3_parse_command`: a
//! four-letter verb, then up to three space-separated arguments; USER and
//! PASS take the rest of the line, spaces included, as their one argument.

use crate::command::Grammar;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    User,
    Pass,
    Apop,
    Quit,
    Capa,
    Auth,
    Noop,
    Stls,
}

impl Verb {
    fn from_bytes(word: &[u8]) -> Option<Verb> {
        let w: [u8; 4] = word.try_into().ok()?;
        Some(match &w.map(|b| b.to_ascii_uppercase()) {
            b"USER" => Verb::User,
            b"PASS" => Verb::Pass,
            b"APOP" => Verb::Apop,
            b"QUIT" => Verb::Quit,
            b"CAPA" => Verb::Capa,
            b"AUTH" => Verb::Auth,
            b"NOOP" => Verb::Noop,
            b"STLS" => Verb::Stls,
            _ => return None,
        })
    }
}

pub const MAX_ARGS: usize = 3;

/// One step of parsing buffered POP3 input.
pub type Parsed<'a> = crate::command::Parsed<'a, Verb>;

const GRAMMAR: Grammar<Verb> = Grammar {
    verb: Verb::from_bytes,
    whole_rest: |v| matches!(v, Verb::User | Verb::Pass),
    max_args: MAX_ARGS,
};

/// Parses the first line of `buf`. With `continuation`, the line is a SASL
/// response (its arguments only, the first one starting at the line start).
pub fn parse_line(buf: &[u8], continuation: bool) -> Parsed<'_> {
    crate::command::parse_line(buf, continuation, &GRAMMAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(buf: &[u8]) -> (Option<Verb>, Vec<Vec<u8>>) {
        match parse_line(buf, false) {
            Parsed::Line { verb, args, .. } => (verb, args.iter().map(|a| a.to_vec()).collect()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn verbs_and_arguments() {
        assert_eq!(
            line(b"user test@example.com\r\n"),
            (Some(Verb::User), vec![b"test@example.com".to_vec()])
        );
        assert_eq!(
            line(b"PASS  pass word \r\n"),
            (Some(Verb::Pass), vec![b"pass word ".to_vec()])
        );
        assert_eq!(
            line(b"APOP user digest\n"),
            (Some(Verb::Apop), vec![b"user".to_vec(), b"digest".to_vec()])
        );
        assert_eq!(
            line(b"AUTH  PLAIN  abc \r\n"),
            (Some(Verb::Auth), vec![b"PLAIN".to_vec(), b"abc".to_vec()])
        );
        assert_eq!(line(b"CAPA\r\n"), (Some(Verb::Capa), vec![]));
        assert_eq!(line(b"NOOP \r\n"), (Some(Verb::Noop), vec![]));
    }

    #[test]
    fn incomplete_until_lf() {
        assert_eq!(parse_line(b"USER a\r", false), Parsed::Incomplete);
        assert_eq!(parse_line(b"", false), Parsed::Incomplete);
        assert_eq!(parse_line(b"BOGUS", false), Parsed::Incomplete);
    }

    #[test]
    fn invalid_lines() {
        for bad in [
            &b"\r\n"[..],
            b"RETR 1\r\n",
            b"US3R a\r\n",
            b"USER a\rb\r\n",
            b"AUTH a b c d\r\n",
            b"\0\r\n",
            b" USER a\r\n",
            b"USERS a\r\n",
        ] {
            assert!(
                matches!(parse_line(bad, false), Parsed::Invalid { .. }),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_line(b"XXXX\r\nNOOP\r\n", false),
            Parsed::Invalid { consumed: 6 }
        );
    }

    #[test]
    fn continuation_lines() {
        assert_eq!(
            parse_line(b"dXNlcg==\r\n", true),
            Parsed::Line {
                consumed: 10,
                args: vec![b"dXNlcg=="],
                verb: None
            }
        );
        assert_eq!(
            parse_line(b"\r\n", true),
            Parsed::Line {
                consumed: 2,
                args: vec![b""],
                verb: None
            }
        );
        assert_eq!(
            parse_line(b"*\r\n", true),
            Parsed::Line {
                consumed: 3,
                args: vec![b"*"],
                verb: None
            }
        );
    }

    #[test]
    fn same_result_at_every_split() {
        let input = b"USER a b\r\nAUTH PLAIN x\r\n";
        for split in 0..input.len() {
            let head = &input[..split];
            match parse_line(head, false) {
                Parsed::Incomplete => assert!(!head.contains(&b'\n')),
                p => assert_eq!(p, parse_line(input, false)),
            }
        }
    }
}
