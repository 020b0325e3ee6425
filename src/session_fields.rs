//! The fields of nginx's session struct that the stages read and write:
//! the command buffer, the reply being sent, the credentials, the salt, the
//! client's name and the SMTP envelope. Strings written here are copied into
//! the session's pool; strings read are borrowed from it (or from the
//! configuration), which outlives every handler that reads them.

use core::ptr;

use nginx_sys::{ngx_str_t, ngx_uint_t};

use crate::ffi::bytes;
use crate::nginx::{Buf, Conn, Event, Io, Pool};
use crate::session::Session;

const ABSENT: ngx_str_t = ngx_str_t {
    len: 0,
    data: ptr::null_mut(),
};

/// What sending `s->out` did.
#[must_use]
pub enum Sent {
    /// All of it went out; the session is open.
    All,
    /// Part of it waits for the write event (`ngx_mail_send`).
    Partly,
    /// The send failed: the session is closed.
    Closed,
}

impl Session {
    /// The client's connection.
    pub fn client(self) -> Conn {
        // SAFETY: a live session's connection is live.
        unsafe { Conn::from_raw(self.connection()) }
    }

    /// The session's pool.
    pub fn pool_handle(self) -> Pool {
        // SAFETY: the pool lives as long as the session.
        unsafe { Pool::from_raw(self.pool()) }
    }

    /// The command buffer, once made.
    pub fn buffer(self) -> Option<Buf> {
        // SAFETY: s->buffer is null or a live temp buffer of the pool.
        unsafe {
            let b = (*self.raw()).buffer;
            (!b.is_null()).then(|| Buf::from_raw(b))
        }
    }

    /// Makes the command buffer once; false when out of memory.
    #[must_use]
    pub fn create_buffer(self, size: usize) -> bool {
        // SAFETY: s and its pool are live.
        unsafe {
            let s = self.raw();
            if (*s).buffer.is_null() {
                (*s).buffer = nginx_sys::ngx_create_temp_buf(self.pool(), size);
            }
            !(*s).buffer.is_null()
        }
    }

    /// A reply is still being sent.
    pub fn sending(self) -> bool {
        // SAFETY: s is live.
        unsafe { (*self.raw()).out.len != 0 }
    }

    pub fn set_blocked(self, on: bool) {
        // SAFETY: s is live.
        unsafe { (*self.raw()).set_blocked(on.into()) }
    }

    pub fn quitting(self) -> bool {
        // SAFETY: s is live.
        unsafe { (*self.raw()).quit() != 0 }
    }

    /// Sends what it can of `s->out` once (`ngx_mail_send`'s send).
    pub fn send_out(self) -> Sent {
        let c = self.client();
        // SAFETY: s->out is a static, conf or pool string of out.len bytes.
        let out = unsafe { bytes(&(*self.raw()).out) };
        if out.is_empty() {
            return Sent::All;
        }
        match c.send(out) {
            Io::Error => {
                self.close();
                Sent::Closed
            }
            Io::Done(n) => {
                let n = n.min(out.len());
                // SAFETY: n <= out.len, within the string.
                unsafe {
                    let s = self.raw();
                    (*s).out.data = (*s).out.data.add(n);
                    (*s).out.len -= n;
                }
                if n == out.len() {
                    Sent::All
                } else {
                    Sent::Partly
                }
            }
            Io::Again | Io::Closed => Sent::Partly,
        }
    }

    /// Counts an invalid command; true when it reached `max_errors`.
    pub fn count_error(self) -> bool {
        let max = self.core_conf().max_errors;
        // SAFETY: s is live.
        unsafe {
            let s = self.raw();
            (*s).errors += 1;
            (*s).errors >= max
        }
    }

    pub fn login(&self) -> &[u8] {
        // SAFETY: s->login is empty or a pool string.
        unsafe { bytes(&(*self.raw()).login) }
    }

