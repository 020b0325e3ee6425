//! The POP3 session before login (`ngx_mail_pop3_handler.c`'s job): the
//! greeting, then one client command per read event, answered through
//! `s->out` and `ngx_mail_send`.

use std::borrow::Cow;

use mail_core::pop3::{self, Action, Config, Pop3Session, Step};
use mail_core::{auth_bits, Credentials};
use nginx_sys::{
    ngx_add_timer, ngx_connection_t, ngx_create_temp_buf, ngx_event_t, ngx_random, ngx_time,
};

use super::module::{self, BUFFER_SIZE};
use crate::bindings::{ngx_mail_send, ngx_mail_session_t};
use crate::ffi::{bytes, pool_str, LOG_INFO};
use crate::protocol::ProtocolState;
use crate::session::Session;
use crate::{client, mail_log};

pub unsafe extern "C" fn init_session(s: *mut ngx_mail_session_t, c: *mut ngx_connection_t) {
    let sess = Session(s);
    let pscf = module::conf(sess);
    let cscf = sess.core_conf();
    if sess
        .create_ctx(ProtocolState::Pop3(Pop3Session::default()))
        .is_none()
    {
        return sess.internal_server_error();
    }
    let salted = pscf.auth_methods & (auth_bits::APOP | auth_bits::CRAM_MD5) != 0;
    if salted {
        // SAFETY: server_name is a config string.
        let server_name = unsafe { bytes(&cscf.server_name) };
        let mut salt = format!("<{}.{}@", ngx_random(), ngx_time()).into_bytes();
        salt.extend_from_slice(server_name);
        salt.extend_from_slice(b">\r\n");
        // SAFETY: the pool is live.
        let Some(salt) = (unsafe { pool_str(sess.pool(), &salt) }) else {
            return sess.internal_server_error();
        };
        // SAFETY: s is live.
        unsafe { (*s).salt = salt };
        // SAFETY: the salt was just set from the pool.
        if !sess.set_out(&pop3::greeting(Some(unsafe { bytes(&(*s).salt) }))) {
            return sess.internal_server_error();
        }
    } else {
        sess.set_out_static(pop3::GREETING);
    }
    // SAFETY: c and its events are live.
    unsafe {
        (*(*c).read).handler = Some(init_protocol);
        ngx_add_timer((*c).read, cscf.timeout);
    }
    if !sess.handle_read_event() {
        return;
    }
    // SAFETY: c is live.
    unsafe { ngx_mail_send((*c).write) };
}

pub unsafe extern "C" fn init_protocol(rev: *mut ngx_event_t) {
    // SAFETY: the read event of a mail connection has the connection as data.
    let c = unsafe { (*rev).data.cast::<ngx_connection_t>() };
    // SAFETY: as above.
    let sess = unsafe { Session::of(c) };
    sess.set_action(c"in auth state");
    if client::timed_out(rev, sess) {
        return;
    }
    // SAFETY: s is live; the buffer is made once per session.
    unsafe {
        let s = sess.raw();
        if (*s).buffer.is_null() {
            (*s).buffer = ngx_create_temp_buf((*c).pool, BUFFER_SIZE);
            if (*s).buffer.is_null() {
                return sess.internal_server_error();
            }
        }
        (*rev).handler = Some(auth_state);
    }
    // SAFETY: rev is the live read event.
    unsafe { auth_state(rev) };
}

pub unsafe extern "C" fn auth_state(rev: *mut ngx_event_t) {
    // SAFETY: as in init_protocol.
    let c = unsafe { (*rev).data.cast::<ngx_connection_t>() };
    // SAFETY: as above.
    let sess = unsafe { Session::of(c) };
    if client::timed_out(rev, sess) {
        return;
    }
    let Some(buf) = client::read_command(sess) else {
        return;
    };
    let Some(ctx) = sess.ctx() else {
        return sess.internal_server_error();
    };
    let ProtocolState::Pop3(pop3) = &mut ctx.protocol;
    let pscf = module::conf(sess);
    let Some(replies) = pscf.replies() else {
        return sess.internal_server_error();
    };
    // SAFETY: s->salt is empty or a pool string.
    let salt = unsafe { bytes(&(*sess.raw()).salt) };
    let cfg = Config {
        auth_methods: pscf.auth_methods,
        capabilities: replies,
        starttls: client::starttls_mode(sess),
        // SAFETY: c is live.
        tls: unsafe { !(*c).ssl.is_null() },
        salt: (!salt.is_empty()).then_some(salt),
    };
    let (consumed, action) = match pop3.step(buf, &cfg) {
        Step::Done { consumed, action } => (consumed, action),
        Step::Incomplete => {
            if client::command_too_long(sess) {
                sess.set_out_static(pop3::INVALID_COMMAND);
                return client::reply(sess);
            }
            return client::wait_for_more(sess);
        }
    };
    client::consume(sess, consumed);
    match action {
        Action::Reply(Cow::Borrowed(bytes)) => {
            // SAFETY: borrowed replies are static or live in the cycle's
            // config pool, which outlives the session.
            let bytes: &'static [u8] =
                unsafe { core::mem::transmute::<&[u8], &'static [u8]>(bytes) };
            sess.set_out_static(bytes);
        }
        Action::Reply(Cow::Owned(bytes)) => {
            if !sess.set_out(&bytes) {
                return sess.internal_server_error();
            }
        }
        Action::Quit => {
            sess.set_out_static(pop3::OK);
            sess.set_quit();
        }
        Action::StartTls => {
            sess.set_out_static(pop3::OK);
            client::start_tls(sess);
        }
        Action::Invalid(reason) => {
            if let Some(reason) = reason.0 {
                mail_log!(LOG_INFO, sess.log(), "{}", reason);
            }
            client::count_error(sess);
            sess.set_out_static(pop3::INVALID_COMMAND);
        }
        Action::Authenticate(creds) => return authenticate(sess, creds),
    }
    client::reply(sess);
}

fn authenticate(sess: Session, creds: Credentials) {
    if !client::store_credentials(sess, &creds) {
        return sess.internal_server_error();
    }
    crate::auth_http::client::start_login(sess, creds.method);
}
