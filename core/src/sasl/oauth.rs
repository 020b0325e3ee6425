//! The bearer token mechanisms as freenginx 1.27.1 takes them: XOAUTH2
//! (Google's `user=U^Aauth=Bearer T^A^A`) and RFC 7628 OAUTHBEARER
//! (`n,a=U,^A...^Aauth=Bearer T^A^A`). The user goes to the auth server as
//! `Auth-User`, the token as `Auth-Pass`.
//!
//! When the auth server refuses such a login with an `Auth-Error-SASL`
//! header, its value goes to the client as one more SASL challenge; the
//! client answers with the mechanism's dummy response (an empty line for
//! XOAUTH2, `AQ==` for OAUTHBEARER) and only then gets the refusal.

use super::{decode, line_safe};
use crate::{AuthMethod, Credentials, Invalid};

const XOAUTH2_LOGIN: Invalid = Invalid(Some("client sent invalid login in AUTH XOAUTH2 command"));
const XOAUTH2_TOKEN: Invalid = Invalid(Some("client sent invalid token in AUTH XOAUTH2 command"));
const BEARER_LOGIN: Invalid = Invalid(Some(
    "client sent invalid login in AUTH OAUTHBEARER command",
));
const BEARER_TOKEN: Invalid = Invalid(Some(
    "client sent invalid token in AUTH OAUTHBEARER command",
));

/// `prefix` at the start of `value`, in any case: the rest after it.
fn strip_prefix_ci<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value.get(prefix.len()..))
        .flatten()
}

/// `user=` {user} `^A` `auth=Bearer ` {token} `^A^A`: the user is what
/// precedes the first `^A`, the token everything between `auth=Bearer `
/// and the final `^A^A` (keys compared in any case).
pub fn xoauth2(arg: &[u8]) -> Result<Credentials, Invalid> {
    let decoded = decode(arg, "XOAUTH2")?;
    let soh = decoded.iter().position(|&b| b == 1).ok_or(XOAUTH2_LOGIN)?;
    let (user, rest) = decoded.split_at(soh);
    let login = strip_prefix_ci(user, b"user=").ok_or(XOAUTH2_LOGIN)?;
    let rest = rest.get(1..).unwrap_or_default();
    let token = strip_prefix_ci(rest, b"auth=Bearer ")
        .and_then(|t| t.strip_suffix(b"\x01\x01"))
        .ok_or(XOAUTH2_TOKEN)?;
    // hardening: the user and the token may become a backend's USER/PASS
    if !line_safe(login) {
        return Err(XOAUTH2_LOGIN);
    }
    if !line_safe(token) {
        return Err(XOAUTH2_TOKEN);
    }
    Ok(Credentials {
        method: AuthMethod::XOauth2,
        login: login.to_vec(),
        passwd: token.to_vec(),
    })
}

/// The authzid of the GS2 header: the first `a=` field after the flag (the
/// header's first field), up to its comma and before any `^A`; with
/// `=2C`/`=3D` decoded. Returns it and where the key/value pairs start.
fn gs2_user(msg: &[u8]) -> Result<(Vec<u8>, usize), Invalid> {
    let mut field_start = None;
    let mut found = None;
    for (p, &b) in msg.iter().enumerate() {
        match b {
            b',' => {
                let field = field_start.and_then(|s| msg.get(s..p));
                if let Some(user) = field
                    .filter(|f| f.len() > 2)
                    .and_then(|f| strip_prefix_ci(f, b"a="))
                {
                    found = Some((user, p));
                    break;
                }
                field_start = p.checked_add(1);
            }
            1 => break,
            _ => {}
        }
    }
    let (raw, end) = found.ok_or(BEARER_LOGIN)?;
    let mut user = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b != b'=' {
            user.push(b);
            continue;
        }
        match (it.next(), it.next()) {
            (Some(b'2'), Some(b'C' | b'c')) => user.push(b','),
            (Some(b'3'), Some(b'D' | b'd')) => user.push(b'='),
            _ => return Err(BEARER_LOGIN),
        }
    }
    Ok((user, end))
}

