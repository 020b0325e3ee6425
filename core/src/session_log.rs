//! The per-session record's two log formats (`access_log ... mail|json`)
//! and the escaping they need. No password or token is ever a field: the
//! record has none to give.

use std::fmt::Write as _;

/// What the auth server made of the last login attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    Ok,
    /// The auth server said no (its reason is kept apart).
    Refused,
    /// Unusable answer, connection failure, or the session's own error.
    Error,
    Timeout,
}

impl AuthResult {
    pub fn name(self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Refused => "refused",
            AuthResult::Error => "error",
            AuthResult::Timeout => "timeout",
        }
    }

    /// Every value, in the order metrics list them.
    pub const ALL: [AuthResult; 4] = [
        AuthResult::Ok,
        AuthResult::Refused,
        AuthResult::Error,
        AuthResult::Timeout,
    ];
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client said QUIT/LOGOUT, or was told to go after an error.
    Quit,
    /// The client closed its connection.
    ClientClosed,
    /// The backend closed its connection.
    BackendClosed,
    /// The client was idle for the timeout (`timeout` or `proxy_timeout`).
    ClientTimeout,
    BackendTimeout,
    /// The auth server refused and the session was ended for it.
    AuthRefused,
    /// The auth server or backend failed, or an internal error.
    Error,
    /// nginx's `worker_shutdown_timeout`.
    Shutdown,
}

impl CloseReason {
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Quit => "quit",
            CloseReason::ClientClosed => "client_closed",
            CloseReason::BackendClosed => "backend_closed",
            CloseReason::ClientTimeout => "client_timeout",
            CloseReason::BackendTimeout => "backend_timeout",
            CloseReason::AuthRefused => "auth_refused",
            CloseReason::Error => "error",
            CloseReason::Shutdown => "shutdown",
        }
    }

    pub const ALL: [CloseReason; 8] = [
        CloseReason::Quit,
        CloseReason::ClientClosed,
        CloseReason::BackendClosed,
        CloseReason::ClientTimeout,
        CloseReason::BackendTimeout,
        CloseReason::AuthRefused,
        CloseReason::Error,
        CloseReason::Shutdown,
    ];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One finished session, as the shell gathered it. Byte fields are what
/// the peers sent (escaped when written); `None` is written `-` (mail) or
/// `null` (json).
#[derive(Clone, Debug, Default)]
pub struct SessionRecord<'a> {
    /// Local time, ISO 8601 (nginx's `$time_iso8601`).
    pub time: &'a [u8],
    pub client_addr: &'a [u8],
    pub client_port: Option<u16>,
    pub server_addr: &'a [u8],
    pub server_port: Option<u16>,
    pub protocol: &'a [u8],
    pub tls_version: Option<&'a [u8]>,
    pub tls_cipher: Option<&'a [u8]>,
    pub login: Option<&'a [u8]>,
    pub auth_method: Option<&'a [u8]>,
    pub auth_result: Option<AuthResult>,
    /// The auth server's `Auth-Status` text of a refusal.
    pub auth_reason: Option<&'a [u8]>,
    pub auth_ms: Option<u64>,
    pub backend: Option<&'a [u8]>,
    pub backend_tls: bool,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub duration_ms: u64,
    pub reason: Option<CloseReason>,
}

/// A value of the `mail` format: bare when it is printable ASCII with no
/// space, quote, backslash or `=`; else quoted, with `\"`, `\\` and `\xHH`
/// for anything else. Empty is `""`.
pub fn mail_value(out: &mut String, v: &[u8]) {
    let bare = !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\' && b != b'=');
    if bare {
        out.extend(v.iter().map(|&b| char::from(b)));
        return;
    }
    out.push('"');
    for &b in v {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b' ' => out.push(' '),
            _ if b.is_ascii_graphic() => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    out.push('"');
}

/// A JSON string: `\"`, `\\`, `\n`-style and `\u00XX` escapes; bytes that
/// are not UTF-8 are each written as `\u00XX` (their Latin-1 reading), so
/// that the line is always valid JSON.
pub fn json_string(out: &mut String, v: &[u8]) {
    out.push('"');
    let mut rest = v;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                (std::str::from_utf8(good).unwrap_or_default(), bad)
            }
        };
        for ch in valid.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        match bad.split_first() {
            Some((b, tail)) => {
                let _ = write!(out, "\\u{:04x}", b);
                rest = tail;
            }
            None => rest = &[],
        }
    }
    out.push('"');
}

fn ms_as_seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The fields in order: name, and the value as text (`None`: absent) with
/// whether JSON writes it as a number or bool (unquoted).
fn fields<'a>(r: &'a SessionRecord<'a>) -> Vec<(&'static str, Option<Value<'a>>)> {
    let bytes = |v: &'a [u8]| Some(Value::Bytes(v));
    let num = |v: u64| Some(Value::Raw(v.to_string()));
    vec![
        ("time", bytes(r.time)),
        ("client", bytes(r.client_addr)),
        ("client_port", r.client_port.and_then(|p| num(p.into()))),
        ("server", bytes(r.server_addr)),
        ("server_port", r.server_port.and_then(|p| num(p.into()))),
        ("protocol", bytes(r.protocol)),
        ("tls", r.tls_version.map(Value::Bytes)),
        ("cipher", r.tls_cipher.map(Value::Bytes)),
        ("login", r.login.map(Value::Bytes)),
        ("auth_method", r.auth_method.map(Value::Bytes)),
        (
            "auth",
            r.auth_result.map(|a| Value::Bytes(a.name().as_bytes())),
        ),
        ("auth_reason", r.auth_reason.map(Value::Bytes)),
        (
            "auth_time",
            r.auth_ms.map(|ms| Value::Raw(ms_as_seconds(ms))),
        ),
        ("backend", r.backend.map(Value::Bytes)),
        (
            "backend_tls",
            Some(Value::Flag(if r.backend_tls { "on" } else { "off" })),
        ),
        ("bytes_to_backend", num(r.bytes_to_backend)),
        ("bytes_to_client", num(r.bytes_to_client)),
        ("duration", Some(Value::Raw(ms_as_seconds(r.duration_ms)))),
        (
            "reason",
            r.reason.map(|c| Value::Bytes(c.name().as_bytes())),
        ),
    ]
}

