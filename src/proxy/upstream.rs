//! Connecting to the backend the auth server named, and the login dialogue
//! (`ngx_mail_proxy_init` and the per-protocol proxy handlers).

use core::ptr;
use std::net::SocketAddr;

use mail_core::pop3::UpstreamStep;

use super::login::LoginState;
use crate::state::Handover;
use nginx_sys::{
    ngx_add_timer, ngx_connection_t, ngx_create_temp_buf, ngx_event_connect_peer,
    ngx_event_get_peer, ngx_event_t, ngx_handle_read_event, ngx_handle_write_event, ngx_pcalloc,
    ngx_post_event, ngx_posted_events, ngx_proxy_protocol_write, ngx_str_t, sockaddr, sockaddr_in,
    sockaddr_in6, socklen_t,
};

#[cfg(not(ngx_proxy_protocol_v1_max))]
use nginx_sys::NGX_PROXY_PROTOCOL_MAX_HEADER as PROXY_V1_MAX_HEADER;
#[cfg(ngx_proxy_protocol_v1_max)]
use nginx_sys::NGX_PROXY_PROTOCOL_V1_MAX_HEADER as PROXY_V1_MAX_HEADER;

use super::conf;
use crate::bindings::ngx_mail_proxy_ctx_t;
use crate::ffi::{
    log, shown, ETIMEDOUT, LOG_ERR, LOG_INFO, NGX_AGAIN, NGX_BUSY, NGX_DECLINED, NGX_ERROR,
};
use crate::mail_log;
use crate::session::Session;

fn proxy(sess: Session) -> *mut ngx_mail_proxy_ctx_t {
    // SAFETY: s is live; s->proxy is set by connect() before any handler here.
    unsafe { (*sess.raw()).proxy }
}

fn upstream(sess: Session) -> *mut ngx_connection_t {
    let p = proxy(sess);
    if p.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: p is live.
    unsafe { (*p).upstream.connection }
}

pub fn internal_server_error(sess: Session) {
    sess.close_upstream();
    sess.internal_server_error();
}

/// The backend failed during login: the client gets `s->out` if the
/// backend's own error was kept, else the protocol's internal error.
fn upstream_error(sess: Session) {
    sess.close_upstream();
    // SAFETY: s is live.
    if unsafe { (*sess.raw()).out.len } == 0 {
        return sess.internal_server_error();
    }
    sess.set_quit();
    sess.send();
}

/// The proxy context and the backend's `ngx_str_t` name in one pool
/// allocation: 176 bytes, the most a 256-byte pool block serves itself.
#[repr(C)]
struct ProxyAlloc {
    proxy: ngx_mail_proxy_ctx_t,
    name: ngx_str_t,
}

/// The backend's sockaddr with its name's bytes right behind it, in one
/// pool allocation.
fn peer_addr(
    sess: Session,
    addr: SocketAddr,
    name: &[u8],
) -> Option<(*mut sockaddr, socklen_t, ngx_str_t)> {
    let socklen = match addr {
        SocketAddr::V4(_) => size_of::<sockaddr_in>(),
        SocketAddr::V6(_) => size_of::<sockaddr_in6>(),
    };
    // SAFETY: the pool is live; the block has socklen + name.len() zeroed
    // bytes, aligned for a sockaddr; the structs are plain C data.
    unsafe {
        let block = ngx_pcalloc(sess.pool(), socklen + name.len()).cast::<u8>();
        if block.is_null() {
            return None;
        }
        match addr {
            SocketAddr::V4(a) => {
                let sin = block.cast::<sockaddr_in>();
                (*sin).sin_family = nginx_sys::AF_INET as _;
                (*sin).sin_port = a.port().to_be();
                (*sin).sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            }
            SocketAddr::V6(a) => {
                let sin6 = block.cast::<sockaddr_in6>();
                (*sin6).sin6_family = nginx_sys::AF_INET6 as _;
                (*sin6).sin6_port = a.port().to_be();
                (*sin6).sin6_addr.__in6_u.__u6_addr8 = a.ip().octets();
            }
        }
        let text = block.add(socklen);
        ptr::copy_nonoverlapping(name.as_ptr(), text, name.len());
        let name = ngx_str_t {
            len: name.len(),
            data: text,
        };
        Some((block.cast(), socklen as socklen_t, name))
    }
}

