//! SASL payload decoders (RFC 4616 PLAIN, LOGIN, RFC 2195 CRAM-MD5, RFC 4422
//! EXTERNAL, and freenginx's XOAUTH2 and RFC 7628 OAUTHBEARER) with nginx's
//! acceptance rules and log texts.
//!
//! Hardening beyond stock: decoded logins and passwords may not hold CR, LF
//! or NUL, because they end up in backend command lines (`USER x`, `PASS y`)
//! where a CR/LF would smuggle in a command of the client's choosing.

use crate::{base64, AuthMethod, Credentials, Invalid};

mod oauth;
pub use oauth::{error_challenge, oauthbearer, xoauth2, Refusal};

fn line_safe(value: &[u8]) -> bool {
    !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

fn decode(arg: &[u8], mechanism: &'static str) -> Result<Vec<u8>, Invalid> {
    base64::decode(arg).ok_or(Invalid(Some(match mechanism {
        "PLAIN" => "client sent invalid base64 encoding in AUTH PLAIN command",
        "LOGIN" => "client sent invalid base64 encoding in AUTH LOGIN command",
        "CRAM-MD5" => "client sent invalid base64 encoding in AUTH CRAM-MD5 command",
        "XOAUTH2" => "client sent invalid base64 encoding in AUTH XOAUTH2 command",
        "OAUTHBEARER" => "client sent invalid base64 encoding in AUTH OAUTHBEARER command",
        _ => "client sent invalid base64 encoding in AUTH EXTERNAL command",
    })))
}

/// `[authzid] NUL authcid NUL passwd`; the authzid is ignored, as nginx does.
pub fn plain(arg: &[u8]) -> Result<Credentials, Invalid> {
    let decoded = decode(arg, "PLAIN")?;
    let mut parts = decoded.splitn(3, |&b| b == 0);
    let _authzid = parts.next();
    let login = parts.next().ok_or(Invalid(Some(
        "client sent invalid login in AUTH PLAIN command",
    )))?;
    let passwd = parts.next().ok_or(Invalid(Some(
        "client sent invalid password in AUTH PLAIN command",
    )))?;
    if !line_safe(login) {
        return Err(Invalid(Some(
            "client sent invalid login in AUTH PLAIN command",
        )));
    }
    if !line_safe(passwd) {
        return Err(Invalid(Some(
            "client sent invalid password in AUTH PLAIN command",
        )));
    }
    Ok(Credentials {
        method: AuthMethod::Plain,
        login: login.to_vec(),
        passwd: passwd.to_vec(),
    })
}

/// The base64 user name of AUTH LOGIN.
pub fn login_username(arg: &[u8]) -> Result<Vec<u8>, Invalid> {
    let login = decode(arg, "LOGIN")?;
    if !line_safe(&login) {
        return Err(Invalid(Some(
            "client sent invalid login in AUTH LOGIN command",
        )));
    }
    Ok(login)
}

/// The base64 password of AUTH LOGIN.
pub fn login_password(arg: &[u8]) -> Result<Vec<u8>, Invalid> {
    let passwd = decode(arg, "LOGIN")?;
    if !line_safe(&passwd) {
        return Err(Invalid(Some(
            "client sent invalid password in AUTH LOGIN command",
        )));
    }
    Ok(passwd)
}

/// `user SP 32-hex-digest`, base64-encoded.
pub fn cram_md5(arg: &[u8]) -> Result<Credentials, Invalid> {
    const BAD_HASH: Invalid = Invalid(Some(
        "client sent invalid CRAM-MD5 hash in AUTH CRAM-MD5 command",
    ));
    let decoded = decode(arg, "CRAM-MD5")?;
    let space = decoded.iter().position(|&b| b == b' ').ok_or(BAD_HASH)?;
    let (login, rest) = decoded.split_at(space);
    let digest = rest.get(1..).ok_or(BAD_HASH)?;
    if digest.len() != 32 || !line_safe(digest) {
        return Err(BAD_HASH);
    }
    if !line_safe(login) {
        return Err(Invalid(Some(
            "client sent invalid login in AUTH CRAM-MD5 command",
        )));
    }
    Ok(Credentials {
        method: AuthMethod::CramMd5,
        login: login.to_vec(),
        passwd: digest.to_vec(),
    })
}

/// The authorization identity of EXTERNAL (the certificate does the proving).
pub fn external(arg: &[u8]) -> Result<Credentials, Invalid> {
    let login = decode(arg, "EXTERNAL")?;
    if !line_safe(&login) {
        return Err(Invalid(Some(
            "client sent invalid login in AUTH EXTERNAL command",
        )));
    }
    Ok(Credentials {
        method: AuthMethod::External,
        login,
        passwd: Vec::new(),
    })
}

/// The SASL mechanism named in an AUTH command, and whether an initial
/// response came with it, as `ngx_mail_auth_parse` sorts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism<'a> {
    Login,
    LoginUsername(&'a [u8]),
    Plain,
    PlainResponse(&'a [u8]),
    CramMd5,
    External,
    ExternalResponse(&'a [u8]),
    XOauth2,
    XOauth2Response(&'a [u8]),
    OauthBearer,
    OauthBearerResponse(&'a [u8]),
}

/// Sorts the arguments of `AUTH <mechanism> [initial-response]`.
pub fn mechanism<'a>(args: &[&'a [u8]]) -> Option<Mechanism<'a>> {
    let (name, rest) = args.split_first()?;
    let is = |m: &str| name.eq_ignore_ascii_case(m.as_bytes());
    if is("LOGIN") {
        return match rest {
            [] => Some(Mechanism::Login),
            [user] => Some(Mechanism::LoginUsername(user)),
            _ => None,
        };
    }
    if is("PLAIN") {
        return match rest {
            [] => Some(Mechanism::Plain),
            [resp] => Some(Mechanism::PlainResponse(resp)),
            _ => None,
        };
    }
    if is("CRAM-MD5") {
        return rest.is_empty().then_some(Mechanism::CramMd5);
    }
    if is("EXTERNAL") {
        return match rest {
            [] => Some(Mechanism::External),
            [resp] => Some(Mechanism::ExternalResponse(resp)),
            _ => None,
        };
    }
    if is("XOAUTH2") {
        return match rest {
            [] => Some(Mechanism::XOauth2),
            [resp] => Some(Mechanism::XOauth2Response(resp)),
            _ => None,
        };
    }
    if is("OAUTHBEARER") {
        return match rest {
            [] => Some(Mechanism::OauthBearer),
            [resp] => Some(Mechanism::OauthBearerResponse(resp)),
            _ => None,
        };
    }
    None
}

/// The CRAM-MD5 challenge line: `prefix` + base64(salt without its CRLF) + CRLF.
pub fn cram_md5_challenge(prefix: &[u8], salt: &[u8]) -> Vec<u8> {
    let bare = salt.strip_suffix(b"\r\n").unwrap_or(salt);
    let mut out = prefix.to_vec();
    out.extend_from_slice(&base64::encode(bare));
    out.extend_from_slice(b"\r\n");
    out
}

/// Where a SASL exchange stands between the server's prompt and the
/// client's next line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exchange {
    LoginUsername,
    LoginPassword(Vec<u8>),
    Plain,
    CramMd5,
    External,
    XOauth2,
    OauthBearer,
    /// The auth server's error challenge is out: the client's next line
    /// is the mechanism's dummy response.
    Refused(Refusal),
}

/// What the server sends next; each protocol puts its own prefix on it
/// (`+ ` or `334 `).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// `VXNlcm5hbWU6` ("Username:")
    Username,
    /// `UGFzc3dvcmQ6` ("Password:")
    Password,
    /// An empty challenge (PLAIN without an initial response).
    Empty,
    /// The session salt, base64-encoded.
    CramMd5,
}

