//! The protocol-neutral part of a mail session: where our per-session state
//! lives, typed access to confs, and the replies every protocol shares.

use core::mem::ManuallyDrop;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use mail_core::AuthMethod;
use nginx_sys::{
    ngx_connection_t, ngx_handle_read_event, ngx_module_t, ngx_pool_cleanup_t, ngx_pool_t,
};

use crate::bindings::{
    ngx_mail_close_connection, ngx_mail_core_module, ngx_mail_core_srv_conf_t, ngx_mail_send,
    ngx_mail_session_internal_server_error, ngx_mail_session_t,
};
use crate::ffi::pool_str;
use crate::protocol::ProtocolState;

/// Our state for one client connection before login: on the heap, dropped
/// when the relay starts or, if the session ends first, by a cleanup of the
/// connection pool.
pub struct MailCtx {
    pub protocol: ProtocolState,
    pub method: AuthMethod,
    /// The auth request in flight, if any.
    pub auth: Option<crate::auth_http::client::AuthAttempt>,
    /// SMTP: the client-name lookup in flight, if any.
    pub lookup: Option<crate::smtp::resolver::Lookup>,
    /// True while the session sleeps on `Auth-Wait` before asking again
    /// (false: it sleeps before telling the client of a refusal).
    pub auth_wait: bool,
    pub dialogue: Option<crate::protocol::Dialogue>,
}

/// The raw session pointer a handler was called for.
#[derive(Clone, Copy)]
pub struct Session(pub *mut ngx_mail_session_t);

impl Session {
    /// # Safety
    /// `c` must be a live mail client connection whose `data` is its session.
    pub unsafe fn of(c: *mut ngx_connection_t) -> Session {
        // SAFETY: the mail core stores the session in c->data.
        Session(unsafe { (*c).data.cast() })
    }

    pub fn raw(self) -> *mut ngx_mail_session_t {
        self.0
    }

    pub fn connection(self) -> *mut ngx_connection_t {
        // SAFETY: a live session always has its client connection.
        unsafe { (*self.0).connection }
    }

    pub fn pool(self) -> *mut ngx_pool_t {
        // SAFETY: as above; the pool lives as long as the connection.
        unsafe { (*self.connection()).pool }
    }

