//! The POP3 authorization state of `ngx_mail_pop3_auth_state`: which
//! commands are allowed when, what each one answers, and when the client has
//! said enough to ask the auth server.

use std::borrow::Cow;

use super::parser::{parse_line, Parsed, Verb};
use super::{Capabilities, INVALID_COMMAND, OK};
use crate::sasl::{self, Exchange, Next, Refusal};
use crate::{auth_bits, Action, AuthMethod, Credentials, Invalid, StartTls, Step};

/// A POP3 session's view of its server's configuration.
pub type Config<'a> = crate::Config<'a, Capabilities>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Start,
    User(Vec<u8>),
    Sasl(Exchange),
}

#[derive(Debug)]
pub struct Pop3Session {
    state: State,
}

impl Default for Pop3Session {
    fn default() -> Self {
        Pop3Session {
            state: State::Start,
        }
    }
}

impl Pop3Session {
    /// Back to the start, as after a refused login that the client may retry.
    pub fn reset(&mut self) {
        self.state = State::Start;
    }

    /// The auth server's SASL error challenge went out: the next line is
    /// the client's dummy response.
    pub fn sasl_refused(&mut self, refusal: Refusal) {
        self.state = State::Sasl(Exchange::Refused(refusal));
    }

    /// The buffer filled up with no whole line in it: the refusal, after
    /// which the session ends.
    pub fn too_long(&mut self) -> Action<'static> {
        self.reset();
        Action::Quit(Cow::Borrowed(INVALID_COMMAND))
    }

    /// Handles the first line in `buf`.
    pub fn step<'c>(&mut self, buf: &[u8], cfg: &Config<'c>) -> Step<'c> {
        let continuation = matches!(self.state, State::Sasl(_));
        let (consumed, action) = match parse_line(buf, continuation) {
            Parsed::Incomplete => return Step::Incomplete,
            Parsed::Invalid { consumed } => (consumed, malformed()),
            Parsed::Line {
                consumed,
                args,
                verb,
            } => (consumed, self.handle(verb, &args, cfg)),
        };
        if matches!(action, Action::Invalid { .. } | Action::Authenticate(_)) {
            self.state = State::Start;
        }
        Step::Done { consumed, action }
    }

    fn handle<'c>(&mut self, verb: Option<Verb>, args: &[&[u8]], cfg: &Config<'c>) -> Action<'c> {
        let first = args.first().copied().unwrap_or_default();
        let state = std::mem::replace(&mut self.state, State::Start);
        match (state, verb) {
            (State::Start, Some(verb)) => self.start(verb, args, cfg),
            (State::User(login), Some(verb)) => match verb {
                Verb::Pass if args.len() == 1 => Action::Authenticate(Credentials {
                    method: AuthMethod::Plain,
                    login,
                    passwd: first.to_vec(),
                }),
                Verb::Capa => {
                    self.state = State::User(login);
                    Action::Reply(Cow::Borrowed(&cfg.capabilities.plain))
                }
                Verb::Noop => {
                    self.state = State::User(login);
                    Action::Reply(Cow::Borrowed(OK))
                }
                Verb::Quit => Action::Quit(Cow::Borrowed(OK)),
                _ => refused(Invalid(None)),
            },
            (State::Sasl(exchange), None) => self.sasl(exchange.respond(args), cfg),
            _ => refused(Invalid(None)),
        }
    }

    fn start<'c>(&mut self, verb: Verb, args: &[&[u8]], cfg: &Config<'c>) -> Action<'c> {
        let invalid = refused(Invalid(None));
        match verb {
            Verb::User => {
                if cfg.login_needs_tls() || args.len() != 1 {
                    return invalid;
                }
                self.state = State::User(args.first().copied().unwrap_or_default().to_vec());
                Action::Reply(Cow::Borrowed(OK))
            }
            Verb::Capa => {
                let caps = cfg.capabilities;
                Action::Reply(Cow::Borrowed(match (cfg.tls, cfg.starttls) {
                    (false, StartTls::On) => &caps.starttls,
                    (false, StartTls::Only) => &caps.starttls_only,
                    _ => &caps.plain,
                }))
            }
            Verb::Apop => match args {
                [login, digest] if !cfg.login_needs_tls() && cfg.enabled(auth_bits::APOP) => {
                    Action::Authenticate(Credentials {
                        method: AuthMethod::Apop,
                        login: login.to_vec(),
                        passwd: digest.to_vec(),
                    })
                }
                _ => invalid,
            },
            Verb::Auth => self.auth(args, cfg),
            Verb::Quit => Action::Quit(Cow::Borrowed(OK)),
            Verb::Noop => Action::Reply(Cow::Borrowed(OK)),
            Verb::Stls if !cfg.tls && cfg.starttls != StartTls::Off => {
                Action::StartTls(Cow::Borrowed(OK))
            }
            Verb::Stls | Verb::Pass => invalid,
        }
    }

    fn auth<'c>(&mut self, args: &[&[u8]], cfg: &Config<'c>) -> Action<'c> {
        if cfg.login_needs_tls() {
            return refused(Invalid(None));
        }
        if args.is_empty() {
            return Action::Reply(Cow::Borrowed(&cfg.capabilities.auth));
        }
        self.sasl(sasl::start(args, cfg.offered()), cfg)
    }

    fn sasl<'c>(&mut self, next: Result<Next, Invalid>, cfg: &Config<'c>) -> Action<'c> {
        match next {
            Ok(Next::Prompt(exchange, prompt)) => {
                self.state = State::Sasl(exchange);
                Action::Reply(Cow::Owned(sasl::prompt_line(
                    b"+ ",
                    prompt,
                    cfg.salt.unwrap_or_default(),
                )))
            }
            Ok(Next::Done(creds)) => Action::Authenticate(creds),
            Ok(Next::Refused { reply, quit: false }) => Action::Reply(Cow::Owned(reply)),
            Ok(Next::Refused { reply, quit: true }) => Action::Quit(Cow::Owned(reply)),
            Ok(Next::Cancelled { quit }) => Action::Invalid {
                reason: Invalid(None),
                reply: Cow::Borrowed(INVALID_COMMAND),
                quit,
                counted: false,
            },
            Err(e) => refused(e),
        }
    }
}

