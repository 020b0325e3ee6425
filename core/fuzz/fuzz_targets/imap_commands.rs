//! IMAP client input, whole and split at an arbitrary point: the same
//! sequence of events (literal continuations included) either way, and no
//! panic, whatever the tags, quoting and literal lengths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::imap::{Capabilities, Config, ImapSession};
use mail_core::{auth_bits, Action, StartTls, Step};

#[derive(Debug, PartialEq)]
enum Seen {
    Continue,
    Done(usize, String),
}

fn run(chunks: &[&[u8]], cfg: &Config<'_>) -> Vec<Seen> {
    let mut session = ImapSession::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match session.step(&buf, cfg) {
                Step::Incomplete => break,
                Step::Done {
                    consumed: 0,
                    action: Action::Continue(_),
                } => out.push(Seen::Continue),
                Step::Done { consumed, action } => {
                    assert!(consumed > 0 && consumed <= buf.len());
                    let what = match action {
                        Action::Authenticate(c) => format!("auth {:?}", c),
                        other => format!("{other:?}"),
                    };
                    out.push(Seen::Done(consumed, what));
                    buf.drain(..consumed);
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let caps = Capabilities::build(&[b"IMAP4rev1"], auth_bits::PLAIN | auth_bits::CRAM_MD5);
    let cfg = Config {
        auth_methods: usize::from(knobs) & 0x3e,
        capabilities: &caps,
        starttls: [StartTls::Off, StartTls::On, StartTls::Only][usize::from(knobs >> 6) % 3],
        tls: knobs & 1 != 0,
        salt: Some(b"<1.2@fuzz>\r\n"),
    };
    let split = usize::from(knobs).wrapping_mul(13) % (input.len() + 1);
    let (a, b) = input.split_at(split);
    assert_eq!(run(&[input], &cfg), run(&[a, b], &cfg));
});
