//! Fast fake POP3, IMAP and SMTP backends, and a raw sender for the stream
//! proxy ceiling: just enough protocol for nginx's login dialogues, one
//! command, logout, and bulk transfers of a fixed message; the IMAP one
//! also pushes untagged lines to a chosen session (for backend wake-ups).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Each backend connection's read buffer: 64 KiB for the transfers; a
/// process that only holds idle sessions (`--backends-only`) sets less.
pub static READ_BUF: AtomicUsize = AtomicUsize::new(1 << 16);

type Pushers = Mutex<HashMap<u64, mpsc::UnboundedSender<&'static [u8]>>>;

/// IMAP sessions whose login named "bench<N>", by N.
fn pushers() -> &'static Pushers {
    static P: OnceLock<Pushers> = OnceLock::new();
    P.get_or_init(Default::default)
}

/// Has the IMAP backend write `line` to session `id` unasked; false if
/// there is no such session.
pub fn push(id: u64, line: &'static [u8]) -> bool {
    let p = pushers().lock().unwrap_or_else(|e| e.into_inner());
    p.get(&id).is_some_and(|tx| tx.send(line).is_ok())
}

/// The N of a login line naming user "bench<N>" (as a literal or an atom).
fn session_id(line: &[u8]) -> Option<u64> {
    let at = line.windows(5).position(|w| w == b"bench")? + 5;
    let digits: Vec<u8> = line[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The message every backend serves and every client sends: CRLF lines, none
/// starting with '.', ending with CRLF.
pub fn message(size: usize) -> Vec<u8> {
    let line =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijkl\r\n";
    let mut out = Vec::with_capacity(size + line.len());
    while out.len() < size {
        out.extend_from_slice(line);
    }
    out.truncate(size.saturating_sub(2));
    out.extend_from_slice(b"\r\n");
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Pop3,
    Imap,
    Smtp,
    Raw,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Pop3 => "pop3",
            Proto::Imap => "imap",
            Proto::Smtp => "smtp",
            Proto::Raw => "stream",
        }
    }
}

/// Listens on an ephemeral port and serves `proto` forever; returns the port.
/// Whole replies carrying the message, each sent in one write.
pub struct Replies {
    raw: Vec<u8>,
    retr: Vec<u8>,
    fetch: Vec<u8>,
}

impl Replies {
    pub fn new(message: &[u8]) -> Replies {
        let mut retr = b"+OK message follows\r\n".to_vec();
        retr.extend_from_slice(message);
        retr.extend_from_slice(b".\r\n");
        let mut fetch = format!("* 1 FETCH (BODY[] {{{}}}\r\n", message.len()).into_bytes();
        fetch.extend_from_slice(message);
        fetch.extend_from_slice(b")\r\na2 OK done\r\n");
        Replies {
            raw: message.to_vec(),
            retr,
            fetch,
        }
    }
}

pub async fn spawn(proto: Proto, message: Arc<Replies>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let message = message.clone();
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                let _ = serve(proto, sock, &message).await;
            });
        }
    });
    Ok(port)
}

/// TLS handshakes the TLS backends completed, and of them resumed, by
/// `Proto as usize`: whether `proxy_ssl_session_reuse` took effect.
static HANDSHAKES: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static RESUMED: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

/// (handshakes, resumed) of `proto`'s TLS backend so far.
pub fn tls_handshakes(proto: Proto) -> (usize, usize) {
    let i = proto as usize;
    (
        HANDSHAKES[i].load(Ordering::Relaxed),
        RESUMED[i].load(Ordering::Relaxed),
    )
}

/// The same backend behind TLS from the first byte (POP3S, IMAPS, SMTPS,
/// and a TLS raw sender for the stream proxy's `proxy_ssl`), with the
/// bench's certificate; returns the port.
pub async fn spawn_tls(
    proto: Proto,
    message: Arc<Replies>,
    acceptor: tokio_rustls::TlsAcceptor,
) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let message = message.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                if let Ok(tls) = acceptor.accept(sock).await {
                    let resumed =
                        tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                    let i = proto as usize;
                    HANDSHAKES[i].fetch_add(1, Ordering::Relaxed);
                    RESUMED[i].fetch_add(resumed as usize, Ordering::Relaxed);
                    let (r, w) = tokio::io::split(tls);
                    let _ = serve_halves(proto, r, w, &message).await;
                }
            });
        }
    });
    Ok(port)
}

async fn serve(proto: Proto, sock: TcpStream, replies: &Replies) -> std::io::Result<()> {
    let (r, w) = sock.into_split();
    serve_halves(proto, r, w, replies).await
}