/// `-ERR invalid command` for a line the parser rejects.
fn malformed() -> Action<'static> {
    Action::malformed(Cow::Borrowed(INVALID_COMMAND))
}

/// `-ERR invalid command` for a well-formed command refused here.
fn refused(reason: Invalid) -> Action<'static> {
    Action::refused(reason, Cow::Borrowed(INVALID_COMMAND))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base64::encode;

    const NEXT: &[u8] = b"+ \r\n";
    const USERNAME: &[u8] = b"+ VXNlcm5hbWU6\r\n";
    const PASSWORD: &[u8] = b"+ UGFzc3dvcmQ6\r\n";

    fn caps() -> Capabilities {
        Capabilities::build(
            &[b"TOP", b"USER", b"UIDL"],
            auth_bits::PLAIN | auth_bits::LOGIN | auth_bits::APOP | auth_bits::CRAM_MD5,
        )
    }

    fn run(
        session: &mut Pop3Session,
        cfg: &Config<'_>,
        line: &[u8],
    ) -> (usize, Vec<u8>, Option<Credentials>) {
        match session.step(line, cfg) {
            Step::Done { consumed, action } => {
                let bytes = action.reply().to_vec();
                let creds = match action {
                    Action::Authenticate(c) => Some(c),
                    _ => None,
                };
                (consumed, bytes, creds)
            }
            Step::Incomplete => (0, Vec::new(), None),
        }
    }

    fn cfg(caps: &Capabilities, starttls: StartTls, tls: bool) -> Config<'_> {
        Config {
            auth_methods: auth_bits::PLAIN
                | auth_bits::LOGIN
                | auth_bits::APOP
                | auth_bits::CRAM_MD5,
            capabilities: caps,
            starttls,
            tls,
            salt: Some(b"<1.2@host>\r\n"),
        }
    }

    #[test]
    fn user_pass() {
        let caps = caps();
        let cfg = cfg(&caps, StartTls::Off, false);
        let mut s = Pop3Session::default();
        assert_eq!(run(&mut s, &cfg, b"USER joe\r\n").1, OK);
        let (_, _, creds) = run(&mut s, &cfg, b"PASS se cret\r\n");
        assert_eq!(
            creds,
            Some(Credentials {
                method: AuthMethod::Plain,
                login: b"joe".to_vec(),
                passwd: b"se cret".to_vec()
            })
        );
    }

    #[test]
    fn pass_without_user_is_invalid() {
        let caps = caps();
        let cfg = cfg(&caps, StartTls::Off, false);
        let mut s = Pop3Session::default();
        assert_eq!(run(&mut s, &cfg, b"PASS x\r\n").1, INVALID_COMMAND);
        assert_eq!(run(&mut s, &cfg, b"USER a\r\n").1, OK);
        assert_eq!(run(&mut s, &cfg, b"BOGUS\r\n").1, INVALID_COMMAND);
        // the invalid command forgot the user
        assert_eq!(run(&mut s, &cfg, b"PASS x\r\n").1, INVALID_COMMAND);
    }

    /// Whether stock's `ngx_mail_read_command` would count the line's
    /// refusal toward `max_errors`; `None` when it was not refused.
    fn counted(session: &mut Pop3Session, cfg: &Config<'_>, line: &[u8]) -> Option<bool> {
        match session.step(line, cfg) {
            Step::Done {
                action: Action::Invalid { counted, .. },
                ..
            } => Some(counted),
            _ => None,
        }
    }

    #[test]
    fn only_parser_rejections_count() {
        let caps = caps();
        let cfg = cfg(&caps, StartTls::Off, false);
        let mut s = Pop3Session::default();
        for refused in [
            &b"USER\n"[..],
            b"PASS x\n",
            b"APOP a\n",
            b"AUTH GSSAPI\n",
            b"AUTH PLAIN !!!\n",
            b"STLS\n",
        ] {
            assert_eq!(counted(&mut s, &cfg, refused), Some(false), "{refused:?}");
        }
        assert_eq!(counted(&mut s, &cfg, b"AUTH LOGIN\n"), None);
        assert_eq!(counted(&mut s, &cfg, b"*\n"), Some(false));
        for malformed in [
            &b"\n"[..],
            b"BOGUS\n",
            b"US3R a\n",
            b"USER a\rb\n",
            b"APOP a b c d\n",
        ] {
            assert_eq!(
                counted(&mut s, &cfg, malformed),
                Some(true),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn auth_login_dialogue() {
        let caps = caps();
        let cfg = cfg(&caps, StartTls::Off, false);
        let mut s = Pop3Session::default();
        assert_eq!(run(&mut s, &cfg, b"AUTH LOGIN\r\n").1, USERNAME);
        assert_eq!(run(&mut s, &cfg, b"am9l\r\n").1, PASSWORD);
        let creds = run(&mut s, &cfg, b"c2VjcmV0\r\n").2;
        assert_eq!(
            creds.map(|c| (c.login, c.passwd)),
            Some((b"joe".to_vec(), b"secret".to_vec()))
        );
        assert_eq!(run(&mut s, &cfg, b"AUTH LOGIN am9l\r\n").1, PASSWORD);
        assert_eq!(run(&mut s, &cfg, b"*\r\n").1, INVALID_COMMAND);
        assert_eq!(run(&mut s, &cfg, b"NOOP\r\n").1, OK);
    }

    #[test]
    fn auth_plain_and_cram() {
        let caps = caps();
        let cfg = cfg(&caps, StartTls::Off, false);
        let mut s = Pop3Session::default();
        let line = [b"AUTH PLAIN ".to_vec(), encode(b"\0u\0p"), b"\r\n".to_vec()].concat();
        assert_eq!(
            run(&mut s, &cfg, &line).2.map(|c| c.login),
            Some(b"u".to_vec())
        );
        assert_eq!(run(&mut s, &cfg, b"AUTH PLAIN\r\n").1, NEXT);
        assert_eq!(run(&mut s, &cfg, b"####\r\n").1, INVALID_COMMAND);
        assert_eq!(
            run(&mut s, &cfg, b"AUTH CRAM-MD5\r\n").1,
            b"+ PDEuMkBob3N0Pg==\r\n"
        );
        let line = [
            encode(b"u 0123456789abcdef0123456789abcdef"),
            b"\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(
            run(&mut s, &cfg, &line).2.map(|c| c.method),
            Some(AuthMethod::CramMd5)
        );
    }

    #[test]
    fn disabled_mechanisms() {
        let caps = caps();
        let mut cfg = cfg(&caps, StartTls::Off, false);
        cfg.auth_methods = auth_bits::PLAIN | auth_bits::LOGIN;
        let mut s = Pop3Session::default();
        assert_eq!(run(&mut s, &cfg, b"AUTH CRAM-MD5\r\n").1, INVALID_COMMAND);
        assert_eq!(run(&mut s, &cfg, b"AUTH EXTERNAL\r\n").1, INVALID_COMMAND);
        assert_eq!(
            run(&mut s, &cfg, b"AUTH EXTERNAL dXNlcg==\r\n").1,
            INVALID_COMMAND
        );
        assert_eq!(
            run(&mut s, &cfg, b"APOP u 0123456789abcdef0123456789abcdef\r\n").1,
            INVALID_COMMAND
        );
    }

    #[test]
    fn starttls_only() {
        let caps = caps();
        let cfg = cfg(&caps, StartTls::Only, false);
        let mut s = Pop3Session::default();
        assert_eq!(run(&mut s, &cfg, b"USER a\r\n").1, INVALID_COMMAND);
        assert_eq!(run(&mut s, &cfg, b"AUTH PLAIN\r\n").1, INVALID_COMMAND);
        assert_eq!(run(&mut s, &cfg, b"CAPA\r\n").1, caps.starttls_only);
        assert!(matches!(
            s.step(b"STLS\r\n", &cfg),
            Step::Done {
                action: Action::StartTls(Cow::Borrowed(OK)),
                ..
            }
        ));
        let tls = Config { tls: true, ..cfg };
        assert_eq!(run(&mut s, &tls, b"STLS\r\n").1, INVALID_COMMAND);
        assert_eq!(run(&mut s, &tls, b"USER a\r\n").1, OK);
    }

    #[test]
    fn stls_off() {
        let caps = caps();
        let cfg = cfg(&caps, StartTls::Off, false);
        let mut s = Pop3Session::default();
        assert_eq!(run(&mut s, &cfg, b"STLS\r\n").1, INVALID_COMMAND);
        assert_eq!(run(&mut s, &cfg, b"CAPA\r\n").1, caps.plain);
        assert!(matches!(
            s.step(b"QUIT\r\n", &cfg),
            Step::Done {
                action: Action::Quit(Cow::Borrowed(OK)),
                consumed: 6
            }
        ));
    }

    #[test]
    fn bearer_tokens() {
        let caps = caps();
        let mut cfg = cfg(&caps, StartTls::Off, false);
        let mut s = Pop3Session::default();
        let msg = encode(b"user=u\x01auth=Bearer t\x01\x01");
        let line = [b"AUTH XOAUTH2 ".to_vec(), msg.clone(), b"\r\n".to_vec()].concat();
        assert_eq!(run(&mut s, &cfg, &line).1, INVALID_COMMAND, "not enabled");
        cfg.auth_methods |= auth_bits::XOAUTH2;
        let creds = run(&mut s, &cfg, &line).2.unwrap();
        assert_eq!(
            (creds.method, creds.login, creds.passwd),
            (AuthMethod::XOauth2, b"u".to_vec(), b"t".to_vec())
        );
        assert_eq!(run(&mut s, &cfg, b"AUTH XOAUTH2\r\n").1, NEXT);
        let line = [msg, b"\r\n".to_vec()].concat();
        assert_eq!(
            run(&mut s, &cfg, &line).2.map(|c| c.login),
            Some(b"u".to_vec())
        );
        assert_eq!(
            run(&mut s, &cfg, b"AUTH OAUTHBEARER\r\n").1,
            INVALID_COMMAND
        );

        // a wrong answer to the error challenge: not counted, the session
        // ends with it when the refusal would have
        s.sasl_refused(Refusal {
            method: AuthMethod::XOauth2,
            reply: b"-ERR no\r\n".to_vec(),
            quit: true,
        });
        assert_eq!(
            s.step(b"x\r\n", &cfg),
            Step::Done {
                consumed: 3,
                action: Action::Invalid {
                    reason: Invalid(None),
                    reply: Cow::Borrowed(INVALID_COMMAND),
                    quit: true,
                    counted: false,
                }
            }
        );
        assert_eq!(run(&mut s, &cfg, b"NOOP\r\n").1, OK);
    }
}
