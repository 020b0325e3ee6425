//! SASL payloads and base64: no panic on any input, decode(encode(x)) == x,
//! and nothing decoded as a credential holds CR, LF or NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::{base64, sasl};

fn line_safe(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(base64::decode(&base64::encode(data)).as_deref(), Some(data));
    let _ = base64::decode(data);
    for creds in [
        sasl::plain(data),
        sasl::cram_md5(data),
        sasl::external(data),
        sasl::xoauth2(data),
        sasl::oauthbearer(data),
        sasl::xoauth2(&base64::encode(data)),
        sasl::oauthbearer(&base64::encode(data)),
    ]
    .into_iter()
    .flatten()
    {
        assert!(line_safe(&creds.login) && line_safe(&creds.passwd));
    }
    if let Ok(v) = sasl::login_username(data) {
        assert!(line_safe(&v));
    }
    if let Ok(v) = sasl::login_password(data) {
        assert!(line_safe(&v));
    }
    let encoded = base64::encode(data);
    if let Ok(c) = sasl::plain(&encoded) {
        assert!(line_safe(&c.login) && line_safe(&c.passwd));
    }
    let args: Vec<&[u8]> = data.split(|&b| b == b' ').take(4).collect();
    let _ = sasl::mechanism(&args);
});
