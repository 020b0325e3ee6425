//! The client side: whole login sessions (for the login rate and latency),
//! bulk transfers, and idle proxied sessions (for memory per session).

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::backends::Proto;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    line: Vec<u8>,
}

impl Conn {
    pub async fn open(port: u16) -> Result<Conn> {
        let sock = TcpStream::connect(("127.0.0.1", port)).await?;
        sock.set_nodelay(true)?;
        let (r, w) = sock.into_split();
        Ok(Conn {
            r: BufReader::with_capacity(1 << 16, r),
            w,
            line: Vec::new(),
        })
    }

    async fn send(&mut self, data: &[u8]) -> Result<()> {
        self.w.write_all(data).await?;
        Ok(())
    }

    /// Reads one line; fails unless it starts with `prefix`.
    async fn expect(&mut self, prefix: &[u8]) -> Result<()> {
        self.line.clear();
        if self.r.read_until(b'\n', &mut self.line).await? == 0 {
            return Err("connection closed".into());
        }
        if !self.line.starts_with(prefix) {
            return Err(format!("unexpected {:?}", String::from_utf8_lossy(&self.line)).into());
        }
        Ok(())
    }

    /// An SMTP reply, multi-line ones included.
    async fn reply(&mut self, code: &[u8]) -> Result<()> {
        loop {
            self.expect(code).await?;
            if self.line.get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    /// Greeting and login, up to the point where the backend answers.
    pub async fn login(&mut self, proto: Proto) -> Result<()> {
        match proto {
            Proto::Pop3 => {
                self.expect(b"+OK").await?;
                self.send(b"USER bench\r\n").await?;
                self.expect(b"+OK").await?;
                self.send(b"PASS secret\r\n").await?;
                self.expect(b"+OK").await
            }
            Proto::Imap => {
                self.expect(b"* OK").await?;
                self.send(b"a1 LOGIN bench secret\r\n").await?;
                self.expect(b"a1 OK").await
            }
            Proto::Smtp => {
                self.expect(b"220").await?;
                self.send(b"EHLO bench.example\r\n").await?;
                self.reply(b"250").await?;
                self.send(b"AUTH PLAIN AGJlbmNoAHNlY3JldA==\r\n").await?;
                self.expect(b"235").await
            }
            Proto::Raw => Ok(()),
        }
    }

    async fn one_command_and_logout(&mut self, proto: Proto) -> Result<()> {
        match proto {
            Proto::Pop3 => {
                self.send(b"NOOP\r\n").await?;
                self.expect(b"+OK").await?;
                self.send(b"QUIT\r\n").await?;
                self.expect(b"+OK").await
            }
            Proto::Imap => {
                self.send(b"a2 NOOP\r\n").await?;
                self.expect(b"a2 OK").await?;
                self.send(b"a3 LOGOUT\r\n").await?;
                self.expect(b"* BYE").await?;
                self.expect(b"a3 OK").await
            }
            Proto::Smtp => {
                self.send(b"NOOP\r\n").await?;
                self.expect(b"250").await?;
                self.send(b"QUIT\r\n").await?;
                self.expect(b"221").await
            }
            Proto::Raw => Ok(()),
        }
    }

    /// One bulk transfer of `message` through the session (`upload` is the
    /// message with SMTP's final dot, sent in one write); its duration.
    pub async fn transfer(
        &mut self,
        proto: Proto,
        message: &[u8],
        upload: &[u8],
    ) -> Result<Duration> {
        let start = Instant::now();
        match proto {
            Proto::Pop3 => {
                self.send(b"RETR 1\r\n").await?;
                self.expect(b"+OK").await?;
                self.skip(message.len()).await?;
                self.expect(b".").await?;
            }
            Proto::Imap => {
                self.send(b"a2 FETCH 1 BODY[]\r\n").await?;
                self.expect(b"* 1 FETCH").await?;
                self.skip(message.len()).await?;
                self.expect(b")").await?;
                self.expect(b"a2 OK").await?;
            }
            Proto::Smtp => {
                self.send(b"MAIL FROM:<a@bench.example>\r\n").await?;
                self.expect(b"250").await?;
                self.send(b"RCPT TO:<b@bench.example>\r\n").await?;
                self.expect(b"250").await?;
                let start = Instant::now();
                self.send(b"DATA\r\n").await?;
                self.expect(b"354").await?;
                self.send(upload).await?;
                self.expect(b"250").await?;
                return Ok(start.elapsed());
            }
            Proto::Raw => {
                let mut sink = vec![0u8; 1 << 16];
                let mut total = 0;
                loop {
                    let n = self.r.read(&mut sink).await?;
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                if total != message.len() {
                    return Err("short stream transfer".into());
                }
            }
        }
        Ok(start.elapsed())
    }

    async fn skip(&mut self, mut n: usize) -> Result<()> {
        while n > 0 {
            let buf = self.r.fill_buf().await?;
            if buf.is_empty() {
                return Err("closed during transfer".into());
            }
            let take = buf.len().min(n);
            self.r.consume(take);
            n -= take;
        }
        Ok(())
    }
}

/// One whole session: connect, greeting, login through the auth server and
/// the backend, one command, logout. Its latency.
pub async fn session(port: u16, proto: Proto) -> Result<Duration> {
    let start = Instant::now();
    let mut c = Conn::open(port).await?;
    c.login(proto).await?;
    c.one_command_and_logout(proto).await?;
    Ok(start.elapsed())
}
