//! Idle proxied sessions: worker memory per session, plain and with TLS on
//! the client side, and how long an idle session takes to wake up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_rustls::TlsConnector;

use crate::backends::{self, Proto};
use crate::clients::{Conn, Dial};
use crate::{nginx, percentile, Better, Recorder};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// IMAP logins name "bench<N>" with N new for every session of the run, so
/// that the fake backend can push to one chosen session.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Opens `k` logged-in sessions, at most 100 handshakes in flight.
async fn open(dial: &Dial, proto: Proto, k: usize) -> Result<Vec<(Conn, u64)>> {
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        let batch = (k - out.len()).min(100);
        let tasks: Vec<_> = (0..batch)
            .map(|_| {
                let dial = dial.clone();
                tokio::spawn(async move {
                    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                    let mut c = Conn::dial(&dial).await?;
                    match proto {
                        Proto::Imap => c.login_as(proto, &format!("bench{id}")).await?,
                        _ => c.login(proto).await?,
                    }
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>((c, id))
                })
            })
            .collect();
        for t in tasks {
            out.push(t.await??);
        }
    }
    Ok(out)
}

/// A fixed shuffle (xorshift; the same for stock and ours) of 0..n.
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// Worker memory per idle proxied session, on a worker that has served
/// nothing else yet: freed memory of earlier sessions would hide the cost.
/// Then, with all those sessions open, wake-ups of `samples` of them, one
/// at a time: a client command and its reply through the proxy, and (IMAP)
/// an untagged line the backend pushes.
pub async fn measure(
    rec: &mut Recorder<'_>,
    n: &nginx::Nginx,
    proto: Proto,
    count: usize,
    tls: Option<&TlsConnector>,
    samples: usize,
) -> Result<()> {
    let mut dial = Dial::plain(n.port(proto));
    let mut what = "idle session";
    if let Some(tls) = tls {
        dial.port = n.tls_port(proto).ok_or("no TLS server")?;
        dial.tls = Some(tls.clone());
        what = "idle TLS session";
    }
    // the worker's first sessions grow pools and tables once
    drop(open(&dial, proto, 20).await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rss = vec![n.worker_rss_kb()?];
    let mut held = Vec::with_capacity(2 * count);
    // twice: the second time tells what one more session costs, without
    // what the worker allocated once (tables, the first blocks of lists)
    for _ in 0..2 {
        held.extend(open(&dial, proto, count.max(1)).await?);
        tokio::time::sleep(Duration::from_millis(300)).await;
        rss.push(n.worker_rss_kb()?);
    }
    let first = held.len() / 2;
    let per = |from: u64, to: u64| (to as f64 - from as f64) * 1024.0 / first as f64;
    let p = proto.name();
    rec.record(
        format!("{p} worker RSS per {what}, {first} open"),
        "bytes",
        Better::Lower,
        per(rss[0], rss[1]),
    );
    rec.record(
        format!(
            "{p} worker RSS per {what}, {first} more ({} open)",
            held.len()
        ),
        "bytes",
        Better::Lower,
        per(rss[1], rss[2]),
    );
    if samples == 0 {
        return Ok(());
    }
    // each sample wakes a session that has been idle since its login
    let order = shuffled(held.len());
    let mut picks = order.iter().copied();
    let mut lat = Vec::with_capacity(samples);
    for i in picks.by_ref().take(samples) {
        let start = Instant::now();
        held[i].0.wake(proto).await?;
        lat.push(start.elapsed());
    }
    let over = if tls.is_some() { " over TLS" } else { "" };
    let open_now = held.len();
    record_latency(
        rec,
        &format!("{p} client wake-up{over}, {open_now} idle open"),
        lat,
    );
    if proto == Proto::Imap {
        let mut lat = Vec::with_capacity(samples);
        for i in picks.take(samples) {
            let (c, id) = &mut held[i];
            let start = Instant::now();
            if !backends::push(*id, b"* 1 EXISTS\r\n") {
                return Err(format!("no backend session bench{id}").into());
            }
            c.expect(b"* 1 EXISTS").await?;
            lat.push(start.elapsed());
        }
        record_latency(
            rec,
            &format!("{p} backend push{over}, {open_now} idle open"),
            lat,
        );
    }
    Ok(())
}

fn record_latency(rec: &mut Recorder<'_>, name: &str, mut lat: Vec<Duration>) {
    lat.sort();
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        rec.record(
            format!("{name} {label}"),
            "ms",
            Better::Lower,
            percentile(&lat, q),
        );
    }
}