    /// The password, or `None` when there is none at all (EXTERNAL, a
    /// salted digest already sent, `smtp_auth none`).
    pub fn passwd(&self) -> Option<&[u8]> {
        // SAFETY: s->passwd is absent or a pool string.
        unsafe {
            let p = &(*self.raw()).passwd;
            (!p.data.is_null()).then(|| bytes(p))
        }
    }

    /// Keeps a login and password (absent: `None`) in the pool; false when
    /// out of memory.
    #[must_use]
    pub fn set_credentials(self, login: &[u8], passwd: Option<&[u8]>) -> bool {
        let pool = self.pool_handle();
        let Some(login) = pool.str(login) else {
            return false;
        };
        let passwd = match passwd {
            Some(p) => match pool.str(p) {
                Some(p) => p,
                None => return false,
            },
            None => ABSENT,
        };
        // SAFETY: s is live; both strings live in its pool.
        unsafe {
            (*self.raw()).login = login;
            (*self.raw()).passwd = passwd;
        }
        true
    }

    /// Replaces the login (the auth server's `Auth-User`).
    #[must_use]
    pub fn set_login(self, login: &[u8]) -> bool {
        let Some(login) = self.pool_handle().str(login) else {
            return false;
        };
        // SAFETY: s is live; the string lives in its pool.
        unsafe { (*self.raw()).login = login };
        true
    }

    /// Replaces the password (the auth server's `Auth-Pass`).
    #[must_use]
    pub fn set_passwd(self, passwd: &[u8]) -> bool {
        let Some(passwd) = self.pool_handle().str(passwd) else {
            return false;
        };
        self.forget_password();
        // SAFETY: s is live; the string lives in its pool.
        unsafe { (*self.raw()).passwd = passwd };
        true
    }