/// RFC 7628: `gs2-header ^A *(key=value ^A) ^A`; the user is the GS2
/// authzid (required), the token the value of the first `auth=Bearer `
/// pair (not empty) after the header.
pub fn oauthbearer(arg: &[u8]) -> Result<Credentials, Invalid> {
    let decoded = decode(arg, "OAUTHBEARER")?;
    let (login, from) = gs2_user(&decoded)?;
    let rest = decoded.get(from..).unwrap_or_default();
    // the pairs are what lies between two ^A: not the text before the
    // first one, nor after the last
    let pieces: Vec<&[u8]> = rest.split(|&b| b == 1).collect();
    let pairs = pieces
        .split_first()
        .and_then(|(_, more)| more.split_last())
        .map(|(_, pairs)| pairs)
        .unwrap_or_default();
    let token = pairs
        .iter()
        .find_map(|pair| strip_prefix_ci(pair, b"auth=Bearer ").filter(|t| !t.is_empty()));
    let token = token.ok_or(BEARER_TOKEN)?;
    if !line_safe(&login) {
        return Err(BEARER_LOGIN);
    }
    if !line_safe(token) {
        return Err(BEARER_TOKEN);
    }
    Ok(Credentials {
        method: AuthMethod::OauthBearer,
        login,
        passwd: token.to_vec(),
    })
}

/// The auth server refused a bearer token login and its `Auth-Error-SASL`
/// went to the client as a challenge: what the client's next line gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// XOAUTH2 or OAUTHBEARER: which dummy response is expected.
    pub method: AuthMethod,
    /// The refusal (`-ERR text`, `tag NO text`, `535 5.7.0 text`).
    pub reply: Vec<u8>,
    /// The session ends after the reply (the auth server sent no
    /// `Auth-Wait`).
    pub quit: bool,
}

impl Refusal {
    /// Whether the client's line (its arguments) is the mechanism's dummy
    /// response: one empty argument for XOAUTH2; for OAUTHBEARER one that
    /// starts with `AQ==` (base64 of `^A`), as freenginx compares it.
    pub fn is_dummy(&self, args: &[&[u8]]) -> bool {
        let [arg] = args else {
            return false;
        };
        match self.method {
            AuthMethod::OauthBearer => arg.starts_with(b"AQ=="),
            _ => arg.is_empty(),
        }
    }
}

