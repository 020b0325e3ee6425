//! The client side: whole login sessions (for the login rate and latency),
//! bulk transfers, idle proxied sessions (for memory per session), over
//! plain TCP or TLS, and wake-ups of idle sessions.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::backends::Proto;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Where and how a client connects.
#[derive(Clone)]
pub struct Dial {
    pub port: u16,
    /// Implicit TLS (`listen ... ssl`): the handshake before the greeting.
    pub tls: Option<TlsConnector>,
    /// A loopback source address of its own: every (source, destination)
    /// pair has its own ephemeral ports, about 28,000 of them.
    pub source: Option<Ipv4Addr>,
    /// The read buffer: big for the transfers, small for sessions that are
    /// only held (tens of thousands of them).
    pub buf: usize,
}

impl Dial {
    pub fn plain(port: u16) -> Dial {
        Dial {
            port,
            tls: None,
            source: None,
            buf: 1 << 16,
        }
    }
}

/// IP_BIND_ADDRESS_NO_PORT: bind() to port 0 would take a port of the
/// ephemeral range for this socket alone, whatever the destination, and a
/// few tens of thousands of such sockets exhaust the range for every
/// connection on the machine (nginx's to the auth server and the backends
/// too); with it the port is chosen at connect(), unique per pair only.
fn no_port_at_bind(s: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is the open socket `s` owns; the option value
    // is a c_int that lives across the call, and its size is given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub struct Conn {
    r: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    w: Box<dyn AsyncWrite + Send + Unpin>,
    line: Vec<u8>,
}

impl Conn {
    pub async fn open(port: u16) -> Result<Conn> {
        Conn::dial(&Dial::plain(port)).await
    }

    pub async fn dial(d: &Dial) -> Result<Conn> {
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, d.port));
        let sock = match d.source {
            Some(ip) => {
                let s = TcpSocket::new_v4()?;
                no_port_at_bind(&s)?;
                s.bind(SocketAddr::from((ip, 0)))?;
                s.connect(to).await?
            }
            None => TcpStream::connect(to).await?,
        };
        sock.set_nodelay(true)?;
        let (r, w): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match &d.tls {
            Some(tls) => {
                let s = tls.connect(crate::tls::server_name(), sock).await?;
                let (r, w) = tokio::io::split(s);
                (Box::new(r), Box::new(w))
            }
            None => {
                let (r, w) = sock.into_split();
                (Box::new(r), Box::new(w))
            }
        };
        Ok(Conn {
            r: BufReader::with_capacity(d.buf, r),
            w,
            line: Vec::new(),
        })
    }

    async fn send(&mut self, data: &[u8]) -> Result<()> {
        self.w.write_all(data).await?;
        // a no-op on TCP; TLS may hold a record back until flushed
        self.w.flush().await?;
        Ok(())
    }

    /// Reads one line; fails unless it starts with `prefix`.
    pub async fn expect(&mut self, prefix: &[u8]) -> Result<()> {
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
        self.login_as(proto, "bench").await
    }

    /// The same as `user` (POP3 and IMAP): the fake IMAP backend knows a
    /// session by the digits after "bench", for pushing to it.
    pub async fn login_as(&mut self, proto: Proto, user: &str) -> Result<()> {
        match proto {
            Proto::Pop3 => {
                self.expect(b"+OK").await?;
                self.send(format!("USER {user}\r\n").as_bytes()).await?;
                self.expect(b"+OK").await?;
                self.send(b"PASS secret\r\n").await?;
                self.expect(b"+OK").await
            }
            Proto::Imap => {
                self.expect(b"* OK").await?;
                self.send(format!("a1 LOGIN {user} secret\r\n").as_bytes())
                    .await?;
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

    /// One short command through an idle session and its reply: what a
    /// client's wake-up costs through the relay.
    pub async fn wake(&mut self, proto: Proto) -> Result<()> {
        match proto {
            Proto::Pop3 => {
                self.send(b"NOOP\r\n").await?;
                self.expect(b"+OK").await
            }
            Proto::Imap => {
                self.send(b"w NOOP\r\n").await?;
                self.expect(b"w OK").await
            }
            Proto::Smtp => {
                self.send(b"NOOP\r\n").await?;
                self.expect(b"250").await
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