/// `ngx_mail_proxy_init`: connect to `addr`, then run the login dialogue.
pub fn connect(sess: Session, addr: SocketAddr, name: &[u8], handover: Handover) {
    sess.set_action(c"connecting to upstream");
    let c = sess.connection();
    let pcf = conf::conf(sess);
    // SAFETY: s, c and the pool are live; everything allocated here lives in
    // the connection pool.
    unsafe {
        let s = sess.raw();
        let both = ngx_pcalloc(sess.pool(), size_of::<ProxyAlloc>()).cast::<ProxyAlloc>();
        let Some((sa, len, n)) = peer_addr(sess, addr, name) else {
            return sess.internal_server_error();
        };
        if both.is_null() {
            return sess.internal_server_error();
        }
        let p = &raw mut (*both).proxy;
        let name_str = &raw mut (*both).name;
        *name_str = n;
        (*s).proxy = p;
        (*p).upstream.sockaddr = sa;
        (*p).upstream.socklen = len;
        (*p).upstream.name = name_str;
        (*p).upstream.get = Some(ngx_event_get_peer);
        (*p).upstream.log = (*c).log;
        (*p).upstream.set_log_error(1); // NGX_ERROR_ERR

        sess.set_state(LoginState::new(sess, &handover));

        let rc = ngx_event_connect_peer(&mut (*p).upstream);
        if rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED {
            return internal_server_error(sess);
        }
        let uc = (*p).upstream.connection;
        ngx_add_timer((*uc).read, sess.core_conf().timeout);
        (*uc).data = s.cast();
        (*uc).pool = (*c).pool;
        (*(*c).read).handler = Some(block_read);
        (*(*uc).write).handler = Some(write_handler);
        (*p).buffer = ngx_create_temp_buf(sess.pool(), pcf.buffer_size);
        if (*p).buffer.is_null() {
            return internal_server_error(sess);
        }
        (*p).proxy_protocol = pcf.proxy_protocol as _;
        (*s).out.len = 0;
        (*(*uc).read).handler = Some(login_handler);
        if rc == NGX_AGAIN {
            return;
        }
        write_handler((*uc).write);
    }
}

unsafe extern "C" fn block_read(rev: *mut ngx_event_t) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let sess = unsafe { Session::of((*rev).data.cast()) };
    // SAFETY: the client connection is live.
    if unsafe { (*sess.connection()).close() } != 0 {
        sess.close_upstream();
        let _ = sess.ends_at_shutdown();
        return;
    }
    // SAFETY: rev is the client's read event.
    if unsafe { ngx_handle_read_event(rev, 0) } != 0 {
        sess.close_upstream();
        sess.close();
    }
}

/// The backend connection is marked `close` at `worker_shutdown_timeout`
/// during the login dialogue: the session ends. True when it did.
fn ends_at_shutdown(uc: *mut ngx_connection_t, sess: Session) -> bool {
    // SAFETY: uc is the session's live backend connection.
    if unsafe { (*uc).close() } == 0 {
        return false;
    }
    sess.close_upstream();
    // SAFETY: the client connection is live.
    unsafe { (*sess.connection()).set_close(1) };
    sess.ends_at_shutdown()
}

unsafe extern "C" fn write_handler(wev: *mut ngx_event_t) {
    // SAFETY: wev is the upstream's write event; its data is the session.
    let (uc, sess) = unsafe {
        let uc = (*wev).data.cast::<ngx_connection_t>();
        (uc, Session::of(uc))
    };
    if ends_at_shutdown(uc, sess) {
        return;
    }
    let p = proxy(sess);
    // SAFETY: p is live.
    if unsafe { (*p).proxy_protocol } != 0 {
        if !send_proxy_protocol(sess) {
            return;
        }
        // SAFETY: as above.
        unsafe { (*p).proxy_protocol = 0 };
    }
    // SAFETY: uc is live.
    unsafe {
        if ngx_handle_write_event(wev, 0) != 0 {
            return internal_server_error(sess);
        }
        if (*(*uc).read).ready() != 0 {
            ngx_post_event((*uc).read, ptr::addr_of_mut!(ngx_posted_events));
        }
    }
}

/// Sends the PROXY v1 header in one write; false when the caller must stop.
fn send_proxy_protocol(sess: Session) -> bool {
    sess.set_action(c"sending PROXY protocol header to upstream");
    let mut buf = [0u8; PROXY_V1_MAX_HEADER as usize];
    let uc = upstream(sess);
    // SAFETY: the client connection and uc are live; the header fits buf.
    unsafe {
        let range = buf.as_mut_ptr_range();
        let end = ngx_proxy_protocol_write(sess.connection(), range.start, range.end);
        if end.is_null() {
            internal_server_error(sess);
            return false;
        }
        let size = end.offset_from(buf.as_ptr()) as isize;
        let Some(send) = (*uc).send else {
            internal_server_error(sess);
            return false;
        };
        let n = send(uc, buf.as_mut_ptr(), size as usize);
        if n == NGX_AGAIN {
            if ngx_handle_write_event((*uc).write, 0) != 0 {
                internal_server_error(sess);
            }
            return false;
        }
        if n != size {
            if n != NGX_ERROR {
                mail_log!(
                    LOG_ERR,
                    sess.log(),
                    "could not send PROXY protocol header at once"
                );
            }
            internal_server_error(sess);
            return false;
        }
    }
    true
}

