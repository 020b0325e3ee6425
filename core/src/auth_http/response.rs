//! The auth server's response: an optional `HTTP/` status line (ignored),
//! then header lines with nginx's grammar; the body is never read.

use std::net::SocketAddr;

use super::parse_server;
use crate::smtp::BackendAuth;
use crate::starttls::BackendTls;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Wait,
    /// Anything else: the text the client is told.
    Error(Vec<u8>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The last non-OK, non-WAIT `Auth-Status`.
    pub error: Option<Vec<u8>>,
    /// An `Auth-Status: WAIT` was seen.
    pub wait: bool,
    pub server: Vec<u8>,
    pub port: Vec<u8>,
    pub user: Option<Vec<u8>>,
    pub pass: Option<Vec<u8>>,
    /// `Auth-Wait`, seconds.
    pub sleep: u64,
    pub error_code: Option<Vec<u8>>,
    /// `Auth-SMTP-Auth` (ours): how to log in to this SMTP backend,
    /// overriding `proxy_smtp_auth`; an unknown value is ignored.
    pub smtp_auth: Option<BackendAuth>,
    /// `Auth-Error-SASL` (freenginx 1.27.1): mechanism-specific error
    /// details, base64, for the client of an XOAUTH2 or OAUTHBEARER login.
    pub error_sasl: Option<Vec<u8>>,
    /// `Auth-Cache-TTL` (ours): seconds `auth_http_cache` may keep this
    /// answer, 0 never; overrides `valid`/`invalid`.
    pub cache_ttl: Option<u64>,
    /// `Auth-Server-TLS` (ours): TLS to this backend, overriding
    /// `proxy_ssl` and `proxy_starttls`; an unknown value is ignored.
    pub server_tls: Option<BackendTls>,
    /// `Auth-Server-Name` (ours): the name sent as SNI and verified,
    /// overriding `proxy_ssl_name`; empty means no override. Boxed: the
    /// response is moved around whole, and kept small.
    pub server_tls_name: Option<Box<[u8]>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A CR in the status line not followed by LF.
    InvalidResponse,
    /// A header line nginx would not accept.
    InvalidHeader,
    /// A `Content-Length` that is not a decimal number, or two that
    /// differ (kept-alive connections only).
    InvalidLength,
    /// `Transfer-Encoding`: chunks were never asked for (kept-alive
    /// connections only).
    Chunked,
}

/// Where the line at the start of `buf` ends: `Ok(Some((line, next)))`
/// with `line` without its CR LF (or bare LF) and `next` the offset of the
/// next line; `Ok(None)` while incomplete; `err` for a CR inside the line.
/// One search for CR or LF per line: this runs for every header of every
/// login.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "offsets of bytes found in `buf` stay below buf.len() <= isize::MAX, so +1 and +2 cannot overflow"
)]
fn line_end(buf: &[u8], err: ParseError) -> Result<Option<(&[u8], usize)>, ParseError> {
    let Some(end) = memchr::memchr2(b'\r', b'\n', buf) else {
        return Ok(None);
    };
    let line = buf.get(..end).unwrap_or_default();
    match (buf.get(end), buf.get(end + 1)) {
        (Some(b'\n'), _) => Ok(Some((line, end + 1))),
        (Some(b'\r'), Some(b'\n')) => Ok(Some((line, end + 2))),
        (Some(b'\r'), None) => Ok(None),
        _ => Err(err),
    }
}

pub(crate) fn status_line_end(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let is_http = buf.iter().zip(b"HTTP/").all(|(a, b)| a == b);
    if !is_http {
        return Ok(Some(0));
    }
    if buf.len() < 5 {
        return Ok(None);
    }
    Ok(line_end(buf, ParseError::InvalidResponse)?.map(|(_, next)| next))
}

pub(crate) struct Header<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// One header line at the start of `buf`: `Ok(None)` when incomplete,
/// `Ok(Some((None, n)))` at the empty line that ends the headers.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "name_end is an offset inside `line`, so +1 cannot overflow"
)]
pub(crate) fn header_line(buf: &[u8]) -> Result<Option<(Option<Header<'_>>, usize)>, ParseError> {
    let Some((line, next)) = line_end(buf, ParseError::InvalidHeader)? else {
        return Ok(None);
    };
    if line.is_empty() {
        return Ok(Some((None, next)));
    }
    let name_end = memchr::memchr(b':', line).unwrap_or(line.len());
    let name = line.get(..name_end).unwrap_or_default();
    let valid_name = name.first().is_some_and(u8::is_ascii_alphanumeric)
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid_name {
        return Err(ParseError::InvalidHeader);
    }
    let raw = line.get(name_end + 1..).unwrap_or_default();
    // spaces only, as nginx: a tab is part of the value
    let value = match (
        raw.iter().position(|&b| b != b' '),
        raw.iter().rposition(|&b| b != b' '),
    ) {
        (Some(first), Some(last)) => raw.get(first..=last).unwrap_or_default(),
        _ => &[],
    };
    Ok(Some((Some(Header { name, value }), next)))
}

/// The headers this client reads, by name.
#[derive(Clone, Copy)]
enum Known {
    Status,
    Server,
    Port,
    User,
    Pass,
    Wait,
    ErrorCode,
    SmtpAuth,
    ErrorSasl,
    CacheTtl,
    ServerTls,
    ServerName,
}

