//! auth_http responses: every prefix of a complete response is "incomplete"
//! or the same error, never a different answer, and no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mail_core::auth_http::{decide, parse_response};

fuzz_target!(|data: &[u8]| {
    let whole = parse_response(data);
    let split = data.len() / 2;
    match parse_response(&data[..split]) {
        Ok(None) => {}
        Ok(Some(r)) => assert_eq!(whole, Ok(Some(r))),
        Err(e) => assert_eq!(whole, Err(e)),
    }
    if let Ok(Some(resp)) = whole {
        let _ = decide(resp.clone(), true, true);
        let _ = decide(resp, false, true);
    }
});
