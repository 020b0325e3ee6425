//! Pass-through after login (`ngx_mail_proxy_handler`): one buffer per
//! direction, reads only into free space (back-pressure).
//!
//! Each direction ends on its own. When a side closes its write half (EOF
//! on read), what it sent is delivered, then the socket towards the other
//! side is shut for writing, and the other direction goes on until it ends
//! too, fails, or `proxy_timeout` passes: a client may send its last
//! command and shut down, a backend may end its output and still read.
//! Stock closes the whole session once one side's data is delivered,
//! losing what the other side still sends. An error reading a side still
//! ends the session (once what it sent before is delivered), as does any
//! error sending. Sessions with TLS keep stock's rule (see `half_close`).

use core::ffi::c_int;
use core::ptr;

use nginx_sys::{
    ngx_add_timer, ngx_buf_t, ngx_connection_t, ngx_del_timer, ngx_event_t, ngx_handle_read_event,
    ngx_handle_write_event, ngx_int_t, ngx_post_event, ngx_posted_events, ngx_uint_t,
};

use super::buffers;
use super::conf;
use super::splice;
use crate::ffi::{log, ETIMEDOUT, LOG_INFO, NGX_AGAIN, NGX_ERROR};
use crate::limit::rate;
use crate::mail_log;
use crate::nginx::Event;
use crate::session::Session;