    /// The server conf of `module` for this session: shared by every
    /// session of the server and never written once the configuration is
    /// loaded, so only ever lent shared.
    ///
    /// # Safety
    /// `T` must be the type of that module's server conf.
    pub unsafe fn srv_conf<T>(self, module: *const ngx_module_t) -> &'static T {
        // SAFETY: srv_conf has a slot for every mail module's ctx_index; the
        // configuration outlives every session.
        unsafe { &*(*(*self.0).srv_conf.add((*module).ctx_index)).cast::<T>() }
    }

    pub fn core_conf(self) -> &'static ngx_mail_core_srv_conf_t {
        // SAFETY: the core module is always present and typed so.
        unsafe { self.srv_conf(ptr::addr_of!(ngx_mail_core_module)) }
    }

    /// Runs `f` on our per-session state; `None` before `init_session` made
    /// it and after login. The borrow ends with `f`: nothing in `f` may
    /// close the session (which frees the state) or reach the state again.
    pub fn with_ctx<R>(self, f: impl FnOnce(&mut MailCtx) -> R) -> Option<R> {
        // SAFETY: our slot in s->ctx is null or holds a live CtxBlock, made
        // by create_ctx and emptied before the block goes; the borrow given
        // to f is the only one, for as long as f runs.
        let ctx = unsafe {
            let block = (*self.ctx_slot()).cast::<CtxBlock>();
            block.as_mut().map(|b| &mut *b.ctx)
        }?;
        Some(f(ctx))
    }

    fn ctx_slot(self) -> *mut *mut core::ffi::c_void {
        // SAFETY: s->ctx has ngx_mail_max_module slots, ours among them.
        unsafe { (*self.0).ctx.add(crate::proxy::module::ctx_index()) }
    }

    /// Makes our state, on the heap so that it can go at login. Until then
    /// a cleanup of the connection pool drops it if the session ends first;
    /// that cleanup's node lives in the same heap block, not in the pool.
    pub fn create_ctx(self, protocol: ProtocolState) -> bool {
        let slot = self.ctx_slot();
        let block = Box::into_raw(Box::new(CtxBlock {
            cleanup: ngx_pool_cleanup_t {
                handler: Some(ctx_pool_cleanup),
                data: ptr::null_mut(),
                next: ptr::null_mut(),
            },
            slot,
            ctx: ManuallyDrop::new(MailCtx {
                protocol,
                method: AuthMethod::Plain,
                auth: None,
                lookup: None,
                auth_wait: false,
                dialogue: None,
            }),
        }));
        // SAFETY: the pool and the slot are live; the node stays linked
        // until drop_ctx unlinks it or the pool runs it.
        unsafe {
            let pool = self.pool();
            (*block).cleanup.data = block.cast();
            (*block).cleanup.next = (*pool).cleanup;
            (*pool).cleanup = &raw mut (*block).cleanup;
            *slot = block.cast();
        }
        true
    }

    /// Drops our state (at login, when the relay starts).
    pub fn drop_ctx(self) {
        // SAFETY: the slot belongs to this live session and holds null or a
        // block from create_ctx whose node is in this pool's cleanup list.
        unsafe {
            let block = ptr::replace(self.ctx_slot(), ptr::null_mut()).cast::<CtxBlock>();
            if block.is_null() {
                return;
            }
            let mut link = &raw mut (*self.pool()).cleanup;
            while !(*link).is_null() {
                if *link == &raw mut (*block).cleanup {
                    *link = (*block).cleanup.next;
                    break;
                }
                link = &raw mut (**link).next;
            }
            ManuallyDrop::drop(&mut (*block).ctx);
            drop(Box::from_raw(block));
        }
    }

    /// Points `s->out` at bytes that outlive the session (static or conf).
    pub fn set_out_static(self, bytes: &'static [u8]) {
        // SAFETY: s is live; the bytes are never freed while nginx runs.
        unsafe {
            (*self.0).out.len = bytes.len();
            (*self.0).out.data = bytes.as_ptr().cast_mut();
        }
    }

    /// Copies `bytes` into the pool as the next reply; false when out of memory.
    pub fn set_out(self, bytes: &[u8]) -> bool {
        // SAFETY: the pool is live.
        match unsafe { pool_str(self.pool(), bytes) } {
            Some(out) => {
                // SAFETY: s is live.
                unsafe { (*self.0).out = out };
                true
            }
            None => false,
        }
    }

    /// Zeroes and drops `s->passwd`: its pool memory outlives its use.
    pub fn forget_password(self) {
        // SAFETY: s is live; a password with bytes is a pool copy of ours
        // (empty ones may point at a static empty string: nothing written).
        unsafe {
            let passwd = &mut (*self.0).passwd;
            if !passwd.data.is_null() && passwd.len > 0 {
                ptr::write_bytes(passwd.data, 0, passwd.len);
            }
            *passwd = nginx_sys::ngx_str_t {
                len: 0,
                data: ptr::null_mut(),
            };
        }
    }

    /// Logged in: the password and whatever the command buffer held of the
    /// login (PASS, LOGIN, AUTHENTICATE lines) are zeroed; only the bytes
    /// still to be relayed stay.
    pub fn forget_login(self) {
        // no timer or timed-out flag of the login stages (an Auth-Wait
        // sleep, a reply's send) may end the relayed session later as
        // "client timed out": the relay arms its own proxy_timeout
        // SAFETY: the connection and its events are live.
        unsafe {
            let c = self.connection();
            for ev in [(*c).read, (*c).write] {
                if (*ev).timer_set() != 0 {
                    nginx_sys::ngx_del_timer(ev);
                }
                (*ev).set_timedout(0);
            }
        }
        self.forget_password();
        // SAFETY: s->buffer is null or a live temp buffer with
        // start <= pos <= last <= end.
        unsafe {
            let b = (*self.0).buffer;
            if b.is_null() {
                return;
            }
            ptr::write_bytes((*b).start, 0, (*b).pos.offset_from((*b).start) as usize);
            ptr::write_bytes((*b).last, 0, (*b).end.offset_from((*b).last) as usize);
        }
    }

    pub fn set_quit(self) {
        // SAFETY: s is live.
        unsafe { (*self.0).set_quit(1) };
    }

    pub fn send(self) {
        // SAFETY: the connection is live; ngx_mail_send may close it.
        unsafe { ngx_mail_send((*self.connection()).write) };
    }

    pub fn internal_server_error(self) {
        // SAFETY: s is live; this sends the protocol's error and closes.
        unsafe { ngx_mail_session_internal_server_error(self.0) };
    }

    pub fn close(self) {
        // SAFETY: closing destroys the pool; callers return right after.
        unsafe { ngx_mail_close_connection(self.connection()) };
    }

    /// Arms the client read event; closes the session when that fails.
    pub fn handle_read_event(self) -> bool {
        // SAFETY: the connection and its read event are live.
        if unsafe { ngx_handle_read_event((*self.connection()).read, 0) } != 0 {
            self.close();
            return false;
        }
        true
    }

    /// At `worker_shutdown_timeout` nginx marks every connection `close` and
    /// runs its read handler: a session in any stage ends then (stock keeps
    /// one that has not logged in yet until its own timeout). True when it
    /// was closed.
    pub fn ends_at_shutdown(self) -> bool {
        let c = self.connection();
        // SAFETY: the connection and its log are live until closed here.
        unsafe {
            if (*c).close() == 0 {
                return false;
            }
            crate::ffi::log(crate::ffi::LOG_INFO, (*c).log, 0, b"shutdown timeout");
        }
        self.close();
        true
    }

    pub fn set_action(self, action: &'static core::ffi::CStr) {
        // SAFETY: the log is live; the action string is static.
        unsafe { (*(*self.connection()).log).action = action.as_ptr().cast_mut() };
    }

    pub fn log(self) -> *mut nginx_sys::ngx_log_t {
        // SAFETY: the connection is live.
        unsafe { (*self.connection()).log }
    }
}

