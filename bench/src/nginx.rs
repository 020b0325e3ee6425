//! Starting nginx for one round: the mail servers, the auth server in its own
//! http{} block, and a stream proxy for the pass-through ceiling.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::backends::Proto;

/// What a round's nginx has beyond the plain servers.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    /// Certificate and key: three more servers with `listen ... ssl`.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// Workers, their descriptor limit and connections for holding many
    /// sessions. Mail's `listen` has no `reuseport`: several workers get
    /// `accept_mutex on`, under which a worker more than 7/8 full leaves
    /// accepting to the others.
    pub workers: usize,
    pub worker_fds: Option<u64>,
    /// The stream proxy speaks TLS to its backend (`proxy_ssl on`).
    pub stream_ssl: bool,
}

impl Shape<'_> {
    pub const PLAIN: Shape<'static> = Shape {
        tls: None,
        workers: 1,
        worker_fds: None,
        stream_ssl: false,
    };
}

pub struct Nginx {
    child: Child,
    dir: std::path::PathBuf,
    ports: BTreeMap<&'static str, u16>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Nginx {
    /// `mail_extra`: directives added to the mail{} block (`{auth}` is the
    /// auth server's port there). `auth_log`: the
    /// auth server logs each request's number on its connection, for
    /// `auth_connections_per_login`.
    pub fn start(
        bin: &str,
        globals: &str,
        mail_extra: &str,
        backends: &BTreeMap<&'static str, u16>,
        shape: Shape<'_>,
        auth_log: bool,
    ) -> std::io::Result<Nginx> {
        let dir = std::env::temp_dir().join(format!("mailbench.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut ports = BTreeMap::new();
        for name in ["pop3", "imap", "smtp", "stream", "auth"] {
            ports.insert(name, free_port()?);
        }
        let mut tls_servers = String::new();
        if let Some((cert, key)) = shape.tls {
            for (name, proto) in [("pop3s", "pop3"), ("imaps", "imap"), ("smtps", "smtp")] {
                let port = free_port()?;
                ports.insert(name, port);
                tls_servers.push_str(&format!(
                    "    server {{ listen 127.0.0.1:{port} ssl; protocol {proto}; \
                     ssl_certificate {}; ssl_certificate_key {}; }}\n",
                    cert.display(),
                    key.display()
                ));
            }
        }
        let (connections, rlimit) = match shape.worker_fds {
            Some(fds) => (
                fds.saturating_sub(64),
                format!("worker_rlimit_nofile {fds};"),
            ),
            None => (10000, String::new()),
        };
        // tens of thousands of logins in a few seconds over TCP leave as
        // many auth connections in TIME_WAIT, on the ~28,000 ephemeral ports
        // of one address pair; a Unix socket has no ports to run out of
        let auth_url = if shape.worker_fds.is_some() {
            format!("unix:{}/auth.sock:/auth", dir.display())
        } else {
            format!("127.0.0.1:{}/auth", ports["auth"])
        };
        let accept_mutex = if shape.workers > 1 {
            " accept_mutex on;"
        } else {
            ""
        };
        let user = if std::env::var("USER").as_deref() == Ok("root") || running_as_root() {
            "user root;"
        } else {
            ""
        };
        let conf = format!(
            r#"{globals}
{user}
worker_processes {workers};
{rlimit}
{affinity}
daemon off;
error_log {dir}/error.log error;
pid {dir}/nginx.pid;
events {{ worker_connections {connections};{accept_mutex} }}
http {{
    access_log off;
    map $http_auth_protocol $backend {{ pop3 {pop3b}; imap {imapb}; smtp {smtpb}; }}
    log_format requests $connection_requests;
    server {{
        listen 127.0.0.1:{auth};
        listen unix:{dir}/auth.sock;
        {auth_log}
        location = /auth {{
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $backend;
            add_header Auth-Pass secret;
            return 204;
        }}
        # the backends take any password: the client's goes through, and
        # the answer may be cached (one with Auth-Pass never is)
        location = /auth-nopass {{
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $backend;
            return 204;
        }}
    }}
}}
mail {{
    auth_http {auth_url};
    {mail_extra}
    server {{ listen 127.0.0.1:{pop3}; protocol pop3; }}
    server {{ listen 127.0.0.1:{imap}; protocol imap; }}
    server {{ listen 127.0.0.1:{smtp}; protocol smtp; }}
{tls_servers}}}
stream {{
    server {{ listen 127.0.0.1:{stream}; proxy_pass 127.0.0.1:{rawb};{stream_ssl} }}
}}
"#,
            dir = dir.display(),
            workers = shape.workers,
            auth_url = auth_url,
            affinity = worker_affinity(),
            pop3b = backends["pop3"],
            imapb = backends["imap"],
            smtpb = backends["smtp"],
            rawb = backends["stream"],
            stream_ssl = if shape.stream_ssl {
                " proxy_ssl on;"
            } else {
                ""
            },
            auth = ports["auth"],
            mail_extra = mail_extra.replace("{auth}", &ports["auth"].to_string()),
            auth_log = if auth_log {
                format!("access_log {}/auth.log requests;", dir.display())
            } else {
                String::new()
            },
            pop3 = ports["pop3"],
            imap = ports["imap"],
            smtp = ports["smtp"],
            stream = ports["stream"],
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(format!("{}/", dir.display()))
            .args(["-c", "nginx.conf", "-e", "error.log"])
            .spawn()?;
        let n = Nginx { child, dir, ports };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in n.ports.values() {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if Instant::now() > deadline {
                    return Err(std::io::Error::other(format!(
                        "nginx did not start: {}",
                        std::fs::read_to_string(n.dir.join("error.log")).unwrap_or_default()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(n)
    }

    /// New connections the auth server accepted per request it answered
    /// (a request numbered 1 opened its connection), from its log.
    pub fn auth_connections_per_login(&self) -> std::io::Result<f64> {
        let log = std::fs::read_to_string(self.dir.join("auth.log"))?;
        let (mut requests, mut connections) = (0u64, 0u64);
        for line in log.lines() {
            requests += 1;
            if line.trim() == "1" {
                connections += 1;
            }
        }
        if requests == 0 {
            return Err(std::io::Error::other("no auth requests logged"));
        }
        Ok(connections as f64 / requests as f64)
    }

    /// Requests the auth server answered, from its log.
    pub fn auth_requests(&self) -> std::io::Result<usize> {
        Ok(std::fs::read_to_string(self.dir.join("auth.log"))?
            .lines()
            .count())
    }

    pub fn port(&self, proto: Proto) -> u16 {
        self.ports[proto.name()]
    }

    /// The `listen ... ssl` server of `proto` (with `Shape::tls`).
    pub fn tls_port(&self, proto: Proto) -> Option<u16> {
        let name = match proto {
            Proto::Pop3 => "pop3s",
            Proto::Imap => "imaps",
            Proto::Smtp => "smtps",
            Proto::Raw => return None,
        };
        self.ports.get(name).copied()
    }

    pub fn worker_pids(&self) -> std::io::Result<Vec<String>> {
        let out = Command::new("pgrep")
            .args(["-P", &self.child.id().to_string()])
            .output()?;
        let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if pids.is_empty() {
            return Err(std::io::Error::other("no nginx worker"));
        }
        Ok(pids)
    }

    pub fn worker_pid(&self) -> std::io::Result<String> {
        Ok(self.worker_pids()?.swap_remove(0))
    }

    /// CPU time the worker has used, user and system, in seconds.
    pub fn worker_cpu_secs(&self) -> std::io::Result<f64> {
        proc_cpu_secs(&self.worker_pid()?)
    }

    /// nginx's error log (level error and up) in one line: how many
    /// lines, the first, and the first above [error] if any.
    pub fn first_error(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.join("error.log")).ok()?;
        let first = log.lines().next()?;
        let worse = log.lines().find(|l| {
            ["[alert]", "[crit]", "[emerg]"]
                .iter()
                .any(|w| l.contains(w))
        });
        Some(match worse {
            Some(w) => format!(
                "{} lines, the first: {first}; the first worse: {w}",
                log.lines().count()
            ),
            None => format!("{} lines, the first: {first}", log.lines().count()),
        })
    }

    /// The workers' resident memory, summed over all of them.
    pub fn worker_rss_kb(&self) -> std::io::Result<u64> {
        let mut sum = 0;
        for pid in self.worker_pids()? {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            sum += status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| std::io::Error::other("no VmRSS"))?;
        }
        Ok(sum)
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With two CPUs or more the worker gets the last one to itself (bench.sh
/// keeps this load generator and the backends off it), so that the two
/// columns do not differ by where the scheduler put the worker.
fn worker_affinity() -> String {
    // all CPUs online: this process may itself be pinned to fewer
    let cpus = Command::new("getconf")
        .arg("_NPROCESSORS_ONLN")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(1);
    if cpus < 2 || std::env::var_os("MAILBENCH_NO_PIN").is_some() {
        return String::new();
    }
    let mut mask = String::from("1");
    mask.extend(std::iter::repeat_n('0', cpus - 1));
    format!("worker_cpu_affinity {mask};")
}

/// CPU time a process (`self` for this one, all its threads) has used,
/// user and system, in seconds, from /proc.
pub fn proc_cpu_secs(pid: &str) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // the fields after the command name, which is in parentheses
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => Ok((u + s) / clock_ticks()),
        _ => Err(std::io::Error::other("no utime/stime")),
    }
}

/// USER_HZ: 100 on every Linux this runs on; getconf says otherwise.
/// Asked once: it is read around every login measurement.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
