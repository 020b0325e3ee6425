//! Hold mode: as many idle logged-in sessions as this machine's descriptor
//! limits allow, and sessions held per GiB of worker memory.
//!
//! Each session is four sockets: the client's and the fake backend's here,
//! two in an nginx worker. No process may raise its hard RLIMIT_NOFILE
//! without CAP_SYS_RESOURCE, so every process gets at most that many: this
//! process keeps only the client sockets, the fake backends run in a child
//! (`mailbench --backends-only`), and nginx gets enough workers (with
//! `accept_mutex on`) that none of them is the bound. What binds is then this
//! process's limit, one descriptor per session.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::backends::Proto;
use crate::clients::{Conn, Dial};
use crate::nginx::{Nginx, Shape};
use crate::{Better, Recorder};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Loopback source addresses the clients take turns on: a few thousand
/// sessions per (source, destination) pair, far from the ~28,000 ephemeral
/// ports of one pair.
const SOURCES: u8 = 4;

/// Descriptors this process keeps for itself: stdio, epoll, the in-process
/// backends' listeners, nginx's pipes, /proc reads.
const RESERVE: u64 = 256;

/// The fake backends in a process of their own; they live as long as its
/// stdin is open.
pub struct Backends {
    child: Child,
    pub ports: BTreeMap<&'static str, u16>,
}

impl Backends {
    pub fn spawn() -> Result<Backends> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--backends-only")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        let out = child.stdout.take().ok_or("no stdout")?;
        std::io::BufReader::new(out).read_line(&mut line)?;
        let mut ports = BTreeMap::new();
        let mut words = line.split_whitespace();
        while let (Some(name), Some(port)) = (words.next(), words.next()) {
            let name = ["pop3", "imap", "smtp", "stream"]
                .into_iter()
                .find(|n| *n == name)
                .ok_or_else(|| format!("backends child: {line:?}"))?;
            ports.insert(name, port.parse()?);
        }
        if ports.len() != 4 {
            return Err(format!("backends child said {line:?}").into());
        }
        Ok(Backends { child, ports })
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// RLIMIT_NOFILE of this process, soft and hard.
pub fn fd_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (
        v.first().copied().unwrap_or(1024),
        v.get(1).copied().unwrap_or(1024),
    )
}

/// Opens sessions until `target`, or until more than one in twenty failed
/// or a whole batch did; returns them, the number that failed and the
/// first failure. With too few workers for accept_mutex's loose balance,
/// one worker ran out of worker_connections and auth requests to the
/// http{} server were reset in bursts (stock and ours alike); the failures
/// are counted and shown, a pause follows such a batch, and the hold goes
/// on.
async fn open_all(port: u16, proto: Proto, target: usize) -> (Vec<Conn>, usize, Option<String>) {
    let mut held = Vec::with_capacity(target);
    let mut failed = 0;
    let mut first = None;
    while held.len() < target && failed <= target / 20 {
        let batch = (target - held.len()).min(200);
        let tasks: Vec<_> = (0..batch)
            .map(|j| {
                let dial = Dial {
                    port,
                    tls: None,
                    source: Some(Ipv4Addr::new(127, 0, 0, 2 + (j as u8 % SOURCES))),
                    buf: 512,
                };
                tokio::spawn(async move {
                    let mut c = Conn::dial(&dial).await?;
                    c.login(proto).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(c)
                })
            })
            .collect();
        let mut failed_now = 0;
        for t in tasks {
            let e = match t.await {
                Ok(Ok(c)) => {
                    held.push(c);
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            failed_now += 1;
            first.get_or_insert(e);
        }
        failed += failed_now;
        if failed_now == batch {
            break;
        }
        if failed_now > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    (held, failed, first)
}

#[allow(clippy::too_many_arguments)]
pub async fn measure(
    rec: &mut Recorder<'_>,
    bin: &str,
    globals: &str,
    backends: &BTreeMap<&'static str, u16>,
    proto: Proto,
    quick: bool,
) -> Result<()> {
    let (soft, hard) = fd_limits();
    let target = if quick {
        2000
    } else {
        soft.saturating_sub(RESERVE) as usize
    };
    // two descriptors per session in a worker, and room for three times
    // its share: accept_mutex balances loosely (a worker was seen at its
    // worker_connections with three workers for 19,744 sessions)
    let workers = (2 * target as u64).div_ceil(hard / 3).max(1) as usize;
    let shape = Shape {
        tls: None,
        workers,
        worker_fds: Some(hard),
        ..Shape::PLAIN
    };
    let n = Nginx::start(bin, globals, "", backends, shape, false)?;
    let result = hold(rec, &n, proto, target, workers, soft, hard).await;
    n.stop();
    result
}

async fn hold(
    rec: &mut Recorder<'_>,
    n: &Nginx,
    proto: Proto,
    target: usize,
    workers: usize,
    soft: u64,
    hard: u64,
) -> Result<()> {
    let port = n.port(proto);
    // every worker's first sessions grow its pools and tables once
    let (warm, _, failed) = open_all(port, proto, 20 * workers).await;
    if let Some(e) = failed {
        return Err(e.into());
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = n.worker_rss_kb()?;
    let (held, failures, failed) = open_all(port, proto, target).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = n.worker_rss_kb()?;
    let p = proto.name();
    let bound = match &failed {
        Some(e) if held.len() + failures < target => format!(
            "stopped after {failures} failed sessions, the first: {e}; nginx: {}",
            n.first_error().unwrap_or_default()
        ),
        _ if (target as u64) + RESERVE < soft => "as many as asked (--quick)".to_string(),
        _ => format!(
            "mailbench's RLIMIT_NOFILE {soft} (hard {hard}) less {RESERVE} kept: one client \
             socket per session here, the backend's in the --backends-only child, two in a \
             worker ({workers} workers, worker_rlimit_nofile {hard})"
        ),
    };
    eprintln!("  hold {p}: {} sessions; {bound}", held.len());
    if let (Some(e), true) = (&failed, held.len() + failures >= target) {
        eprintln!(
            "  hold {p}: {failures} of {target} failed to open, the first: {e}; nginx: {}",
            n.first_error().unwrap_or_default()
        );
    }
    let gib = (after as f64 - before as f64) / (1024.0 * 1024.0);
    rec.record(
        format!("{p} idle sessions held, {workers} workers"),
        "sessions",
        Better::Higher,
        held.len() as f64,
    );
    rec.record(
        format!("{p} sessions held per GiB of worker RSS"),
        "sessions",
        Better::Higher,
        held.len() as f64 / gib,
    );
    rec.record(
        format!("{p} worker RSS per held session"),
        "bytes",
        Better::Lower,
        gib * (1u64 << 30) as f64 / held.len() as f64,
    );
    Ok(())
}
