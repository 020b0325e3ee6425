//! mailbench: nginx's stock mail modules against ngx-mail-rs on the same
//! nginx binary, in alternating rounds (stock, ours, stock, ours, ...), with
//! `worker_processes 1`. Prints median, min and max of every figure for both
//! and the ratio ours/stock of the medians.
//!
//! Usage: mailbench --nginx BIN --mail-module SO --ours SO
//!                  [--rounds N] [--quick] [--markdown FILE]
//!                  [--only login|keepalive|cache|keepalive-remote|cache-remote|transfer|
//!                          idle|idle-tls|hold|backend-tls] [--hold]
//!                  [--idle-sessions N] [--mail-extra DIRECTIVES]
//!                  [--auth-delay-ms N] [--auth-conn-delay-ms N]
//!        mailbench ... --profile pop3|imap|smtp[:stock] [--logins N]
//!        mailbench --backends-only   (the fake backends alone, for --hold)

mod auth;
mod authsrv;
mod backends;
mod backtls;
mod clients;
mod hold;
mod idle;
mod nginx;
mod options;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backends::Proto;
use options::options;

/// What one figure means for the ratio: higher or lower is better.
#[derive(Clone, Copy)]
pub(crate) enum Better {
    Higher,
    Lower,
    /// Neither: a figure that explains others (CPU utilisation).
    Context,
}

/// Figures of every run: name -> (unit, better, [stock values], [our values]).
pub(crate) type Figures = BTreeMap<(usize, String), (&'static str, Better, Vec<f64>, Vec<f64>)>;

pub(crate) struct Recorder<'a> {
    figures: &'a mut Figures,
    ours: bool,
    order: usize,
}

impl Recorder<'_> {
    pub(crate) fn record(&mut self, name: String, unit: &'static str, better: Better, value: f64) {
        self.order += 1;
        let entry = self.figures.entry((self.order, name)).or_insert((
            unit,
            better,
            Vec::new(),
            Vec::new(),
        ));
        if self.ours {
            entry.3.push(value);
        } else {
            entry.2.push(value);
        }
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

pub(crate) async fn login_rate(
    port: u16,
    proto: Proto,
    concurrency: usize,
    secs: f64,
) -> (f64, Vec<Duration>, usize) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                match clients::session(port, proto).await {
                    Ok(d) => lat.push(d),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / elapsed, all, errors)
}

async fn measure_logins(rec: &mut Recorder<'_>, n: &nginx::Nginx, quick: bool) {
    let secs = if quick { 0.5 } else { 3.0 };
    let levels: &[usize] = if quick { &[4] } else { &[1, 16, 64] };
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp] {
        let port = n.port(proto);
        // warm-up: the first sessions pay for connection setup everywhere
        let _ = login_rate(port, proto, 4, 0.3).await;
        for &c in levels {
            let cpu_before = n.worker_cpu_secs();
            let (rate, lat, errors) = login_rate(port, proto, c, secs).await;
            let cpu = match (cpu_before, n.worker_cpu_secs()) {
                (Ok(a), Ok(b)) if !lat.is_empty() => (b - a) / lat.len() as f64 * 1e6,
                _ => f64::NAN,
            };
            if errors > 0 {
                eprintln!("  {} c={c}: {errors} failed sessions", proto.name());
            }
            let p = proto.name();
            rec.record(
                format!("{p} logins/s, {c} concurrent"),
                "/s",
                Better::Higher,
                rate,
            );
            rec.record(
                format!("{p} session p50, {c} concurrent"),
                "ms",
                Better::Lower,
                percentile(&lat, 0.5),
            );
            rec.record(
                format!("{p} session p99, {c} concurrent"),
                "ms",
                Better::Lower,
                percentile(&lat, 0.99),
            );
            rec.record(
                format!("{p} worker CPU per login, {c} concurrent"),
                "us",
                Better::Lower,
                cpu,
            );
        }
    }
}

