//! ManageSieve client input, whole and split at an arbitrary point: the
//! same actions either way, and no panic, whatever the quoting, literal
//! lengths and SASL exchanges; and the same bytes as backend replies to
//! the login dialogue: no panic, and the one command sent is one line
//! (or a literal's announcement and its base64 data).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::sieve::{Capabilities, Config, LoginDialogue, SieveSession};
use mail_core::upstream::UpstreamStep;
use mail_core::{auth_bits, StartTls, Step};

fn run(chunks: &[&[u8]], cfg: &Config<'_>) -> Vec<(usize, String)> {
    let mut session = SieveSession::default();
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
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let caps = Capabilities::build(&[b"\"SIEVE\" \"fileinto\""], auth_bits::PLAIN);
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

    let mut login = LoginDialogue::new(b"user", b"secret");
    for reply in input.split_inclusive(|&b| b == b'\n') {
        if let UpstreamStep::Send(line) = login.on_data(reply, reply.len() > 64) {
            let body = line.strip_suffix(b"\r\n").unwrap_or(&line);
            let body = match body.iter().position(|&b| b == b'\n') {
                // AUTHENTICATE "PLAIN" {n+} CRLF base64
                Some(lf) => &body[lf + 1..],
                None => body,
            };
            assert!(!body.contains(&b'\n') && !body.contains(&b'\r'));
        }
    }
});
