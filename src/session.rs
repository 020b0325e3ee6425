//! The protocol-neutral part of a mail session: where our per-session state
//! lives, typed access to confs, and the replies every protocol shares.

use core::ptr;

use mail_core::AuthMethod;
use nginx_sys::{ngx_connection_t, ngx_handle_read_event, ngx_module_t, ngx_pool_t};

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

    /// The server conf of `module` for this session.
    ///
    /// # Safety
    /// `T` must be the type of that module's server conf.
    pub unsafe fn srv_conf<T>(self, module: *const ngx_module_t) -> &'static mut T {
        // SAFETY: srv_conf has a slot for every mail module's ctx_index.
        unsafe { &mut *(*(*self.0).srv_conf.add((*module).ctx_index)).cast::<T>() }
    }

    pub fn core_conf(self) -> &'static mut ngx_mail_core_srv_conf_t {
        // SAFETY: the core module is always present and typed so.
        unsafe { self.srv_conf(ptr::addr_of!(ngx_mail_core_module)) }
    }

    /// Our per-session state; `None` before `init_session` made it and
    /// after login.
    pub fn ctx(self) -> Option<&'static mut MailCtx> {
        // SAFETY: s->ctx has ngx_mail_max_module slots; ours is set once to a
        // pool-allocated MailCtx by init_session and cleared by nobody.
        unsafe {
            let slot = (*self.0).ctx.add(crate::proxy::module::ctx_index());
            (*slot).cast::<MailCtx>().as_mut()
        }
    }

    fn ctx_slot(self) -> *mut *mut core::ffi::c_void {
        // SAFETY: s->ctx has ngx_mail_max_module slots, ours among them.
        unsafe { (*self.0).ctx.add(crate::proxy::module::ctx_index()) }
    }

    /// Makes our state, on the heap so that it can go at login; a cleanup of
    /// the connection pool drops it if the session ends before that.
    pub fn create_ctx(self, protocol: ProtocolState) -> Option<&'static mut MailCtx> {
        let ctx = Box::new(MailCtx {
            protocol,
            method: AuthMethod::Plain,
            auth: None,
            auth_wait: false,
            dialogue: None,
        });
        let slot = self.ctx_slot();
        // SAFETY: the pool is live; the cleanup runs before the pool (and
        // the slot in s->ctx it points at) is freed.
        unsafe {
            let cln = nginx_sys::ngx_pool_cleanup_add(self.pool(), 0);
            if cln.is_null() {
                return None;
            }
            let raw = Box::into_raw(ctx);
            *slot = raw.cast();
            (*cln).handler = Some(drop_ctx_slot);
            (*cln).data = slot.cast();
            raw.as_mut()
        }
    }

    /// Drops our state (at login, when the relay starts).
    pub fn drop_ctx(self) {
        // SAFETY: the slot belongs to this live session.
        unsafe { drop_ctx_slot(self.ctx_slot().cast()) };
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

    pub fn set_action(self, action: &'static core::ffi::CStr) {
        // SAFETY: the log is live; the action string is static.
        unsafe { (*(*self.connection()).log).action = action.as_ptr().cast_mut() };
    }

    pub fn log(self) -> *mut nginx_sys::ngx_log_t {
        // SAFETY: the connection is live.
        unsafe { (*self.connection()).log }
    }
}

/// Drops the MailCtx a session's ctx slot holds, if any, and empties it.
///
/// # Safety
/// `data` points at a session's ctx slot, which is null or holds a pointer
/// from `Box::into_raw` of a MailCtx.
unsafe extern "C" fn drop_ctx_slot(data: *mut core::ffi::c_void) {
    let slot = data.cast::<*mut MailCtx>();
    // SAFETY: as the caller promises; the slot is emptied before the drop so
    // that nothing can reach the value while it goes.
    unsafe {
        let ctx = core::ptr::replace(slot, core::ptr::null_mut());
        if !ctx.is_null() {
            drop(Box::from_raw(ctx));
        }
    }
}
