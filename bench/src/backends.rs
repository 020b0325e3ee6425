//! Fast fake POP3, IMAP and SMTP backends, and a raw sender for the stream
//! proxy ceiling: just enough protocol for nginx's login dialogues, one
//! command, logout, and bulk transfers of a fixed message.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

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

async fn serve(proto: Proto, sock: TcpStream, replies: &Replies) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::with_capacity(1 << 16, r);
    let mut line = Vec::new();
    match proto {
        Proto::Raw => {
            w.write_all(&replies.raw).await?;
            return w.shutdown().await;
        }
        Proto::Pop3 => w.write_all(b"+OK ready\r\n").await?,
        Proto::Imap => w.write_all(b"* OK ready\r\n").await?,
        Proto::Smtp => w.write_all(b"220 ready\r\n").await?,
    }
    let mut tag = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        match proto {
            Proto::Pop3 => {
                if upper.starts_with(b"RETR") {
                    w.write_all(&replies.retr).await?;
                } else if upper.starts_with(b"QUIT") {
                    w.write_all(b"+OK bye\r\n").await?;
                    return Ok(());
                } else {
                    w.write_all(b"+OK\r\n").await?;
                }
            }
            Proto::Imap => {
                if tag.is_empty() {
                    tag = line.split(|&b| b == b' ').next().unwrap_or(b"*").to_vec();
                }
                // LOGIN arrives as literals: go on until the line that ends it
                if line.ends_with(b"}\r\n") {
                    w.write_all(b"+ go on\r\n").await?;
                    continue;
                }
                let t = std::mem::take(&mut tag);
                if upper.windows(5).any(|x| x == b"FETCH") {
                    // the client always tags its FETCH "a2"
                    w.write_all(&replies.fetch).await?;
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
                w.write_all(&reply).await?;
                if bye {
                    return Ok(());
                }
            }
            Proto::Smtp => {
                if upper.starts_with(b"XCLIENT") {
                    w.write_all(b"220 ok\r\n").await?;
                } else if upper.starts_with(b"DATA") {
                    w.write_all(b"354 go on\r\n").await?;
                    read_data(&mut r).await?;
                    w.write_all(b"250 queued\r\n").await?;
                } else if upper.starts_with(b"QUIT") {
                    w.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                } else {
                    w.write_all(b"250 ok\r\n").await?;
                }
            }
            Proto::Raw => unreachable!(),
        }
    }
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
