//! The auth groups: `keepalive` and `cache` against nginx's own http{}
//! block in the same worker (microseconds an answer), and `keepalive-remote`
//! and `cache-remote` against the delaying fake auth server of authsrv.rs.
//! Each records, besides the rate, how busy the nginx worker and mailbench
//! itself (load generator, fake backends and fake auth server) were during
//! the run: a rate can only show the worker's saving if the worker, not
//! the load generator, is what bounds it.

use std::time::{Duration, Instant};

use crate::authsrv::AuthServer;
use crate::backends::Proto;
use crate::{login_rate, nginx, percentile, Better, Recorder};

/// One measured run of logins.
struct Run {
    rate: f64,
    lat: Vec<Duration>,
    /// Worker CPU per login, microseconds.
    cpu_per_login: f64,
    /// Worker CPU seconds over wall seconds, percent.
    worker_util: f64,
    /// mailbench's own CPU seconds (all threads) over wall seconds, percent.
    self_util: f64,
    /// All CPUs' busy time over their total, percent: the machine is
    /// shared, and what is neither the worker nor mailbench is other work.
    machine_util: f64,
}

/// (busy, total) jiffies of all CPUs, from /proc/stat's first line.
fn machine_jiffies() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

async fn run(n: &nginx::Nginx, proto: Proto, c: usize, secs: f64, what: &str) -> Run {
    let port = n.port(proto);
    let worker_before = n.worker_cpu_secs();
    let self_before = nginx::proc_cpu_secs("self");
    let machine_before = machine_jiffies();
    let start = Instant::now();
    let (rate, lat, errors) = login_rate(port, proto, c, secs).await;
    let wall = start.elapsed().as_secs_f64();
    let worker = match (worker_before, n.worker_cpu_secs()) {
        (Ok(a), Ok(b)) => b - a,
        _ => f64::NAN,
    };
    let own = match (self_before, nginx::proc_cpu_secs("self")) {
        (Ok(a), Ok(b)) => b - a,
        _ => f64::NAN,
    };
    let machine_util = match (machine_before, machine_jiffies()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) / (t1 - t0) * 100.0,
        _ => f64::NAN,
    };
    if errors > 0 {
        eprintln!("  {} {what} c={c}: {errors} failed sessions", proto.name());
    }
    Run {
        rate,
        cpu_per_login: if lat.is_empty() {
            f64::NAN
        } else {
            worker / lat.len() as f64 * 1e6
        },
        worker_util: worker / wall * 100.0,
        self_util: own / wall * 100.0,
        machine_util,
        lat,
    }
}

/// The figures of one run; `what` ends each name ("16 concurrent, auth
/// keepalive"). The utilisation figures are context, not a goal: the CPU
/// mailbench may use is one (scripts/bench.sh pins it off the worker's).
fn record(rec: &mut Recorder<'_>, proto: Proto, what: &str, r: &Run, latency: bool) {
    let p = proto.name();
    rec.record(
        format!("{p} logins/s, {what}"),
        "/s",
        Better::Higher,
        r.rate,
    );
    if latency {
        rec.record(
            format!("{p} session p50, {what}"),
            "ms",
            Better::Lower,
            percentile(&r.lat, 0.5),
        );
    }
    rec.record(
        format!("{p} worker CPU per login, {what}"),
        "us",
        Better::Lower,
        r.cpu_per_login,
    );
    rec.record(
        format!("{p} worker CPU utilisation, {what}"),
        "%",
        Better::Context,
        r.worker_util,
    );
    rec.record(
        format!("{p} mailbench CPU utilisation, {what}"),
        "%",
        Better::Context,
        r.self_util,
    );
    rec.record(
        format!("{p} machine CPU utilisation, all CPUs, {what}"),
        "%",
        Better::Context,
        r.machine_util,
    );
}

/// Logins at 16 concurrent with the auth server's connections counted:
/// stock opens one per login; ours runs with `auth_http_keepalive`.
pub(crate) async fn measure_keepalive(rec: &mut Recorder<'_>, n: &nginx::Nginx, quick: bool) {
    let secs = if quick { 0.5 } else { 3.0 };
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp] {
        let _ = login_rate(n.port(proto), proto, 4, 0.3).await;
        let r = run(n, proto, 16, secs, "keepalive").await;
        record(rec, proto, "16 concurrent, auth keepalive", &r, false);
    }
    rec.record(
        "auth server connections per login, auth keepalive".to_string(),
        "conns",
        Better::Lower,
        n.auth_connections_per_login().unwrap_or(f64::NAN),
    );
}

/// Logins at 16 concurrent, all with the same credentials, against an auth
/// answer without `Auth-Pass`: stock asks each time; ours with
/// `auth_http_cache` answers all but the first from the zone.
pub(crate) async fn measure_cache(rec: &mut Recorder<'_>, n: &nginx::Nginx, quick: bool) {
    let secs = if quick { 0.5 } else { 3.0 };
    let mut logins = 0;
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp] {
        let (_, warm, _) = login_rate(n.port(proto), proto, 4, 0.3).await;
        let r = run(n, proto, 16, secs, "cache").await;
        logins += warm.len() + r.lat.len();
        record(rec, proto, "16 concurrent, auth cache hits", &r, false);
    }
    rec.record(
        "auth requests per login, auth cache hits".to_string(),
        "reqs",
        Better::Lower,
        n.auth_requests()
            .map_or(f64::NAN, |r| r as f64 / logins.max(1) as f64),
    );
}

/// Which remote group: the figures' label and what the auth counts mean.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remote {
    Keepalive,
    Cache,
}

/// The remote groups: logins at 16 and 64 concurrent (16 only with
/// `--quick`) against `srv`, which nginx's auth_http names. Keepalive
/// counts auth connections per request; cache counts auth requests per
/// login, the warm-up's first miss included.
pub(crate) async fn measure_remote(
    rec: &mut Recorder<'_>,
    n: &nginx::Nginx,
    srv: &AuthServer,
    which: Remote,
    quick: bool,
) {
    let secs = if quick { 0.5 } else { 3.0 };
    let levels: &[usize] = if quick { &[16] } else { &[16, 64] };
    let model = format!(
        "auth server {} ms + {} ms a new connection",
        srv.delay.as_millis(),
        srv.conn_delay.as_millis()
    );
    let what = match which {
        Remote::Keepalive => "auth keepalive",
        Remote::Cache => "auth cache hits",
    };
    let _ = srv.take_counts();
    let mut logins = 0;
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp] {
        let (_, warm, _) = login_rate(n.port(proto), proto, 4, 0.3).await;
        logins += warm.len();
        for &c in levels {
            let r = run(n, proto, c, secs, what).await;
            logins += r.lat.len();
            record(
                rec,
                proto,
                &format!("{c} concurrent, {what}, {model}"),
                &r,
                true,
            );
        }
    }
    let (conns, reqs) = srv.take_counts();
    let (name, unit, value) = match which {
        Remote::Keepalive => (
            "auth server connections per login",
            "conns",
            conns as f64 / reqs.max(1) as f64,
        ),
        Remote::Cache => (
            "auth requests per login",
            "reqs",
            reqs as f64 / logins.max(1) as f64,
        ),
    };
    rec.record(
        format!("{name}, {what}, {model}"),
        unit,
        Better::Lower,
        value,
    );
}