/// 16 MiB through each protocol and through a stream proxy_pass (the
/// ceiling), the median of several transfers each.
async fn measure_transfers(
    rec: &mut Recorder<'_>,
    n: &nginx::Nginx,
    message: &[u8],
    quick: bool,
    label: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let transfers = if quick { 1 } else { 5 };
    let upload = [message, b".\r\n"].concat();
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp, Proto::Raw] {
        let mut times = Vec::new();
        let mut c = clients::Conn::open(n.port(proto)).await?;
        c.login(proto).await?;
        for i in 0..transfers {
            if proto == Proto::Raw && i > 0 {
                c = clients::Conn::open(n.port(proto)).await?;
            }
            times.push(c.transfer(proto, message, &upload).await?);
        }
        times.sort();
        let median = times[times.len() / 2].as_secs_f64();
        let what = match proto {
            Proto::Pop3 => "pop3 RETR",
            Proto::Imap => "imap FETCH",
            Proto::Smtp => "smtp DATA",
            Proto::Raw => "stream proxy_pass",
        };
        let mib = message.len() >> 20;
        rec.record(
            format!("{what} {mib} MiB{label}"),
            "MB/s",
            Better::Higher,
            message.len() as f64 / median / 1e6,
        );
    }
    Ok(())
}

pub(crate) fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (s[s.len() / 2], s[0], s[s.len() - 1])
}

