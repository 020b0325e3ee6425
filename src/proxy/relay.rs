//! Pass-through after login (`ngx_mail_proxy_handler`): one buffer per
//! direction, reads only into free space (back-pressure), and a side that
//! closes only ends the session once what it sent has been delivered.

use core::ptr;

use nginx_sys::{
    ngx_add_timer, ngx_buf_t, ngx_connection_t, ngx_del_timer, ngx_event_t, ngx_handle_read_event,
    ngx_handle_write_event, ngx_post_event, ngx_posted_events,
};

use super::module;
use super::splice;
use super::upstream::close_upstream;
use crate::ffi::{log, ETIMEDOUT, LOG_INFO, NGX_AGAIN, NGX_ERROR};
use crate::mail_log;
use crate::session::Session;

/// Logged in: switch both connections to the relay.
pub fn start(sess: Session) {
    let s = sess.raw();
    let c = sess.connection();
    let pcf = module::conf(sess);
    // SAFETY: s, c, s->proxy and both buffers are live.
    unsafe {
        let uc = (*(*s).proxy).upstream.connection;
        // nothing of the login is needed any more: an idle proxied session
        // holds what a stock one does
        sess.drop_ctx();
        // As stock: the client's command buffer carries the client's side
        // (with anything it pipelined), so an idle session holds no more
        // memory than a stock one (128 bytes for POP3, a page for IMAP/SMTP).
        let pending = (*(*s).buffer).last.offset_from((*(*s).buffer).pos) as usize;

        (*(*c).read).handler = Some(handler);
        (*(*c).write).handler = Some(handler);
        (*(*uc).read).handler = Some(handler);
        (*(*uc).write).handler = Some(handler);
        ngx_add_timer((*c).read, pcf.timeout);
        if (*(*uc).read).timer_set() != 0 {
            ngx_del_timer((*uc).read);
        }
        (*(*c).log).action = ptr::null_mut();
        mail_log!(LOG_INFO, (*c).log, "client logged in");
        if pending > 0 || (*(*c).read).ready() != 0 {
            ngx_post_event((*uc).write, ptr::addr_of_mut!(ngx_posted_events));
        }
        handler((*c).write);
    }
}

fn empty(b: *mut ngx_buf_t) -> bool {
    // SAFETY: b is a live buffer.
    unsafe { (*b).pos == (*b).last }
}

