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

/// Our state for one client connection, allocated in its pool and dropped
/// by the pool's cleanup when nginx closes the connection.
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

    /// Our per-session state; `None` before `init_session` made it.
    pub fn ctx(self) -> Option<&'static mut MailCtx> {
        // SAFETY: s->ctx has ngx_mail_max_module slots; ours is set once to a
        // pool-allocated MailCtx by init_session and cleared by nobody.
        unsafe {
            let slot = (*self.0).ctx.add(crate::proxy::module::ctx_index());
            (*slot).cast::<MailCtx>().as_mut()
        }
    }

    /// Allocates our state in the connection pool.
    pub fn create_ctx(self, protocol: ProtocolState) -> Option<&'static mut MailCtx> {
        let ctx = MailCtx {
            protocol,
            method: AuthMethod::Plain,
            auth: None,
            auth_wait: false,
            dialogue: None,
        };
        // SAFETY: the pool is live; Pool::allocate registers a cleanup that
        // drops the value when the pool is destroyed.
        unsafe {
            let pool = ngx::core::Pool::from_ngx_pool(self.pool());
            let p = pool.allocate(ctx);
            if p.is_null() {
                return None;
            }
            *(*self.0).ctx.add(crate::proxy::module::ctx_index()) = p.cast();
            p.as_mut()
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