async fn serve_halves<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    proto: Proto,
    r: R,
    mut w: W,
    replies: &Replies,
) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(READ_BUF.load(Ordering::Relaxed), r);
    let mut line = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut id = None;
    let result = serve_lines(
        proto, &mut r, &mut w, &mut line, replies, &tx, &mut rx, &mut id,
    )
    .await;
    if let Some(id) = id {
        pushers()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve_lines<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    proto: Proto,
    r: &mut BufReader<R>,
    w: &mut W,
    line: &mut Vec<u8>,
    replies: &Replies,
    tx: &mpsc::UnboundedSender<&'static [u8]>,
    rx: &mut mpsc::UnboundedReceiver<&'static [u8]>,
    id: &mut Option<u64>,
) -> std::io::Result<()> {
    match proto {
        Proto::Raw => {
            send(w, &replies.raw).await?;
            return w.shutdown().await;
        }
        Proto::Pop3 => send(w, b"+OK ready\r\n").await?,
        Proto::Imap => send(w, b"* OK ready\r\n").await?,
        Proto::Smtp => send(w, b"220 ready\r\n").await?,
    }
    let mut tag = Vec::new();
    loop {
        // a push interrupts a read half done: what was read stays in `line`
        tokio::select! {
            n = r.read_until(b'\n', line) => {
                if n? == 0 {
                    return Ok(());
                }
            }
            Some(push) = rx.recv() => {
                send(w, push).await?;
                continue;
            }
        }
        let upper = line.to_ascii_uppercase();
        let line = std::mem::take(line);
        match proto {
            Proto::Pop3 => {
                if upper.starts_with(b"RETR") {
                    send(w, &replies.retr).await?;
                } else if upper.starts_with(b"QUIT") {
                    send(w, b"+OK bye\r\n").await?;
                    return Ok(());
                } else {
                    send(w, b"+OK\r\n").await?;
                }
            }
            Proto::Imap => {
                if tag.is_empty() {
                    tag = line.split(|&b| b == b' ').next().unwrap_or(b"*").to_vec();
                }
                if id.is_none() {
                    *id = session_id(&line);
                    if let Some(id) = *id {
                        pushers()
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id, tx.clone());
                    }
                }
                // LOGIN arrives as literals: go on until the line that ends it
                if line.ends_with(b"}\r\n") {
                    send(w, b"+ go on\r\n").await?;
                    continue;
                }
                let t = std::mem::take(&mut tag);
                if upper.windows(5).any(|x| x == b"FETCH") {
                    // the client always tags its FETCH "a2"
                    send(w, &replies.fetch).await?;
                    continue;
                }
                let bye = upper.windows(6).any(|x| x == b"LOGOUT");
                let mut reply = if bye {
                    b"* BYE\r\n".to_vec()
                } else {
                    Vec::new()
                };
                reply.extend_from_slice(&t);
                reply.extend_from_slice(b" OK done\r\n");
                send(w, &reply).await?;
                if bye {
                    return Ok(());
                }
            }
            Proto::Smtp => {
                if upper.starts_with(b"XCLIENT") {
                    send(w, b"220 ok\r\n").await?;
                } else if upper.starts_with(b"DATA") {
                    send(w, b"354 go on\r\n").await?;
                    read_data(r).await?;
                    send(w, b"250 queued\r\n").await?;
                } else if upper.starts_with(b"QUIT") {
                    send(w, b"221 bye\r\n").await?;
                    return Ok(());
                } else {
                    send(w, b"250 ok\r\n").await?;
                }
            }
            Proto::Raw => unreachable!(),
        }
    }
}

/// Writes and flushes: a TLS stream keeps what the socket did not take in
/// its buffer until the next write or flush (a no-op on plain TCP).
async fn send<W: AsyncWrite + Unpin>(w: &mut W, buf: &[u8]) -> std::io::Result<()> {
    w.write_all(buf).await?;
    w.flush().await
}

/// Reads a DATA body up to the line holding a single '.'. The client sends
/// nothing behind the body until it has the reply, so the terminator ends
/// the bytes received so far: only their last five are looked at (scanning
/// every byte made this fake server, not the proxy, the bottleneck).
async fn read_data<R: AsyncReadExt + Unpin>(r: &mut BufReader<R>) -> std::io::Result<()> {
    let mut tail = [0u8; 5];
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len();
        let mut window = tail.to_vec();
        window.extend_from_slice(&buf[n.saturating_sub(5)..]);
        let last = &window[window.len() - 5..];
        let found = last == b"\r\n.\r\n";
        tail.copy_from_slice(last);
        r.consume(n);
        if found {
            return Ok(());
        }
    }
}