unsafe extern "C" fn handler(ev: *mut ngx_event_t) {
    // SAFETY: ev belongs to one of the two connections; both hold the session.
    let c = unsafe { (*ev).data.cast::<ngx_connection_t>() };
    // SAFETY: as above.
    let sess = unsafe { Session((*c).data.cast()) };
    let s = sess.raw();
    let client = sess.connection();
    // SAFETY: all pointers below are live until close() is called, after
    // which this function returns at once.
    unsafe {
        let uc = (*(*s).proxy).upstream.connection;
        if (*ev).timedout() != 0 || (*c).close() != 0 {
            sess.set_action(c"proxying");
            if (*c).close() != 0 {
                mail_log!(LOG_INFO, (*c).log, "shutdown timeout");
            } else if c == client {
                log(LOG_INFO, (*c).log, ETIMEDOUT, b"client timed out");
                (*c).set_timedout(1);
            } else {
                log(LOG_INFO, (*c).log, ETIMEDOUT, b"upstream timed out");
            }
            return close(sess);
        }
        let writing = (*ev).write() != 0;
        let from_upstream = (c == client) == writing;
        let (src, dst, b, recv_action, send_action) = if from_upstream {
            (
                uc,
                client,
                (*(*s).proxy).buffer,
                c"proxying and reading from upstream",
                c"proxying and sending to client",
            )
        } else {
            (
                client,
                uc,
                (*s).buffer,
                c"proxying and reading from client",
                c"proxying and sending to upstream",
            )
        };
        let mut do_write = writing;
        loop {
            let spliced = splice::active(sess, from_upstream);
            if do_write || spliced {
                let size = (*b).last.offset_from((*b).pos) as usize;
                if size > 0 && (*(*dst).write).ready() != 0 {
                    (*(*c).log).action = send_action.as_ptr().cast_mut();
                    let Some(send) = (*dst).send else {
                        return close(sess);
                    };
                    let n = send(dst, (*b).pos, size);
                    if n == NGX_ERROR {
                        return close(sess);
                    }
                    if n > 0 {
                        (*b).pos = (*b).pos.add(n as usize);
                        if (*b).pos == (*b).last {
                            (*b).pos = (*b).start;
                            (*b).last = (*b).start;
                        }
                    }
                }
            }
            if spliced {
                // what the buffer holds came first and goes first
                if !empty(b) {
                    break;
                }
                (*(*c).log).action = recv_action.as_ptr().cast_mut();
                match splice::step(sess, from_upstream, src, dst) {
                    splice::Step::Progress => continue,
                    splice::Step::Wait => break,
                    splice::Step::Failed => return close(sess),
                }
            }
            let room = (*b).end.offset_from((*b).last) as usize;
            if room > 0 && (*(*src).read).ready() != 0 {
                (*(*c).log).action = recv_action.as_ptr().cast_mut();
                let Some(recv) = (*src).recv else {
                    return close(sess);
                };
                let n = recv(src, (*b).last, room);
                if n == NGX_AGAIN || n == 0 {
                    break;
                }
                if n > 0 {
                    do_write = true;
                    (*b).last = (*b).last.add(n as usize);
                    if (*b).last == (*b).end {
                        bulk_nodelay(sess, dst);
                        splice::start(sess, from_upstream, src, dst);
                    }
                    continue;
                }
                if n == NGX_ERROR {
                    (*(*src).read).set_eof(1);
                }
            }
            break;
        }
        sess.set_action(c"proxying");
        let client_done =
            (*(*client).read).eof() != 0 && empty((*s).buffer) && splice::held(sess, false) == 0;
        let upstream_done = (*(*uc).read).eof() != 0
            && empty((*(*s).proxy).buffer)
            && splice::held(sess, true) == 0;
        let both_eof = (*(*client).read).eof() != 0 && (*(*uc).read).eof() != 0;
        if client_done || upstream_done || both_eof {
            (*(*c).log).action = ptr::null_mut();
            mail_log!(LOG_INFO, (*c).log, "proxied session done");
            sess.set_action(c"proxying");
            return close(sess);
        }
        if ngx_handle_write_event((*dst).write, 0) != 0
            || ngx_handle_read_event((*dst).read, 0) != 0
            || ngx_handle_write_event((*src).write, 0) != 0
            || ngx_handle_read_event((*src).read, 0) != 0
        {
            return close(sess);
        }
        if c == client {
            ngx_add_timer((*c).read, module::conf(sess).timeout);
        }
    }
}

/// A buffer filled by one read means a bulk transfer: then Nagle would hold
/// its last short segment for the peer's delayed ACK (40 ms on Linux), which
/// stock leaves on. nginx's http and stream proxies set TCP_NODELAY; we set it
/// on the sending side once bulk data flows, so sessions that only trade
/// short commands make no extra system call.
unsafe fn bulk_nodelay(sess: Session, dst: *mut ngx_connection_t) {
    // SAFETY: dst is one of the session's two live connections; a peer
    // connection has no sockaddr of its own, the peer's says its family.
    unsafe {
        if (*dst).tcp_nodelay() != nginx_sys::ngx_connection_tcp_nodelay_e_NGX_TCP_NODELAY_UNSET {
            return;
        }
        let addr = if dst == sess.connection() {
            (*dst).sockaddr
        } else {
            (*(*sess.raw()).proxy).upstream.sockaddr
        };
        if addr.is_null() {
            return;
        }
        let family = u32::from((*addr).sa_family);
        if family == nginx_sys::AF_INET || family == nginx_sys::AF_INET6 {
            // a failure is logged by nginx and costs only latency
            let _ = nginx_sys::ngx_tcp_nodelay(dst);
        }
    }
}

fn close(sess: Session) {
    close_upstream(sess);
    sess.close();
}