fn table(figures: &Figures) -> String {
    let mut out = String::from(
        "| figure | stock median (min-max) | ours median (min-max) | ours/stock |\n|---|---|---|---|\n",
    );
    for ((_, name), (unit, better, stock, ours)) in figures {
        let (sm, smin, smax) = stats(stock);
        let (om, omin, omax) = stats(ours);
        let ratio = om / sm;
        let note = match better {
            Better::Higher => "",
            Better::Lower => " (lower is better)",
            Better::Context => " (context)",
        };
        let f = |x: f64| {
            if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        };
        out.push_str(&format!(
            "| {name} ({unit}){note} | {} ({}-{}) | {} ({}-{}) | {:.2} |\n",
            f(sm),
            f(smin),
            f(smax),
            f(om),
            f(omin),
            f(omax),
            ratio
        ));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("--backends-only") {
        backends_only().await;
        return;
    }
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mailbench: {e}");
            std::process::exit(2);
        }
    };
    let size = if o.quick { 1 << 20 } else { 16 << 20 };
    let message = backends::message(size);
    let replies = Arc::new(backends::Replies::new(&message));
    let mut ports = BTreeMap::new();
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp, Proto::Raw] {
        match backends::spawn(proto, replies.clone()).await {
            Ok(p) => {
                ports.insert(proto.name(), p);
            }
            Err(e) => {
                eprintln!("mailbench: backend: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Some(what) = &o.profile {
        let (name, stock) = match what.split_once(':') {
            Some((n, "stock")) => (n, true),
            _ => (what.as_str(), false),
        };
        let proto = [Proto::Pop3, Proto::Imap, Proto::Smtp]
            .into_iter()
            .find(|p| p.name() == name)
            .unwrap_or(Proto::Pop3);
        let mut globals = format!("load_module {};", o.mail_module);
        if !stock {
            globals.push_str(&format!(" load_module {};", o.ours));
        }
        let n = nginx::Nginx::start(&o.nginx, &globals, "", &ports, nginx::Shape::PLAIN, false)
            .expect("nginx");
        if let Some(count) = o.logins {
            for i in 0..20 + count {
                if let Err(e) = clients::session(n.port(proto), proto).await {
                    eprintln!("mailbench: session {i}: {e}");
                    std::process::exit(1);
                }
            }
            println!("{count} sessions after 20 of warm-up");
            n.stop();
            return;
        }
        let _ = login_rate(n.port(proto), proto, 4, 0.5).await;
        println!("worker {}", n.worker_pid().expect("worker"));
        let (rate, _, _) = login_rate(n.port(proto), proto, 16, 20.0).await;
        println!("{rate:.0} logins/s");
        n.stop();
        return;
    }
    // a directory of its own: each nginx start empties its own
    let tls_dir = std::env::temp_dir().join(format!("mailbench-tls.{}", std::process::id()));
    let tls = if o.runs("idle") || o.runs("idle-tls") || o.runs("backend-tls") {
        match tls::setup(&tls_dir) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("mailbench: no TLS figures: {e}");
                None
            }
        }
    } else {
        None
    };
    // the TLS backends under the plain ones' names, for the auth location
    let mut tls_ports = BTreeMap::new();
    if let (true, Some(t)) = (o.runs("backend-tls"), &tls) {
        let acceptor = tls::acceptor(t).unwrap_or_else(|e| {
            eprintln!("mailbench: TLS backends: {e}");
            std::process::exit(1);
        });
        for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp, Proto::Raw] {
            match backends::spawn_tls(proto, replies.clone(), acceptor.clone()).await {
                Ok(p) => {
                    tls_ports.insert(proto.name(), p);
                }
                Err(e) => {
                    eprintln!("mailbench: TLS backend: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    let shared_message = Arc::new(message.clone());
    let mut tls_figures = Figures::new();
    let held_backends = if o.runs("hold") {
        match hold::Backends::spawn() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("mailbench: backends child: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    // the remote groups' fake auth servers, one each: their delays differ
    let mut remote = Vec::new();
    for (group, which, delay, conn_delay) in [
        ("keepalive-remote", auth::Remote::Keepalive, 0, 1),
        ("cache-remote", auth::Remote::Cache, 5, 0),
    ] {
        if !o.runs(group) {
            continue;
        }
        let ms = Duration::from_millis;
        let delay = ms(o.auth_delay_ms.unwrap_or(delay));
        let conn_delay = ms(o.auth_conn_delay_ms.unwrap_or(conn_delay));
        match authsrv::AuthServer::spawn(&ports, delay, conn_delay).await {
            Ok(srv) => remote.push((srv, which)),
            Err(e) => {
                eprintln!("mailbench: auth server: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        // what "mailbench CPU utilisation" is out of
        if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list")) {
            eprintln!("mailbench: {}", l.replace('\t', " "));
        }
    }
    let mut figures = Figures::new();
    for round in 1..=o.rounds {
        for ours in [false, true] {
            let who = if ours { "ngx-mail-rs" } else { "stock" };
            eprintln!("round {round}: {who}");
            let mut globals = format!("load_module {};", o.mail_module);
            if ours {
                globals.push_str(&format!(" load_module {};", o.ours));
            }
            let mut rec = Recorder {
                figures: &mut figures,
                ours,
                order: 0,
            };
            let start_logged = |extra: &str, auth_log: bool| match nginx::Nginx::start(
                &o.nginx,
                &globals,
                extra,
                &ports,
                nginx::Shape::PLAIN,
                auth_log,
            ) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("mailbench: nginx: {e}");
                    std::process::exit(1);
                }
            };
            let start = |extra: &str| start_logged(extra, false);
            if o.runs("login") || o.runs("transfer") {
                let n = start("");
                if o.runs("login") {
                    measure_logins(&mut rec, &n, o.quick).await;
                }
                if o.runs("transfer") {
                    if let Err(e) = measure_transfers(&mut rec, &n, &message, o.quick, "").await {
                        eprintln!("mailbench: {who}: {e}");
                        std::process::exit(1);
                    }
                }
                n.stop();
            }
            if o.runs("keepalive") {
                // stock has no keepalive: its column is one connection a login
                let n = start_logged(if ours { "auth_http_keepalive 32;" } else { "" }, true);
                auth::measure_keepalive(&mut rec, &n, o.quick).await;
                n.stop();
            }
            if o.runs("cache") {
                let auth = "auth_http 127.0.0.1:{auth}/auth-nopass;";
                let extra = if ours {
                    format!("{auth} auth_http_cache zone=auth:10m;")
                } else {
                    auth.to_string()
                };
                let n = start_logged(&extra, true);
                auth::measure_cache(&mut rec, &n, o.quick).await;
                n.stop();
            }
            for (srv, which) in &remote {
                let port = srv.port;
                let extra = match (which, ours) {
                    // stock has neither: one connection and one request a login
                    (_, false) => format!("auth_http 127.0.0.1:{port}/auth;"),
                    (auth::Remote::Keepalive, true) => {
                        format!("auth_http 127.0.0.1:{port}/auth; auth_http_keepalive 32;")
                    }
                    (auth::Remote::Cache, true) => {
                        format!("auth_http 127.0.0.1:{port}/auth; auth_http_cache zone=auth:10m;")
                    }
                };
                let n = start(&extra);
                auth::measure_remote(&mut rec, &n, srv, *which, o.quick).await;
                n.stop();
            }
            if o.runs("transfer") {
                // the same transfers with mail buffers the size of stream's
                let n = start("proxy_buffer 16k; smtp_client_buffer 16k; imap_client_buffer 16k;");
                if let Err(e) =
                    measure_transfers(&mut rec, &n, &message, o.quick, ", 16k buffers").await
                {
                    eprintln!("mailbench: {who}: {e}");
                    std::process::exit(1);
                }
                n.stop();
            }
            let count = o.idle_sessions.unwrap_or(if o.quick { 100 } else { 2000 });
            let samples = if o.quick { 50 } else { 500 };
            let tls_files = tls.as_ref().map(|t| (t.cert.as_path(), t.key.as_path()));
            // plain first, then (with a certificate) TLS on the client side
            let mut connectors = Vec::new();
            if o.runs("idle") {
                connectors.push(None);
            }
            if o.runs("idle") || o.runs("idle-tls") {
                connectors.extend(tls.as_ref().map(|t| Some(&t.connector)));
            }
            for (connector, proto) in connectors
                .into_iter()
                .flat_map(|c| [Proto::Pop3, Proto::Imap, Proto::Smtp].map(|p| (c, p)))
            {
                // a fresh nginx each time: see idle::measure
                let shape = nginx::Shape {
                    tls: connector.and(tls_files),
                    ..nginx::Shape::PLAIN
                };
                let n = match nginx::Nginx::start(
                    &o.nginx,
                    &globals,
                    &o.mail_extra,
                    &ports,
                    shape,
                    false,
                ) {
                    Ok(n) => n,
                    Err(e) => {
                        eprintln!("mailbench: nginx: {e}");
                        std::process::exit(1);
                    }
                };
                if let Err(e) = idle::measure(&mut rec, &n, proto, count, connector, samples).await
                {
                    eprintln!("mailbench: {who}: idle {}: {e}", proto.name());
                    std::process::exit(1);
                }
                n.stop();
            }
            if ours && !tls_ports.is_empty() {
                let mut rec = Recorder {
                    figures: &mut tls_figures,
                    ours,
                    order: 0,
                };
                let r = backtls::measure(
                    &mut rec,
                    &o.nginx,
                    &globals,
                    &ports,
                    &tls_ports,
                    &shared_message,
                    o.quick,
                );
                if let Err(e) = r.await {
                    eprintln!("mailbench: backend-tls: {e}");
                    std::process::exit(1);
                }
            }
            if let Some(b) = &held_backends {
                for proto in [Proto::Imap, Proto::Pop3, Proto::Smtp] {
                    let r = hold::measure(&mut rec, &o.nginx, &globals, &b.ports, proto, o.quick);
                    if let Err(e) = r.await {
                        eprintln!("mailbench: {who}: hold {}: {e}", proto.name());
                        std::process::exit(1);
                    }
                }
            }
        }
    }
    drop(held_backends);
    let _ = std::fs::remove_dir_all(&tls_dir);
    let mut t = String::new();
    if !figures.is_empty() {
        t.push_str(&table(&figures));
    }
    if !tls_figures.is_empty() {
        if !t.is_empty() {
            t.push('\n');
        }
        t.push_str(&backtls::table(&tls_figures));
    }
    println!("{t}");
    if let Some(path) = o.markdown {
        if let Err(e) = std::fs::write(&path, &t) {
            eprintln!("mailbench: {path}: {e}");
        }
    }
}

/// `--backends-only`: the fake backends in a process of their own (the hold
/// mode's, so that their sockets do not count against the client's
/// descriptor limit). Prints "name port" pairs on one line, then serves
/// until its stdin closes.
async fn backends_only() {
    // idle sessions only: small read buffers
    backends::READ_BUF.store(1024, std::sync::atomic::Ordering::Relaxed);
    let replies = Arc::new(backends::Replies::new(&backends::message(4096)));
    let mut line = String::new();
    for proto in [Proto::Pop3, Proto::Imap, Proto::Smtp, Proto::Raw] {
        match backends::spawn(proto, replies.clone()).await {
            Ok(port) => line.push_str(&format!("{} {port} ", proto.name())),
            Err(e) => {
                eprintln!("mailbench: backend: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("{}", line.trim_end());
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
}
