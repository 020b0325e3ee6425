//! POP3 client input, whole and split at an arbitrary point: the same
//! sequence of actions either way, and no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::pop3::{Capabilities, Config, Pop3Session};
use mail_core::{auth_bits, StartTls, Step};

fn run(chunks: &[&[u8]], cfg: &Config<'_>) -> Vec<(usize, Vec<u8>)> {
    let mut session = Pop3Session::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Step::Done { consumed, action } = session.step(&buf, cfg) {
            assert!(consumed > 0 && consumed <= buf.len());
            out.push((consumed, action.reply().to_vec()));
            buf.drain(..consumed);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let caps = Capabilities::build(
        &[b"TOP", b"USER"],
        auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::APOP,
    );
    let cfg = Config {
        auth_methods: usize::from(knobs) & 0x3e,
        capabilities: &caps,
        starttls: [StartTls::Off, StartTls::On, StartTls::Only][usize::from(knobs >> 6) % 3],
        tls: knobs & 1 != 0,
        salt: Some(b"<1.2@fuzz>\r\n"),
    };
    let split = usize::from(knobs).wrapping_mul(7) % (input.len() + 1);
    let (a, b) = input.split_at(split);
    assert_eq!(run(&[input], &cfg), run(&[a, b], &cfg));
});
