//! mailbench's command line.

pub struct Options {
    pub nginx: String,
    pub mail_module: String,
    pub ours: String,
    pub rounds: usize,
    pub quick: bool,
    /// `--profile pop3|imap|smtp[:stock]`: only logins at 16 concurrent for
    /// 20 s, printing the worker's pid first (for perf record -p).
    pub profile: Option<String>,
    /// `--logins N` with `--profile`: exactly N sequential sessions after
    /// 20 of warm-up instead of 20 s of load (for instruction counts).
    pub logins: Option<usize>,
    pub markdown: Option<String>,
    /// `--only login|keepalive|cache|keepalive-remote|cache-remote|transfer|
    /// idle|idle-tls|hold|backend-tls`: one group of figures (`idle-tls`:
    /// the TLS half of `idle`; `backend-tls`, never in the default set:
    /// proxy_ssl to TLS backends, ours only).
    pub only: Option<String>,
    /// `--hold`: the hold group besides the others (it is never in the
    /// default set: tens of thousands of sessions take a minute or more).
    pub hold: bool,
    /// `--mail-extra DIRECTIVES`: added to the idle rounds' mail{} block,
    /// for asking what holds memory (`ssl_session_tickets off;`, ...).
    pub mail_extra: String,
    /// `--idle-sessions N`: sessions held open for the memory figure.
    pub idle_sessions: Option<usize>,
    /// `--auth-delay-ms N`: the remote groups' fake auth server waits N ms
    /// before each answer (default 5 for cache-remote, 0 for
    /// keepalive-remote).
    pub auth_delay_ms: Option<u64>,
    /// `--auth-conn-delay-ms N`: and N ms more before the first answer on
    /// a new connection (default 0 for cache-remote, 1 for
    /// keepalive-remote).
    pub auth_conn_delay_ms: Option<u64>,
}

impl Options {
    pub fn runs(&self, group: &str) -> bool {
        match self.only.as_deref() {
            Some(g) => g == group,
            // hold takes minutes; backend-tls has its own table (ours only)
            None => (group != "hold" || self.hold) && group != "backend-tls",
        }
    }
}

pub fn options() -> Result<Options, String> {
    let mut o = Options {
        nginx: String::new(),
        mail_module: String::new(),
        ours: String::new(),
        rounds: 3,
        quick: false,
        profile: None,
        logins: None,
        markdown: None,
        only: None,
        hold: false,
        mail_extra: String::new(),
        idle_sessions: None,
        auth_delay_ms: None,
        auth_conn_delay_ms: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--nginx" => o.nginx = value()?,
            "--mail-module" => o.mail_module = value()?,
            "--ours" => o.ours = value()?,
            "--rounds" => o.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--markdown" => o.markdown = Some(value()?),
            "--quick" => o.quick = true,
            "--hold" => o.hold = true,
            "--mail-extra" => o.mail_extra = value()?,
            "--profile" => o.profile = Some(value()?),
            "--logins" => o.logins = Some(value()?.parse().map_err(|e| format!("--logins: {e}"))?),
            "--idle-sessions" => {
                o.idle_sessions = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--idle-sessions: {e}"))?,
                )
            }
            "--auth-delay-ms" => {
                o.auth_delay_ms = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--auth-delay-ms: {e}"))?,
                )
            }
            "--auth-conn-delay-ms" => {
                o.auth_conn_delay_ms = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--auth-conn-delay-ms: {e}"))?,
                )
            }
            "--only" => match value()?.as_str() {
                g @ ("login" | "keepalive" | "cache" | "keepalive-remote" | "cache-remote"
                | "transfer" | "idle" | "idle-tls" | "hold" | "backend-tls") => {
                    o.only = Some(g.to_string())
                }
                g => {
                    return Err(format!(
                        "--only: {g} is not login, keepalive, cache, keepalive-remote, \
                         cache-remote, transfer, idle, idle-tls, hold or backend-tls"
                    ))
                }
            },
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    if o.nginx.is_empty() || o.mail_module.is_empty() || o.ours.is_empty() {
        return Err("--nginx, --mail-module and --ours are required".into());
    }
    Ok(o)
}