/// Where an exchange goes after the client's line.
#[must_use = "a prompt to send or credentials to check"]
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send this prompt and wait for the client's line in this exchange.
    Prompt(Exchange, Prompt),
    /// The client has proved enough: ask the auth server.
    Done(Credentials),
    /// The client answered the error challenge with the dummy response:
    /// send the refusal (and close after it when `quit`).
    Refused { reply: Vec<u8>, quit: bool },
    /// The client answered the error challenge with anything else: the
    /// protocol's invalid command reply, not counted toward `max_errors`
    /// (and close after it when `quit`).
    Cancelled { quit: bool },
}

/// Which mechanisms the server offers beyond PLAIN and LOGIN (always on).
#[derive(Clone, Copy, Debug)]
pub struct Offered {
    /// `cram-md5` is enabled and the session has a salt.
    pub cram_md5: bool,
    pub external: bool,
    pub xoauth2: bool,
    pub oauthbearer: bool,
}

/// Starts an exchange from `AUTH <mechanism> [initial-response]`.
pub fn start(args: &[&[u8]], offered: Offered) -> Result<Next, Invalid> {
    match mechanism(args) {
        Some(Mechanism::Login) => Ok(Next::Prompt(Exchange::LoginUsername, Prompt::Username)),
        Some(Mechanism::LoginUsername(user)) => Exchange::LoginUsername.respond(&[user]),
        Some(Mechanism::Plain) => Ok(Next::Prompt(Exchange::Plain, Prompt::Empty)),
        Some(Mechanism::PlainResponse(resp)) => Exchange::Plain.respond(&[resp]),
        Some(Mechanism::CramMd5) if offered.cram_md5 => {
            Ok(Next::Prompt(Exchange::CramMd5, Prompt::CramMd5))
        }
        Some(Mechanism::External) if offered.external => {
            Ok(Next::Prompt(Exchange::External, Prompt::Username))
        }
        // hardening: stock accepts an EXTERNAL initial response even when
        // `external` is not enabled
        Some(Mechanism::ExternalResponse(resp)) if offered.external => {
            Exchange::External.respond(&[resp])
        }
        Some(Mechanism::XOauth2) if offered.xoauth2 => {
            Ok(Next::Prompt(Exchange::XOauth2, Prompt::Empty))
        }
        Some(Mechanism::XOauth2Response(resp)) if offered.xoauth2 => {
            Exchange::XOauth2.respond(&[resp])
        }
        Some(Mechanism::OauthBearer) if offered.oauthbearer => {
            Ok(Next::Prompt(Exchange::OauthBearer, Prompt::Empty))
        }
        Some(Mechanism::OauthBearerResponse(resp)) if offered.oauthbearer => {
            Exchange::OauthBearer.respond(&[resp])
        }
        _ => Err(Invalid(None)),
    }
}