    /// (`'static` because the core borrows its config for as long as the
    /// prebuilt replies; the salt is set once, before the first command,
    /// and read only within the handler that reads it.)
    pub fn salt(self) -> Option<&'static [u8]> {
        // SAFETY: s->salt is empty or a pool string.
        let salt = unsafe { bytes(&(*self.raw()).salt) };
        (!salt.is_empty()).then_some(salt)
    }

    #[must_use]
    pub fn set_salt(self, salt: &[u8]) -> bool {
        let Some(salt) = self.pool_handle().str(salt) else {
            return false;
        };
        // SAFETY: s is live; the string lives in its pool.
        unsafe { (*self.raw()).salt = salt };
        true
    }

    /// The client's name (SMTP), as the resolver left it.
    pub fn host(&self) -> &[u8] {
        // SAFETY: s->host is empty, static or a pool string.
        unsafe { bytes(&(*self.raw()).host) }
    }

    pub fn set_host_static(self, host: &'static [u8]) {
        // SAFETY: s is live; nginx never writes through s->host.
        unsafe {
            (*self.raw()).host = ngx_str_t {
                len: host.len(),
                data: host.as_ptr().cast_mut(),
            }
        }
    }

    #[must_use]
    pub fn set_host(self, host: &[u8]) -> bool {
        let Some(host) = self.pool_handle().str(host) else {
            return false;
        };
        // SAFETY: s is live; the string lives in its pool.
        unsafe { (*self.raw()).host = host };
        true
    }

    /// `smtp_auth none`: the envelope for the auth request and the backend,
    /// with no login or password at all.
    #[must_use]
    pub fn set_envelope(self, helo: &[u8], from: &[u8], to: &[u8]) -> bool {
        let pool = self.pool_handle();
        let (Some(helo), Some(from), Some(to)) = (pool.str(helo), pool.str(from), pool.str(to))
        else {
            return false;
        };
        // SAFETY: s is live; the strings live in its pool.
        unsafe {
            let s = self.raw();
            (*s).smtp_helo = helo;
            (*s).smtp_from = from;
            (*s).smtp_to = to;
            (*s).login = ABSENT;
            (*s).passwd = ABSENT;
        }
        true
    }

    /// HELO, MAIL FROM and RCPT TO of `smtp_auth none`.
    pub fn envelope(&self) -> (&[u8], &[u8], &[u8]) {
        // SAFETY: the three are empty or pool strings.
        unsafe {
            let s = self.raw();
            (
                bytes(&(*s).smtp_helo),
                bytes(&(*s).smtp_from),
                bytes(&(*s).smtp_to),
            )
        }
    }

    pub fn login_attempt(self) -> ngx_uint_t {
        // SAFETY: s is live.
        unsafe { (*self.raw()).login_attempt }
    }

    pub fn count_login_attempt(self) {
        // SAFETY: s is live.
        unsafe { (*self.raw()).login_attempt += 1 }
    }

    /// This server's `server_name`.
    pub fn server_name(&self) -> &[u8] {
        // SAFETY: a config string.
        unsafe { bytes(&self.core_conf().server_name) }
    }

    /// The client's address as text (`Client-IP`, XCLIENT `ADDR`).
    pub fn client_addr(&self) -> &[u8] {
        // SAFETY: the connection's address text lives in its pool.
        unsafe { bytes(&(*self.connection()).addr_text) }
    }

    /// The client's identity for `proxy_pass_client_info`: its address and
    /// port, the address and port it connected to, the connection number;
    /// `None` for a client that is not on IP.
    pub fn client_info(self) -> Option<mail_core::upstream::ClientInfo> {
        let (peer, local) = (self.client().peer_addr()?, self.client().local_addr()?);
        // SAFETY: the connection is live.
        let number = unsafe { (*self.connection()).number };
        Some(mail_core::upstream::ClientInfo {
            addr: self.client_addr().to_vec(),
            port: peer.port(),
            local_addr: local.ip().to_string().into_bytes(),
            local_port: local.port(),
            session: number.to_string().into_bytes(),
        })
    }

    pub fn client_is_ipv6(self) -> bool {
        // SAFETY: a live connection has its peer's address.
        unsafe { u32::from((*(*self.connection()).sockaddr).sa_family) == nginx_sys::AF_INET6 }
    }

    pub fn client_is_unix(self) -> bool {
        // SAFETY: as above.
        unsafe { u32::from((*(*self.connection()).sockaddr).sa_family) == nginx_sys::AF_UNIX }
    }

    /// The server's protocol name (`Auth-Protocol`).
    pub fn protocol_name(&self) -> &[u8] {
        // SAFETY: a served server's protocol is set at configuration and
        // lives as long as it.
        unsafe { bytes(&(*self.core_conf().protocol).name) }
    }

    /// The protocol's auth-state handler: the way back after a refusal.
    pub fn protocol_auth_state(self) -> Option<crate::nginx::Handler> {
        // SAFETY: as above.
        unsafe { (*self.core_conf().protocol).auth_state }
    }

    /// What the client's PROXY header said, if it sent one.
    pub fn proxy_protocol(&self) -> Option<mail_core::auth_http::ProxyProtocolInfo<'_>> {
        // SAFETY: c->proxy_protocol is null or lives in the connection's pool.
        unsafe {
            let pp = (*self.connection()).proxy_protocol;
            (!pp.is_null()).then(|| mail_core::auth_http::ProxyProtocolInfo {
                src_addr: bytes(&(*pp).src_addr),
                src_port: (*pp).src_port,
                dst_addr: bytes(&(*pp).dst_addr),
                dst_port: (*pp).dst_port,
            })
        }
    }

    /// The client's IP address (none for a unix socket).
    pub fn client_ip(self) -> Option<std::net::IpAddr> {
        // SAFETY: a live connection has its peer's address.
        unsafe {
            let c = self.connection();
            crate::resolve::ip_of((*c).sockaddr, (*c).socklen)
        }
    }

    /// Starts `query` as the PTR lookup of the client's address; false
    /// when nginx could not (and freed it).
    #[must_use]
    pub fn lookup_client_address(self, query: crate::resolve::Query) -> bool {
        // SAFETY: the connection's address lives as long as the session,
        // which cancels the lookup if it ends first.
        unsafe {
            let c = self.connection();
            query.reverse((*c).sockaddr, (*c).socklen)
        }
    }

    /// Starts `query` as the forward lookup of `s->host`; false as above.
    #[must_use]
    pub fn lookup_client_host(self, query: crate::resolve::Query) -> bool {
        // SAFETY: s->host lives in the pool, as long as the session.
        unsafe { query.forward((*self.raw()).host) }
    }

    /// Keeps the lookup in flight where stock keeps it.
    pub fn set_resolver_ctx(self, query: Option<crate::resolve::Query>) {
        // SAFETY: s is live.
        unsafe {
            (*self.raw()).resolver_ctx = query.map_or(ptr::null_mut(), |q| q.raw());
        }
    }

    /// The client's read event.
    pub fn read_event(self) -> Event {
        self.client().read()
    }

    /// The client's write event.
    pub fn write_event(self) -> Event {
        self.client().write()
    }
}