/// Reads the backend's replies and answers them until logged in.
unsafe extern "C" fn login_handler(rev: *mut ngx_event_t) {
    // SAFETY: rev is the upstream's read event; its data is the session.
    let (uc, sess) = unsafe {
        let uc = (*rev).data.cast::<ngx_connection_t>();
        (uc, Session::of(uc))
    };
    if ends_at_shutdown(uc, sess) {
        return;
    }
    // SAFETY: rev and uc are live.
    unsafe {
        if (*rev).timedout() != 0 {
            log(LOG_INFO, (*uc).log, ETIMEDOUT, b"upstream timed out");
            (*uc).set_timedout(1);
            return internal_server_error(sess);
        }
    }
    let p = proxy(sess);
    // SAFETY: p is live; the header must go out before anything is read.
    if unsafe { (*p).proxy_protocol } != 0 {
        // SAFETY: as above.
        if unsafe { ngx_handle_read_event((*uc).read, 0) } != 0 {
            internal_server_error(sess);
        }
        return;
    }
    sess.set_action(c"reading response from upstream");
    // SAFETY: the proxy buffer is live; recv writes at most end - last.
    let (data, full) = unsafe {
        let b = (*p).buffer;
        let room = (*b).end.offset_from((*b).last) as usize;
        let Some(recv) = (*uc).recv else {
            return upstream_error(sess);
        };
        let n = recv(uc, (*b).last, room);
        if n == NGX_ERROR || n == 0 {
            return upstream_error(sess);
        }
        if n == NGX_AGAIN {
            if ngx_handle_read_event((*uc).read, 0) != 0 {
                internal_server_error(sess);
            }
            return;
        }
        (*b).last = (*b).last.add(n as usize);
        let len = (*b).last.offset_from((*b).pos) as usize;
        (
            core::slice::from_raw_parts((*b).pos, len),
            (*b).last == (*b).end,
        )
    };
    // the step is taken with the dialogue borrowed; what may end the
    // session runs after
    let stepped = sess.with_state(|dialogue: &mut LoginState| {
        let step = dialogue.on_data(data, full);
        (step, dialogue.action())
    });
    let Some((step, action)) = stepped else {
        return internal_server_error(sess);
    };
    match step {
        UpstreamStep::NeedMore => {
            // SAFETY: uc is live.
            if unsafe { ngx_handle_read_event((*uc).read, 0) } != 0 {
                internal_server_error(sess);
            }
        }
        UpstreamStep::TooLong => {
            mail_log!(
                LOG_ERR,
                sess.log(),
                "upstream sent too long response line: \"{}\"",
                shown(data)
            );
            upstream_error(sess);
        }
        UpstreamStep::Refused { line } => {
            if conf::conf(sess).pass_error_message == 0 {
                mail_log!(
                    LOG_ERR,
                    sess.log(),
                    "upstream sent invalid response: \"{}\"",
                    shown(&line)
                );
            } else {
                mail_log!(
                    LOG_INFO,
                    sess.log(),
                    "upstream sent invalid response: \"{}\"",
                    shown(&line)
                );
                if !sess.set_out(data) {
                    return internal_server_error(sess);
                }
            }
            upstream_error(sess);
        }
        UpstreamStep::Send(line) => {
            sess.set_action(action);
            // SAFETY: uc and the proxy buffer are live.
            unsafe {
                let Some(send) = (*uc).send else {
                    return internal_server_error(sess);
                };
                // an incomplete write of one short line is treated as an
                // error, as stock does
                if send(uc, line.as_ptr().cast_mut(), line.len()) < line.len() as isize {
                    return internal_server_error(sess);
                }
                if ngx_handle_read_event((*uc).read, 0) != 0 {
                    return internal_server_error(sess);
                }
                let b = (*p).buffer;
                (*b).pos = (*b).start;
                (*b).last = (*b).start;
            }
        }
        UpstreamStep::LoggedIn => {
            sess.forget_login();
            super::relay::start(sess)
        }
        UpstreamStep::LoggedInReplacing(reply) => {
            // SAFETY: the proxy buffer is live; proxy_buffer is at least a
            // page, far more than this one reply line.
            unsafe {
                let b = (*p).buffer;
                let room = (*b).end.offset_from((*b).start) as usize;
                if reply.len() > room {
                    return internal_server_error(sess);
                }
                ptr::copy_nonoverlapping(reply.as_ptr(), (*b).start, reply.len());
                (*b).pos = (*b).start;
                (*b).last = (*b).start.add(reply.len());
            }
            sess.forget_login();
            super::relay::start(sess)
        }
        UpstreamStep::Failed(reason) => {
            mail_log!(LOG_ERR, sess.log(), "{}", reason);
            internal_server_error(sess)
        }
    }
}