/// A session's MailCtx and the pool-cleanup node that drops it if the
/// session ends before login. An idle proxied session keeps nothing of it:
/// a node allocated in the pool would stay there (24 bytes, which in a POP3
/// session's 256-byte pool blocks can cost a whole extra block).
struct CtxBlock {
    cleanup: ngx_pool_cleanup_t,
    /// The session's slot in `s->ctx` that points here.
    slot: *mut *mut core::ffi::c_void,
    ctx: ManuallyDrop<MailCtx>,
}

/// A block whose cleanup ran: `ngx_destroy_pool` still reads the node's
/// `next` after the handler returns, so the memory goes at the next cleanup.
static RETIRED: AtomicPtr<CtxBlock> = AtomicPtr::new(ptr::null_mut());

/// Frees the last retired block (at process exit: no pool is being
/// destroyed then).
pub fn free_retired() {
    let block = RETIRED.swap(ptr::null_mut(), Ordering::Relaxed);
    if !block.is_null() {
        // SAFETY: a retired block's state was dropped and its pool's
        // cleanups are over; only its memory is left.
        drop(unsafe { Box::from_raw(block) });
    }
}

/// The pool's cleanup of a session that ended before login.
///
/// # Safety
/// `data` is a block from `create_ctx` whose node is being run by
/// `ngx_destroy_pool` of the session's pool.
unsafe extern "C" fn ctx_pool_cleanup(data: *mut core::ffi::c_void) {
    let block = data.cast::<CtxBlock>();
    // SAFETY: as the caller promises; the slot is emptied before the drop so
    // that nothing can reach the state while it goes. The previous retired
    // block's pool finished its cleanups before this one started.
    unsafe {
        *(*block).slot = ptr::null_mut();
        ManuallyDrop::drop(&mut (*block).ctx);
        let previous = RETIRED.swap(block, Ordering::Relaxed);
        if !previous.is_null() {
            drop(Box::from_raw(previous));
        }
    }
}
