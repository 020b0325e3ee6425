//! Backend replies during the POP3, IMAP and SMTP login dialogues: no
//! panic, and no command we send carries a line break of anyone's making,
//! even with a hostile client hostname and login in XCLIENT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::pop3::LoginDialogue;
use mail_core::upstream::{ClientInfo, UpstreamStep};
use mail_core::{imap, smtp};

fn check(step: UpstreamStep) {
    if let UpstreamStep::Send(line) = step {
        let body = line.strip_suffix(b"\r\n").unwrap_or(&line);
        assert!(!body.contains(&b'\n') && !body.contains(&b'\r'));
    }
}

fuzz_target!(|data: &[u8]| {
    let hostile = data.get(..data.len().min(16)).unwrap_or_default().to_vec();
    // proxy_pass_client_info: the ID and XCLIENT steps too
    let info = data.first().is_some_and(|b| b & 8 != 0).then(|| ClientInfo {
        addr: hostile.clone(),
        session: hostile.clone(),
        ..Default::default()
    });
    let mut pop3 = LoginDialogue::new(b"user", b"secret", info.clone());
    let mut imap = imap::LoginDialogue::new(b"a1 ", b"user", b"secret", info);
    let mut smtp = smtp::LoginDialogue::new(smtp::Login {
        server_name: b"proxy".to_vec(),
        xclient: data.first().is_some_and(|b| b & 1 != 0),
        smtp_auth: match data.first().map(|b| b & 0x12) {
            Some(0x02) => smtp::BackendAuth::Plain,
            Some(0x10 | 0x12) => smtp::BackendAuth::Login,
            _ => smtp::BackendAuth::Off,
        },
        client_addr: b"192.0.2.1".to_vec(),
        client_host: hostile.clone(),
        helo: b"helo".to_vec(),
        login: hostile,
        passwd: Some(b"secret".to_vec()),
        envelope: data.first().is_some_and(|b| b & 4 != 0).then(|| (b"MAIL FROM:<a@b>".to_vec(), b"RCPT TO:<c@d>".to_vec())),
        ..Default::default()
    });
    for reply in data.split_inclusive(|&b| b == b'\n') {
        let full = reply.len() > 64;
        check(pop3.on_data(reply, full));
        check(imap.on_data(reply, full));
        check(smtp.on_data(reply, full));
    }
});