/// The SASL error challenge line: `prefix` (`+ ` or `334 `), the auth
/// server's `Auth-Error-SASL` value as it came, CRLF.
pub fn error_challenge(prefix: &[u8], value: &[u8]) -> Vec<u8> {
    [prefix, value, b"\r\n"].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64::encode;

    fn x(msg: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Invalid> {
        xoauth2(&encode(msg)).map(|c| (c.login, c.passwd))
    }

    fn b(msg: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Invalid> {
        oauthbearer(&encode(msg)).map(|c| (c.login, c.passwd))
    }

    fn ok(user: &[u8], token: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Invalid> {
        Ok((user.to_vec(), token.to_vec()))
    }

    #[test]
    fn xoauth2_messages() {
        assert_eq!(
            x(b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4\x01\x01"),
            ok(b"someuser@example.com", b"ya29.vF9dft4")
        );
        // keys in any case; an empty user or token is the auth server's call
        assert_eq!(x(b"USER=u\x01AUTH=bearer t\x01\x01"), ok(b"u", b"t"));
        assert_eq!(x(b"user=\x01auth=Bearer \x01\x01"), ok(b"", b""));
        // what lies between the prefix and the final ^A^A is the token
        assert_eq!(
            x(b"user=u\x01auth=Bearer t\x01k=v\x01\x01"),
            ok(b"u", b"t\x01k=v")
        );
        assert_eq!(x(b"u\x01auth=Bearer t\x01\x01"), Err(XOAUTH2_LOGIN));
        assert_eq!(x(b"user=u"), Err(XOAUTH2_LOGIN));
        assert_eq!(x(b"user=u\x01auth=Basic t\x01\x01"), Err(XOAUTH2_TOKEN));
        assert_eq!(x(b"user=u\x01auth=Bearer t\x01"), Err(XOAUTH2_TOKEN));
        assert_eq!(x(b"user=u\x01auth=Bearer"), Err(XOAUTH2_TOKEN));
        assert_eq!(
            xoauth2(b"!!").err(),
            Some(Invalid(Some(
                "client sent invalid base64 encoding in AUTH XOAUTH2 command"
            )))
        );
        // hardening: no CR, LF or NUL in what may reach a backend line
        assert_eq!(
            x(b"user=u\r\nX\x01auth=Bearer t\x01\x01"),
            Err(XOAUTH2_LOGIN)
        );
        assert_eq!(x(b"user=u\x01auth=Bearer t\0\x01\x01"), Err(XOAUTH2_TOKEN));
        assert_eq!(
            xoauth2(&encode(b"user=u\x01auth=Bearer t\x01\x01")).map(|c| c.method),
            Ok(AuthMethod::XOauth2)
        );
    }

    #[test]
    fn oauthbearer_messages() {
        // curl's message
        assert_eq!(
            b(b"n,a=user,\x01host=127.0.0.1\x01port=8143\x01auth=Bearer tok\x01\x01"),
            ok(b"user", b"tok")
        );
        assert_eq!(b(b"n,A=u,\x01AUTH=BEARER t\x01\x01"), ok(b"u", b"t"));
        // the authzid is required, and the flag field is never it
        assert_eq!(b(b"n,,\x01auth=Bearer t\x01\x01"), Err(BEARER_LOGIN));
        assert_eq!(b(b"a=u,\x01auth=Bearer t\x01\x01"), Err(BEARER_LOGIN));
        assert_eq!(b(b"n,a=,a=u,\x01auth=Bearer t\x01\x01"), ok(b"u", b"t"));
        // a ^A before the authzid ends the search
        assert_eq!(b(b"n,\x01a=u,\x01auth=Bearer t\x01\x01"), Err(BEARER_LOGIN));
        assert_eq!(b(b"n,a=u\x01auth=Bearer t\x01\x01"), Err(BEARER_LOGIN));
        // =2C and =3D, nothing else after '='
        assert_eq!(
            b(b"n,a=a=2Cb=3dc,\x01auth=Bearer t\x01\x01"),
            ok(b"a,b=c", b"t")
        );
        assert_eq!(b(b"n,a=a=41,\x01auth=Bearer t\x01\x01"), Err(BEARER_LOGIN));
        assert_eq!(b(b"n,a=a=,\x01auth=Bearer t\x01\x01"), Err(BEARER_LOGIN));
        // the token: a whole pair, not empty, the first one found
        assert_eq!(b(b"n,a=u,\x01auth=Bearer \x01\x01"), Err(BEARER_TOKEN));
        assert_eq!(b(b"n,a=u,\x01auth=Bearer t"), Err(BEARER_TOKEN));
        assert_eq!(b(b"n,a=u,auth=Bearer t\x01\x01"), Err(BEARER_TOKEN));
        assert_eq!(
            b(b"n,a=u,\x01auth=Bearer \x01auth=Bearer t2\x01\x01"),
            ok(b"u", b"t2")
        );
        assert_eq!(
            b(b"n,a=u,\x01k=v\x01auth=Bearer t\x01auth=Bearer x\x01\x01"),
            ok(b"u", b"t")
        );
        // one ^A after the pair is enough
        assert_eq!(b(b"n,a=u,\x01auth=Bearer t\x01"), ok(b"u", b"t"));
        assert_eq!(b(b"n,a=u\r\n,\x01auth=Bearer t\x01\x01"), Err(BEARER_LOGIN));
        assert_eq!(b(b"n,a=u,\x01auth=Bearer t\n\x01\x01"), Err(BEARER_TOKEN));
        assert_eq!(
            oauthbearer(b"#").err(),
            Some(Invalid(Some(
                "client sent invalid base64 encoding in AUTH OAUTHBEARER command"
            )))
        );
    }

    #[test]
    fn dummy_responses() {
        let r = |method| Refusal {
            method,
            reply: Vec::new(),
            quit: false,
        };
        let x = r(AuthMethod::XOauth2);
        assert!(x.is_dummy(&[b""]));
        assert!(!x.is_dummy(&[b"AQ=="]));
        assert!(!x.is_dummy(&[b"", b""]));
        let o = r(AuthMethod::OauthBearer);
        assert!(o.is_dummy(&[b"AQ=="]));
        assert!(o.is_dummy(&[b"AQ==x"]));
        assert!(!o.is_dummy(&[b"AQ="]));
        assert!(!o.is_dummy(&[b""]));
        assert!(!o.is_dummy(&[b"AQ==", b"x"]));
        assert_eq!(error_challenge(b"334 ", b"eyJ9"), b"334 eyJ9\r\n");
    }
}
