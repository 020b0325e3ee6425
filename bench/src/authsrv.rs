//! A fake auth HTTP server for the `-remote` groups: it answers after a
//! fixed delay, as a real one that asks a database does, and a new
//! connection's first answer waits a little longer still (the model of a
//! connection's cost when the auth server is elsewhere: a LAN round trip
//! for the handshake, the accept, a fresh session of its own). HTTP/1.0
//! requests (stock's) get an HTTP/1.0 answer and a close; HTTP/1.1 ones
//! (`auth_http_keepalive`'s) get `Content-Length: 0` and the connection
//! stays open. It runs as tokio tasks of mailbench, on the load
//! generator's CPU: sleeping costs that CPU nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server delays and what it has seen.
pub struct AuthServer {
    pub port: u16,
    /// Every request's delay.
    pub delay: Duration,
    /// Added to the first request on each connection.
    pub conn_delay: Duration,
    connections: AtomicU64,
    requests: AtomicU64,
}

impl AuthServer {
    /// Listens on 127.0.0.1 and answers each protocol's request with the
    /// fake backend's port for it (`backends`: protocol name -> port).
    pub async fn spawn(
        backends: &BTreeMap<&'static str, u16>,
        delay: Duration,
        conn_delay: Duration,
    ) -> std::io::Result<Arc<AuthServer>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let server = Arc::new(AuthServer {
            port: listener.local_addr()?.port(),
            delay,
            conn_delay,
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let ports: Arc<BTreeMap<String, u16>> =
            Arc::new(backends.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        let s = server.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, s.clone(), ports.clone()));
            }
        });
        Ok(server)
    }

    /// (connections, requests) since the last call.
    pub fn take_counts(&self) -> (u64, u64) {
        (
            self.connections.swap(0, Ordering::Relaxed),
            self.requests.swap(0, Ordering::Relaxed),
        )
    }
}

async fn serve(mut stream: TcpStream, s: Arc<AuthServer>, ports: Arc<BTreeMap<String, u16>>) {
    let mut buf = Vec::with_capacity(2048);
    let mut first = true;
    loop {
        // one whole header block; auth requests have no body
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 2048];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        s.requests.fetch_add(1, Ordering::Relaxed);
        let mut lines = head.split("\r\n");
        let http11 = lines.next().is_some_and(|l| l.ends_with("HTTP/1.1"));
        let mut keep = http11;
        let mut port = 0;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("auth-protocol") {
                port = ports.get(value).copied().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                keep = false;
            }
        }
        let wait = if first {
            s.delay + s.conn_delay
        } else {
            s.delay
        };
        first = false;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // no Auth-Pass: the client's password goes through (the fake
        // backends take any), and the answer may be cached
        let answer = if keep {
            format!(
                "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n\
                 Auth-Port: {port}\r\nContent-Length: 0\r\n\r\n"
            )
        } else {
            format!(
                "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n\
                 Auth-Port: {port}\r\n\r\n"
            )
        };
        if stream.write_all(answer.as_bytes()).await.is_err() || !keep {
            return;
        }
    }
}