fn known(name: &[u8]) -> Option<Known> {
    let rest = name.get(5..)?;
    if !name.get(..5)?.eq_ignore_ascii_case(b"auth-") {
        return None;
    }
    let is = |n: &[u8]| rest.eq_ignore_ascii_case(n);
    let header = match rest.len() {
        4 if is(b"port") => Known::Port,
        4 if is(b"user") => Known::User,
        4 if is(b"pass") => Known::Pass,
        4 if is(b"wait") => Known::Wait,
        6 if is(b"status") => Known::Status,
        6 if is(b"server") => Known::Server,
        9 if is(b"smtp-auth") => Known::SmtpAuth,
        9 if is(b"cache-ttl") => Known::CacheTtl,
        10 if is(b"error-code") => Known::ErrorCode,
        10 if is(b"error-sasl") => Known::ErrorSasl,
        10 if is(b"server-tls") => Known::ServerTls,
        11 if is(b"server-name") => Known::ServerName,
        _ => return None,
    };
    Some(header)
}

/// Parses a buffered response; `Ok(None)` until the empty line arrives.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "`pos` only grows by lengths of lines of `buf`, so it stays <= buf.len()"
)]
pub fn parse_response(buf: &[u8]) -> Result<Option<Response>, ParseError> {
    let Some(mut pos) = status_line_end(buf)? else {
        return Ok(None);
    };
    let mut resp = Response::default();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some((header, used)) = header_line(rest)? else {
            return Ok(None);
        };
        pos += used;
        let Some(Header { name, value }) = header else {
            return Ok(Some(resp));
        };
        match known(name) {
            Some(Known::Status) => match value {
                b"OK" => {}
                b"WAIT" => resp.wait = true,
                text => resp.error = Some(text.to_vec()),
            },
            Some(Known::Server) => resp.server = value.to_vec(),
            Some(Known::Port) => resp.port = value.to_vec(),
            Some(Known::User) => resp.user = Some(value.to_vec()),
            Some(Known::Pass) => resp.pass = Some(value.to_vec()),
            Some(Known::Wait) => {
                if let Some(n) = atoi(value) {
                    resp.sleep = n;
                }
            }
            // an empty code means the default, as stock's `errcode.len == 0`
            Some(Known::ErrorCode) => resp.error_code = (!value.is_empty()).then(|| value.to_vec()),
            Some(Known::SmtpAuth) => {
                if let Some(auth) = BackendAuth::parse(value) {
                    resp.smtp_auth = Some(auth);
                }
            }
            // the last one counts; an empty one is still a challenge
            Some(Known::ErrorSasl) => resp.error_sasl = Some(value.to_vec()),
            // a value that is not a number is no override
            Some(Known::CacheTtl) => resp.cache_ttl = atoi(value),
            Some(Known::ServerTls) => {
                if let Some(tls) = BackendTls::parse(value) {
                    resp.server_tls = Some(tls);
                }
            }
            Some(Known::ServerName) => {
                resp.server_tls_name = (!value.is_empty()).then(|| value.into())
            }
            None => {}
        }
    }
}

/// `ngx_atoi`: decimal digits only, no sign, no overflow.
pub fn atoi(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        let d = u64::from(char::from(b).to_digit(10)?);
        acc.checked_mul(10)?.checked_add(d)
    })
}

/// What the mail session does with a complete response.
#[must_use = "the session is waiting for the auth server's decision"]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Refused: tell the client `text`; after `sleep` seconds it may retry,
    /// with no sleep the session ends. `sasl`: the `Auth-Error-SASL` value,
    /// which a bearer token login relays as a challenge first.
    Refused {
        text: Vec<u8>,
        error_code: Option<Vec<u8>>,
        sleep: u64,
        sasl: Option<Vec<u8>>,
    },
    /// Ask again after `sleep` seconds.
    Wait {
        sleep: u64,
    },
    MissingServer,
    MissingPassword,
    InvalidServer(Vec<u8>),
    InvalidPort(Vec<u8>),
    /// Log in to `addr`, named `name` ("addr:port" as sent) in logs.
    Proxy {
        addr: SocketAddr,
        name: Vec<u8>,
        login: Option<Vec<u8>>,
        passwd: Option<Vec<u8>>,
        /// The auth server's choice of SMTP backend login, if it made one.
        smtp_auth: Option<BackendAuth>,
        /// `Auth-Server-TLS` and `Auth-Server-Name`, if sent.
        tls: Option<BackendTls>,
        tls_name: Option<Vec<u8>>,
    },
}

/// `have_password`: the session holds a password it may send upstream
/// (the client's own, for plain logins).
pub fn decide(resp: Response, have_password: bool, password_required: bool) -> Decision {
    if let Some(text) = resp.error {
        return Decision::Refused {
            text,
            error_code: resp.error_code,
            sleep: resp.sleep,
            sasl: resp.error_sasl,
        };
    }
    if resp.wait {
        return Decision::Wait { sleep: resp.sleep };
    }
    if resp.server.is_empty() || resp.port.is_empty() {
        return Decision::MissingServer;
    }
    if password_required && resp.pass.is_none() && !have_password {
        return Decision::MissingPassword;
    }
    let port = match atoi(&resp.port) {
        Some(p @ 1..=65535) => p as u16,
        _ => {
            // nginx checks the address first
            if parse_server(&resp.server, 1).is_none() {
                return Decision::InvalidServer(resp.server);
            }
            return Decision::InvalidPort(resp.port);
        }
    };
    let Some(addr) = parse_server(&resp.server, port) else {
        return Decision::InvalidServer(resp.server);
    };
    let mut name = resp.server;
    name.push(b':');
    name.extend_from_slice(&resp.port);
    Decision::Proxy {
        addr,
        name,
        login: resp.user,
        passwd: resp.pass,
        smtp_auth: resp.smtp_auth,
        tls: resp.server_tls,
        tls_name: resp.server_tls_name.map(Vec::from),
    }
}
