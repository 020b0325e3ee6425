//! Backend replies during the POP3 and IMAP login dialogues: no panic, and
//! the commands we send never carry a line break the client put there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::imap;
use mail_core::pop3::{LoginDialogue, UpstreamStep};

fuzz_target!(|data: &[u8]| {
    let mut pop3 = LoginDialogue::new(b"user", b"secret");
    let mut imap = imap::LoginDialogue::new(b"a1 ", b"user", b"secret");
    for reply in data.split_inclusive(|&b| b == b'\n') {
        for step in [
            pop3.on_data(reply, reply.len() > 64),
            imap.on_data(reply, reply.len() > 64),
        ] {
            if let UpstreamStep::Send(line) = step {
                let body = line.strip_suffix(b"\r\n").unwrap_or(&line);
                assert!(!body.contains(&b'\n'));
            }
        }
    }
});