impl Exchange {
    /// Takes the client's line in this exchange: its space-separated
    /// arguments (the first is the response; stock ignores the rest, except
    /// after an error challenge).
    pub fn respond(self, args: &[&[u8]]) -> Result<Next, Invalid> {
        let response = args.first().copied().unwrap_or_default();
        Ok(match self {
            Exchange::LoginUsername => Next::Prompt(
                Exchange::LoginPassword(login_username(response)?),
                Prompt::Password,
            ),
            Exchange::LoginPassword(login) => Next::Done(Credentials {
                method: AuthMethod::Plain,
                login,
                passwd: login_password(response)?,
            }),
            Exchange::Plain => Next::Done(plain(response)?),
            Exchange::CramMd5 => Next::Done(cram_md5(response)?),
            Exchange::External => Next::Done(external(response)?),
            Exchange::XOauth2 => Next::Done(xoauth2(response)?),
            Exchange::OauthBearer => Next::Done(oauthbearer(response)?),
            Exchange::Refused(refusal) => match refusal.is_dummy(args) {
                true => Next::Refused {
                    reply: refusal.reply,
                    quit: refusal.quit,
                },
                false => Next::Cancelled { quit: refusal.quit },
            },
        })
    }
}

/// The prompt line with the protocol's prefix, CRLF-terminated.
pub fn prompt_line(prefix: &[u8], prompt: Prompt, salt: &[u8]) -> Vec<u8> {
    match prompt {
        Prompt::Username => [prefix, b"VXNlcm5hbWU6\r\n"].concat(),
        Prompt::Password => [prefix, b"UGFzc3dvcmQ6\r\n"].concat(),
        Prompt::Empty => [prefix, b"\r\n"].concat(),
        Prompt::CramMd5 => cram_md5_challenge(prefix, salt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64::encode;

    #[test]
    fn plain_with_and_without_authzid() {
        let c = plain(&encode(b"\0test@example.com\0secret")).ok();
        assert_eq!(
            c.as_ref().map(|c| &c.login[..]),
            Some(&b"test@example.com"[..])
        );
        assert_eq!(c.as_ref().map(|c| &c.passwd[..]), Some(&b"secret"[..]));
        let c = plain(&encode(b"admin\0user\0pass")).ok();
        assert_eq!(
            c.map(|c| (c.login, c.passwd)),
            Some((b"user".to_vec(), b"pass".to_vec()))
        );
        // a NUL inside the password would be cut by the backend: refused
        assert!(plain(&encode(b"admin\0user\0pass\0word")).is_err());
    }

    #[test]
    fn plain_bad_inputs() {
        assert_eq!(
            plain(b"!!!!").err(),
            Some(Invalid(Some(
                "client sent invalid base64 encoding in AUTH PLAIN command"
            )))
        );
        assert_eq!(
            plain(&encode(b"nonul")).err(),
            Some(Invalid(Some(
                "client sent invalid login in AUTH PLAIN command"
            )))
        );
        assert_eq!(
            plain(&encode(b"\0user")).err(),
            Some(Invalid(Some(
                "client sent invalid password in AUTH PLAIN command"
            )))
        );
        assert!(plain(&encode(b"\0us\r\ner\0pw")).is_err());
        assert!(plain(&encode(b"\0user\0pw\r\nDELE 1")).is_err());
    }

    #[test]
    fn cram_md5_needs_a_32_byte_digest() {
        let ok = cram_md5(&encode(b"user 0123456789abcdef0123456789abcdef")).ok();
        assert_eq!(ok.map(|c| c.login), Some(b"user".to_vec()));
        assert!(cram_md5(&encode(b"user 0123")).is_err());
        assert!(cram_md5(&encode(b"nospace")).is_err());
        assert!(cram_md5(b"@@@").is_err());
    }

    #[test]
    fn login_and_external() {
        assert_eq!(login_username(&encode(b"joe")).ok(), Some(b"joe".to_vec()));
        assert!(login_password(&encode(b"a\nb")).is_err());
        assert_eq!(
            external(&encode(b"joe")).ok().map(|c| c.method),
            Some(AuthMethod::External)
        );
        assert!(external(b"*").is_err());
    }

    #[test]
    fn mechanisms() {
        assert_eq!(mechanism(&[b"login"]), Some(Mechanism::Login));
        assert_eq!(
            mechanism(&[b"PLAIN", b"xx"]),
            Some(Mechanism::PlainResponse(b"xx"))
        );
        assert_eq!(mechanism(&[b"CRAM-MD5", b"xx"]), None);
        assert_eq!(mechanism(&[b"GSSAPI"]), None);
        assert_eq!(mechanism(&[]), None);
        assert_eq!(mechanism(&[b"LOGIN", b"a", b"b"]), None);
    }

    #[test]
    fn challenge() {
        assert_eq!(
            cram_md5_challenge(b"+ ", b"<1.2@x>\r\n"),
            b"+ PDEuMkB4Pg==\r\n".to_vec()
        );
    }
}
