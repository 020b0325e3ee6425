//! `auth_http_keepalive`: idle connections to auth servers, per worker,
//! kept between logins the way the http upstream keepalive module keeps
//! them (`ngx_http_upstream_keepalive_module`): an idle connection has no
//! session; any event on it (data nobody asked for, the server's close, the
//! idle timer, a graceful shutdown) closes it.

use core::cell::RefCell;

use nginx_sys::{ngx_addr_t, ngx_event_t, ngx_msec_t};

use crate::nginx::{Conn, Event, Io};

struct Idle {
    c: Conn,
    /// The auth server's socket address, as bytes.
    key: Vec<u8>,
}

thread_local! {
    /// nginx workers are single-threaded: this is the worker's list, the
    /// most recently kept last.
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

fn key_of(addr: &ngx_addr_t) -> Vec<u8> {
    // SAFETY: the configuration's address: socklen bytes at sockaddr.
    unsafe { core::slice::from_raw_parts(addr.sockaddr.cast::<u8>(), addr.socklen as usize) }
        .to_vec()
}

fn cycle_log() -> *mut nginx_sys::ngx_log_t {
    // SAFETY: ngx_cycle is set for the process's life.
    unsafe { (*nginx_sys::ngx_cycle).log }
}

/// A worker that is exiting keeps nothing: an idle connection's timer
/// would hold the exit back until it ran out.
fn shutting_down() -> bool {
    // SAFETY: plain flags nginx's signal handling sets in this process.
    unsafe { nginx_sys::ngx_exiting != 0 || nginx_sys::ngx_terminate != 0 }
}

/// An idle connection to `addr`, the most recently used first; `None`
/// when there is none. A connection that has something to read (the
/// server closed it, or sent what nobody asked for) before its read
/// handler ran is closed here rather than handed out.
pub fn take(addr: &ngx_addr_t) -> Option<Conn> {
    let key = key_of(addr);
    loop {
        let idle = IDLE.with_borrow_mut(|list| {
            let i = list.iter().rposition(|idle| idle.key == key)?;
            Some(list.remove(i).c)
        })?;
        idle.read().del_timer();
        idle.set_idle(false);
        let mut probe = [0u8; 1];
        if idle.recv(&mut probe) == Io::Again {
            return Some(idle);
        }
        idle.close();
    }
}

/// Keeps `c`, which just carried a whole response from `addr`, for the
/// next login: at most `max` per auth server, the oldest closed to make
/// room. A connection with more to read is closed instead.
pub fn keep(c: Conn, addr: &ngx_addr_t, max: usize, timeout: ngx_msec_t) {
    let (rev, wev) = (c.read(), c.write());
    rev.del_timer();
    wev.del_timer();
    // anything past the response (a byte nobody asked for, the server's
    // close) and the connection cannot carry another answer
    // a reset while idle, or under the next request (asked again then),
    // is the server's way to end a kept connection, not an error
    c.set_quiet_errors(true);
    let mut probe = [0u8; 1];
    if shutting_down() || c.closing() || c.recv(&mut probe) != Io::Again {
        return c.close();
    }
    c.detach();
    c.set_log(cycle_log());
    rev.set_handler(idle_read);
    wev.set_handler(idle_write);
    if !rev.handle_read() {
        return c.close();
    }
    c.set_idle(true);
    rev.add_timer(timeout);
    let key = key_of(addr);
    let evicted = IDLE.with_borrow_mut(|list| {
        list.push(Idle {
            c,
            key: key.clone(),
        });
        if list.iter().filter(|idle| idle.key == key).count() <= max {
            return None;
        }
        let oldest = list.iter().position(|idle| idle.key == key)?;
        Some(list.remove(oldest).c)
    });
    if let Some(old) = evicted {
        old.close();
    }
}

/// Any event on an idle connection ends it, except a wakeup with nothing
/// to read (as the http upstream keepalive module's close handler).
unsafe extern "C" fn idle_read(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls this for the read event of a live connection we
    // keep idle.
    let rev = unsafe { Event::from_raw(ev) };
    let c = rev.connection();
    if !rev.timedout() && !c.closing() {
        let mut probe = [0u8; 1];
        if c.recv(&mut probe) == Io::Again && rev.handle_read() {
            return;
        }
    }
    IDLE.with_borrow_mut(|list| list.retain(|idle| idle.c != c));
    c.close();
}

unsafe extern "C" fn idle_write(_ev: *mut ngx_event_t) {}