impl Session {
    /// The `Auth-SSL-*` facts of a TLS client, their strings in `pool` (the
    /// auth request's); `None` for a plain one.
    #[cfg(ngx_mail_ssl)]
    pub fn client_tls(
        self,
        pool: Pool,
        pass_cert: bool,
    ) -> Option<mail_core::auth_http::SslInfo<'static>> {
        use nginx_sys::{
            ngx_connection_t, ngx_int_t, ngx_pool_t, ngx_ssl_get_cipher_name,
            ngx_ssl_get_client_verify, ngx_ssl_get_fingerprint, ngx_ssl_get_issuer_dn,
            ngx_ssl_get_protocol, ngx_ssl_get_raw_certificate, ngx_ssl_get_serial_number,
            ngx_ssl_get_subject_dn,
        };
        type Getter = unsafe extern "C" fn(
            *mut ngx_connection_t,
            *mut ngx_pool_t,
            *mut ngx_str_t,
        ) -> ngx_int_t;

        let c = self.connection();
        if !self.client().is_tls() {
            return None;
        }
        let get = |f: Getter| -> &'static [u8] {
            let mut s = ABSENT;
            // SAFETY: c is a live TLS connection; the getter allocates the
            // string in the auth request's pool, which outlives its use.
            unsafe {
                if f(c, pool.raw(), &mut s) != 0 {
                    return &[];
                }
                bytes(&s)
            }
        };
        // these two return a static C string and leave the length unset
        let c_string = |f: Getter| -> &'static [u8] {
            let mut s = ABSENT;
            // SAFETY: as above; the string is static and NUL-terminated.
            unsafe {
                if f(c, pool.raw(), &mut s) != 0 || s.data.is_null() {
                    return &[];
                }
                core::ffi::CStr::from_ptr(s.data.cast()).to_bytes()
            }
        };
        let mut info = mail_core::auth_http::SslInfo {
            protocol: c_string(ngx_ssl_get_protocol),
            cipher: c_string(ngx_ssl_get_cipher_name),
            ..Default::default()
        };
        if self.conf::<crate::bindings::ngx_mail_ssl_conf_t>().verify != 0 {
            info.verify = get(ngx_ssl_get_client_verify);
            info.subject = get(ngx_ssl_get_subject_dn);
            info.issuer = get(ngx_ssl_get_issuer_dn);
            info.serial = get(ngx_ssl_get_serial_number);
            info.fingerprint = get(ngx_ssl_get_fingerprint);
            info.fingerprint_sha256 = self.client().peer_cert_sha256(pool);
            if pass_cert {
                let raw = get(ngx_ssl_get_raw_certificate);
                if !raw.is_empty() {
                    let mut escaped = Vec::new();
                    mail_core::auth_http::escape(raw, &mut escaped);
                    if let Some(e) = pool.str(&escaped) {
                        // SAFETY: the copy lives in the request's pool.
                        info.cert = unsafe { bytes(&e) };
                    }
                }
            }
        }
        Some(info)
    }

    #[cfg(not(ngx_mail_ssl))]
    pub fn client_tls(
        self,
        _pool: Pool,
        _pass_cert: bool,
    ) -> Option<mail_core::auth_http::SslInfo<'static>> {
        None
    }
}
