//! SMTP client input, whole and split at an arbitrary point: the same
//! sequence of actions either way, and no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::smtp::{Config, Replies, SmtpSession};
use mail_core::{auth_bits, StartTls, Step};

fn run(chunks: &[&[u8]], cfg: &Config<'_>) -> Vec<(usize, String)> {
    let mut session = SmtpSession::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Step::Done { consumed, action } = session.step(&buf, cfg) {
            assert!(consumed > 0 && consumed <= buf.len());
            out.push((consumed, format!("{action:?}")));
            buf.drain(..consumed);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else { return };
    let replies = Replies::build(b"mx", &[b"PIPELINING"], auth_bits::PLAIN | auth_bits::LOGIN);
    let cfg = Config {
        auth_methods: usize::from(knobs) & 0x76,
        capabilities: &replies,
        starttls: [StartTls::Off, StartTls::On, StartTls::Only][usize::from(knobs >> 6) % 3],
        tls: knobs & 1 != 0,
        salt: Some(b"<1.2@fuzz>\r\n"),
    };
    let split = usize::from(knobs).wrapping_mul(11) % (input.len() + 1);
    let (a, b) = input.split_at(split);
    assert_eq!(run(&[input], &cfg), run(&[a, b], &cfg));
});
