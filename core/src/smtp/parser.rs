//! The SMTP command line grammar of `ngx_mail_smtp_parse_command`: a
//! four-letter verb (or STARTTLS), then up to eleven space-separated
//! arguments.

use crate::command::Grammar;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Auth,
    Quit,
    Noop,
    Mail,
    Rset,
    Rcpt,
    Vrfy,
    Expn,
    Help,
    Starttls,
}

impl Verb {
    fn from_bytes(word: &[u8]) -> Option<Verb> {
        let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
        [
            ("HELO", Verb::Helo),
            ("EHLO", Verb::Ehlo),
            ("AUTH", Verb::Auth),
            ("QUIT", Verb::Quit),
            ("NOOP", Verb::Noop),
            ("MAIL", Verb::Mail),
            ("RSET", Verb::Rset),
            ("RCPT", Verb::Rcpt),
            ("VRFY", Verb::Vrfy),
            ("EXPN", Verb::Expn),
            ("HELP", Verb::Help),
            ("STARTTLS", Verb::Starttls),
        ]
        .into_iter()
        .find_map(|(name, verb)| is(name).then_some(verb))
    }
}

pub const MAX_ARGS: usize = 11;

pub type Parsed<'a> = crate::command::Parsed<'a, Verb>;

const GRAMMAR: Grammar<Verb> = Grammar {
    verb: Verb::from_bytes,
    whole_rest: |_| false,
    max_args: MAX_ARGS,
};

/// Parses the first line of `buf`; with `continuation`, a SASL response.
pub fn parse_line(buf: &[u8], continuation: bool) -> Parsed<'_> {
    crate::command::parse_line(buf, continuation, &GRAMMAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb_args(buf: &[u8]) -> (Option<Verb>, Vec<Vec<u8>>) {
        match parse_line(buf, false) {
            Parsed::Line { verb, args, .. } => (verb, args.iter().map(|a| a.to_vec()).collect()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn commands() {
        assert_eq!(
            verb_args(b"ehlo client.example\r\n"),
            (Some(Verb::Ehlo), vec![b"client.example".to_vec()])
        );
        assert_eq!(
            verb_args(b"MAIL FROM:<a@b> SIZE=100\r\n"),
            (
                Some(Verb::Mail),
                vec![b"FROM:<a@b>".to_vec(), b"SIZE=100".to_vec()]
            )
        );
        assert_eq!(verb_args(b"StartTLS\r\n"), (Some(Verb::Starttls), vec![]));
        assert_eq!(verb_args(b"QUIT\n"), (Some(Verb::Quit), vec![]));
    }

    #[test]
    fn bad_lines() {
        for bad in [
            &b"DATA\r\n"[..],
            b"HELOX a\r\n",
            b"\r\n",
            b"MAIL a\rb\r\n",
            b"STARTTL\r\n",
        ] {
            assert!(
                matches!(parse_line(bad, false), Parsed::Invalid { .. }),
                "{bad:?}"
            );
        }
        let twelve = [b"MAIL".to_vec(), b" a".repeat(12), b"\r\n".to_vec()].concat();
        assert!(matches!(parse_line(&twelve, false), Parsed::Invalid { .. }));
        let eleven = [b"MAIL".to_vec(), b" a".repeat(11), b"\r\n".to_vec()].concat();
        assert!(matches!(parse_line(&eleven, false), Parsed::Line { .. }));
    }
}