enum Value<'a> {
    Bytes(&'a [u8]),
    /// A number: unquoted in JSON.
    Raw(String),
    /// on/off: a JSON bool.
    Flag(&'static str),
}

/// The `mail` format: `key=value` pairs, one line, no newline.
pub fn mail_line(r: &SessionRecord<'_>) -> String {
    let mut out = String::with_capacity(256);
    for (i, (name, value)) in fields(r).into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(name);
        out.push('=');
        match value {
            None => out.push('-'),
            Some(Value::Bytes(v)) => mail_value(&mut out, v),
            Some(Value::Raw(v)) => out.push_str(&v),
            Some(Value::Flag(v)) => out.push_str(v),
        }
    }
    out
}

/// The `json` format: one object, no newline.
pub fn json_line(r: &SessionRecord<'_>) -> String {
    let mut out = String::with_capacity(320);
    out.push('{');
    for (i, (name, value)) in fields(r).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, name.as_bytes());
        out.push(':');
        match value {
            None => out.push_str("null"),
            Some(Value::Bytes(v)) => json_string(&mut out, v),
            Some(Value::Raw(v)) => out.push_str(&v),
            Some(Value::Flag(v)) => out.push_str(if v == "on" { "true" } else { "false" }),
        }
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionRecord<'static> {
        SessionRecord {
            time: b"2026-12-02T15:00:00+00:00",
            client_addr: b"127.0.0.1",
            client_port: Some(40000),
            server_addr: b"127.0.0.1",
            server_port: Some(8110),
            protocol: b"pop3",
            tls_version: Some(b"TLSv1.3"),
            tls_cipher: Some(b"TLS_AES_256_GCM_SHA384"),
            login: Some(b"we ird\"user"),
            auth_method: Some(b"plain"),
            auth_result: Some(AuthResult::Refused),
            auth_reason: Some(b"Bad password"),
            auth_ms: Some(1234),
            backend: None,
            backend_tls: false,
            bytes_to_backend: 0,
            bytes_to_client: 42,
            duration_ms: 5,
            reason: Some(CloseReason::AuthRefused),
        }
    }

    #[test]
    fn mail_format() {
        assert_eq!(
            mail_line(&sample()),
            "time=2026-12-02T15:00:00+00:00 client=127.0.0.1 client_port=40000 \
             server=127.0.0.1 server_port=8110 protocol=pop3 tls=TLSv1.3 \
             cipher=TLS_AES_256_GCM_SHA384 login=\"we ird\\\"user\" auth_method=plain \
             auth=refused auth_reason=\"Bad password\" auth_time=1.234 backend=- \
             backend_tls=off bytes_to_backend=0 bytes_to_client=42 duration=0.005 \
             reason=auth_refused"
        );
    }

    #[test]
    fn json_format() {
        assert_eq!(
            json_line(&sample()),
            "{\"time\":\"2026-12-02T15:00:00+00:00\",\"client\":\"127.0.0.1\",\
             \"client_port\":40000,\"server\":\"127.0.0.1\",\"server_port\":8110,\
             \"protocol\":\"pop3\",\"tls\":\"TLSv1.3\",\"cipher\":\"TLS_AES_256_GCM_SHA384\",\
             \"login\":\"we ird\\\"user\",\"auth_method\":\"plain\",\"auth\":\"refused\",\
             \"auth_reason\":\"Bad password\",\"auth_time\":1.234,\"backend\":null,\
             \"backend_tls\":false,\"bytes_to_backend\":0,\"bytes_to_client\":42,\
             \"duration\":0.005,\"reason\":\"auth_refused\"}"
        );
    }

    #[test]
    fn mail_escapes() {
        let mut s = String::new();
        mail_value(&mut s, b"a=b\\c\r\n\x00\xff");
        assert_eq!(s, "\"a=b\\\\c\\x0D\\x0A\\x00\\xFF\"");
        let mut s = String::new();
        mail_value(&mut s, b"");
        assert_eq!(s, "\"\"");
        let mut s = String::new();
        mail_value(&mut s, b"user@example.com");
        assert_eq!(s, "user@example.com");
    }

    #[test]
    fn json_escapes() {
        let mut s = String::new();
        json_string(&mut s, "a\"\\\n\x01\u{7f}é".as_bytes());
        assert_eq!(s, "\"a\\\"\\\\\\n\\u0001\\u007fé\"");
        let mut s = String::new();
        json_string(&mut s, b"x\xffy\xc3");
        assert_eq!(s, "\"x\\u00ffy\\u00c3\"");
    }
}
