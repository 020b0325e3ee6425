//! The `backend-tls` group (issue 15): ngx-mail-rs's `proxy_ssl` to
//! backends that speak TLS from the first byte, next to nginx's stream
//! `proxy_pass` with `proxy_ssl on` to the same kind of backend, in the
//! same nginx. Stock mail has no TLS to its backends, so this group runs
//! only with our module loaded and has a table of its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::backends::{tls_handshakes, Proto};
use crate::clients::Conn;
use crate::nginx::{Nginx, Shape};
use crate::{login_rate, percentile, stats, Better, Figures, Recorder};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Sessions transferring at once: one alone leaves the worker idle while
/// the client and the backend take their turns on a 2-CPU machine.
const SESSIONS: usize = 4;

/// `sessions` transfers of `message` at once through `proto`'s server,
/// each on a session logged in beforehand (the stream one connects inside
/// the timed part: its backend sends on connect); bytes per second, all
/// sessions together, from the first send to the last byte.
async fn concurrent(
    port: u16,
    proto: Proto,
    message: Arc<Vec<u8>>,
    sessions: usize,
) -> Result<f64> {
    let upload = Arc::new([message.as_slice(), b".\r\n"].concat());
    let mut conns = Vec::new();
    for _ in 0..sessions {
        if proto == Proto::Raw {
            conns.push(None);
        } else {
            let mut c = Conn::open(port).await?;
            c.login(proto).await?;
            conns.push(Some(c));
        }
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in conns {
        let (message, upload) = (message.clone(), upload.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = match c {
                Some(c) => c,
                None => Conn::open(port).await?,
            };
            c.transfer(proto, &message, &upload).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((sessions * message.len()) as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn transfers(
    rec: &mut Recorder<'_>,
    n: &Nginx,
    message: &Arc<Vec<u8>>,
    label: &str,
) -> Result<()> {
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp, Proto::Raw] {
        let what = match proto {
            Proto::Pop3 => "pop3 RETR",
            Proto::Imap => "imap FETCH",
            Proto::Smtp => "smtp DATA",
            Proto::Raw => "stream proxy_pass",
        };
        // the median of three: one 4-session run is over in a moment
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(concurrent(n.port(proto), proto, message.clone(), SESSIONS).await?);
        }
        runs.sort_by(|a, b| a.total_cmp(b));
        let mib = message.len() >> 20;
        rec.record(
            format!("{what} {mib} MiB, {SESSIONS} sessions, {label}"),
            "MB/s",
            Better::Higher,
            runs[1],
        );
    }
    Ok(())
}

async fn logins(rec: &mut Recorder<'_>, n: &Nginx, quick: bool, label: &str) {
    let secs = if quick { 0.5 } else { 3.0 };
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp] {
        let port = n.port(proto);
        let _ = login_rate(port, proto, 4, 0.3).await;
        let cpu_before = n.worker_cpu_secs();
        let (h0, r0) = tls_handshakes(proto);
        let (rate, lat, errors) = login_rate(port, proto, 16, secs).await;
        let (h1, r1) = tls_handshakes(proto);
        let cpu = match (cpu_before, n.worker_cpu_secs()) {
            (Ok(a), Ok(b)) if !lat.is_empty() => (b - a) / lat.len() as f64 * 1e6,
            _ => f64::NAN,
        };
        if errors > 0 {
            eprintln!("  {} {label}: {errors} failed sessions", proto.name());
        }
        let p = proto.name();
        rec.record(
            format!("{p} logins/s, 16 concurrent, {label}"),
            "/s",
            Better::Higher,
            rate,
        );
        rec.record(
            format!("{p} session p50, 16 concurrent, {label}"),
            "ms",
            Better::Lower,
            percentile(&lat, 0.5),
        );
        if label != "plain" {
            rec.record(
                format!("{p} backend handshakes resumed, 16 concurrent, {label}"),
                "%",
                Better::Higher,
                (r1 - r0) as f64 * 100.0 / (h1 - h0).max(1) as f64,
            );
        }
        rec.record(
            format!("{p} worker CPU per login, 16 concurrent, {label}"),
            "us",
            Better::Lower,
            cpu,
        );
    }
}

/// One round: plain backends for reference, then the TLS ones with session
/// reuse on (the default) and off. `tls_ports`: the TLS backends under the
/// plain ones' names, so that the auth location answers with them.
pub async fn measure(
    rec: &mut Recorder<'_>,
    bin: &str,
    globals: &str,
    plain_ports: &BTreeMap<&'static str, u16>,
    tls_ports: &BTreeMap<&'static str, u16>,
    message: &Arc<Vec<u8>>,
    quick: bool,
) -> Result<()> {
    let n = Nginx::start(bin, globals, "", plain_ports, Shape::PLAIN, false)?;
    let r = transfers(rec, &n, message, "plain").await;
    if r.is_ok() {
        logins(rec, &n, quick, "plain").await;
    }
    n.stop();
    r?;
    let shape = Shape {
        stream_ssl: true,
        ..Shape::PLAIN
    };
    for (extra, label) in [
        ("proxy_ssl on;", "proxy_ssl"),
        (
            "proxy_ssl on; proxy_ssl_session_reuse off;",
            "proxy_ssl, no reuse",
        ),
    ] {
        let n = Nginx::start(bin, globals, extra, tls_ports, shape, false)?;
        // the transfers once: reuse only changes the handshake
        let r = if label == "proxy_ssl" {
            transfers(rec, &n, message, label).await
        } else {
            Ok(())
        };
        if r.is_ok() {
            logins(rec, &n, quick, label).await;
        }
        if let Some(e) = n.first_error() {
            eprintln!("mailbench: backend-tls {label}: nginx error log: {e}");
        }
        n.stop();
        r?;
    }
    Ok(())
}

/// A group only ours has: median, min and max, no stock column.
pub fn table(figures: &Figures) -> String {
    let mut out = String::from("| figure (ngx-mail-rs only) | median (min-max) |\n|---|---|\n");
    for ((_, name), (unit, better, _, ours)) in figures {
        let (m, min, max) = stats(ours);
        let note = match better {
            Better::Lower => " (lower is better)",
            _ => "",
        };
        let f = |x: f64| {
            if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        };
        out.push_str(&format!(
            "| {name} ({unit}){note} | {} ({}-{}) |\n",
            f(m),
            f(min),
            f(max)
        ));
    }
    out
}