/// Logged in: switch both connections to the relay.
pub fn start(sess: Session) {
    let s = sess.raw();
    let c = sess.connection();
    let pcf = conf::conf(sess);
    // SAFETY: s, c, s->proxy and both buffers are live.
    unsafe {
        let uc = (*(*s).proxy).upstream.connection;
        // nothing of the login is needed any more: an idle proxied session
        // holds what a stock one does
        sess.clear_states();
        rate::start(sess);
        // As stock: the client's command buffer carries the client's side
        // (with anything it pipelined); once drained, it is given back
        // like the backend's (`buffers`).
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

/// The two directions, as the debug log names them.
const FROM_CLIENT: &str = "client to upstream";
const FROM_UPSTREAM: &str = "upstream to client";

fn empty(b: *mut ngx_buf_t) -> bool {
    // SAFETY: b is a live buffer.
    unsafe { (*b).pos == (*b).last }
}

unsafe extern "C" fn handler(ev: *mut ngx_event_t) {
    // SAFETY: ev belongs to one of the two connections; both hold the session.
    let c = unsafe { (*ev).data.cast::<ngx_connection_t>() };
    // SAFETY: as above.
    let sess = unsafe { Session::of(c) };
    let s = sess.raw();
    let client = sess.connection();
    // SAFETY: all pointers below are live until close() is called, after
    // which this function returns at once.
    unsafe {
        let uc = (*(*s).proxy).upstream.connection;
        // a write held back by limit_rate whose wait is over
        if (*ev).delayed() != 0 && (*ev).timedout() != 0 {
            (*ev).set_delayed(0);
            (*ev).set_timedout(0);
        }
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
        crate::mail_debug!(
            (*c).log,
            "mail proxy handler: {}, #{} > #{}",
            u8::from(from_upstream),
            (*if from_upstream { uc } else { client }).fd,
            (*if from_upstream { client } else { uc }).fd
        );
        let (src, dst, b, side, recv_action, send_action) = if from_upstream {
            (
                uc,
                client,
                (*(*s).proxy).buffer,
                FROM_UPSTREAM,
                c"proxying and reading from upstream",
                c"proxying and sending to client",
            )
        } else {
            (
                client,
                uc,
                (*s).buffer,
                FROM_CLIENT,
                c"proxying and reading from client",
                c"proxying and sending to upstream",
            )
        };
        let mut do_write = writing;
        loop {
            let spliced = splice::active(sess, from_upstream);
            if do_write || spliced {
                let size = (*b).last.offset_from((*b).pos) as usize;
                let wev = Event::from_raw((*dst).write);
                if size > 0 && wev.ready() && !wev.delayed() {
                    let size = if from_upstream {
                        rate::allow(sess, wev, size)
                    } else {
                        size
                    };
                    if size == 0 {
                        break;
                    }
                    (*(*c).log).action = send_action.as_ptr().cast_mut();
                    let Some(send) = (*dst).send else {
                        return close(sess);
                    };
                    let n = send(dst, (*b).pos, size);
                    if n == NGX_ERROR {
                        return close(sess);
                    }
                    if n > 0 {
                        if from_upstream {
                            rate::sent(sess, wev, n as usize);
                        }
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
            if (*(*src).read).ready() != 0 && !buffers::acquire(sess.pool(), b, side) {
                return close(sess);
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
                        // a paced direction stays on its buffer
                        if !(from_upstream && rate::limited(sess)) {
                            splice::start(sess, from_upstream, src, dst);
                        }
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
        // a direction is over once its source ended and all it sent is out
        let client_over =
            (*(*client).read).eof() != 0 && empty((*s).buffer) && splice::held(sess, false) == 0;
        let upstream_over = (*(*uc).read).eof() != 0
            && empty((*(*s).proxy).buffer)
            && splice::held(sess, true) == 0;
        let done = if half_close(client, uc) {
            // both over, or one over that ended in an error
            (client_over && (upstream_over || (*(*client).read).error() != 0))
                || (upstream_over && (*(*uc).read).error() != 0)
        } else {
            client_over
                || upstream_over
                || ((*(*client).read).eof() != 0 && (*(*uc).read).eof() != 0)
        };
        if done {
            (*(*c).log).action = ptr::null_mut();
            mail_log!(LOG_INFO, (*c).log, "proxied session done");
            sess.set_action(c"proxying");
            return close(sess);
        }
        // a drained direction holds no memory while it waits
        buffers::release(sess.pool(), (*s).buffer, FROM_CLIENT);
        buffers::release(sess.pool(), (*(*s).proxy).buffer, FROM_UPSTREAM);
        // only reached with half_close(): pass each end on, once
        if (client_over && !shut_write(uc)) || (upstream_over && !shut_write(client)) {
            return close(sess);
        }
        if ngx_handle_write_event((*dst).write, 0) != 0
            || handle_read_event((*dst).read) != 0
            || ngx_handle_write_event((*src).write, 0) != 0
            || handle_read_event((*src).read) != 0
        {
            return close(sess);
        }
        if c == client {
            ngx_add_timer((*c).read, conf::conf(sess).timeout);
        }
    }
}

/// Whether a side's end may be passed on as a half-close. Only when both
/// connections are plain TCP: a TLS connection cannot be half-closed by
/// shutdown(2), which would cut the record stream under TLS without a
/// close_notify (a truncation to the peer), and nginx's TLS layer has no
/// write-only close. A session with TLS on the client side (`listen ssl`,
/// STARTTLS) keeps stock's rule: it ends once either side's data is
/// delivered.
unsafe fn half_close(client: *mut ngx_connection_t, uc: *mut ngx_connection_t) -> bool {
    // SAFETY: both connections are live.
    unsafe { (*client).ssl.is_null() && (*uc).ssl.is_null() }
}

/// Shuts `c`'s socket for writing, once: what was sent goes out, then a
/// FIN. Its write event's eof flag, which nginx's send paths never look
/// at, records that it was done. False when shutdown(2) failed (logged).
unsafe fn shut_write(c: *mut ngx_connection_t) -> bool {
    // SAFETY: c is live; its descriptor is open until the session closes.
    unsafe {
        let wev = (*c).write;
        if (*wev).eof() != 0 {
            return true;
        }
        if nginx_sys::shutdown((*c).fd, nginx_sys::SHUT_WR as c_int) == -1 {
            let err = *nginx_sys::__errno_location();
            nginx_sys::ngx_connection_error(c, err, c"shutdown() failed".as_ptr().cast_mut());
            return false;
        }
        (*wev).set_eof(1);
        true
    }
}

/// `ngx_handle_read_event`, but a read that reached its end is only ever
/// taken off the event method, never put back: a level-triggered one
/// (poll, select) would report it for ever while the other direction goes
/// on. With epoll's edge-triggered events it is the same call as before.
unsafe fn handle_read_event(rev: *mut ngx_event_t) -> ngx_int_t {
    // SAFETY: rev is the read event of one of the session's live connections.
    unsafe {
        if (*rev).eof() == 0 {
            ngx_handle_read_event(rev, 0)
        } else if (*rev).active() != 0 {
            ngx_handle_read_event(rev, nginx_sys::NGX_CLOSE_EVENT as ngx_uint_t)
        } else {
            0
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
    sess.ended();
    sess.close_upstream();
    sess.close();
}
