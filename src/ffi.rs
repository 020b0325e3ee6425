//! Small safe-ish helpers over raw nginx types used by every part of the
//! shell. Each `unsafe` block states why it holds.

use core::ffi::c_char;
use core::ptr;

use nginx_sys::{ngx_err_t, ngx_log_t, ngx_pnalloc, ngx_pool_t, ngx_str_t, ngx_uint_t};

pub const CONF_OK: *mut c_char = ptr::null_mut();
pub const CONF_ERROR: *mut c_char = usize::MAX as *mut c_char;

pub const NGX_ERROR: isize = -1;
pub const NGX_AGAIN: isize = -2;
pub const NGX_BUSY: isize = -3;
pub const NGX_DECLINED: isize = -5;

pub const LOG_EMERG: ngx_uint_t = nginx_sys::NGX_LOG_EMERG as ngx_uint_t;
pub const LOG_ERR: ngx_uint_t = nginx_sys::NGX_LOG_ERR as ngx_uint_t;
pub const LOG_NOTICE: ngx_uint_t = nginx_sys::NGX_LOG_NOTICE as ngx_uint_t;
pub const LOG_INFO: ngx_uint_t = nginx_sys::NGX_LOG_INFO as ngx_uint_t;
pub const ETIMEDOUT: ngx_err_t = 110;

/// The bytes of an `ngx_str_t`.
///
/// # Safety
/// `s` must describe `len` readable bytes (or be empty) that outlive `'a`.
pub unsafe fn bytes<'a>(s: &ngx_str_t) -> &'a [u8] {
    if s.len == 0 || s.data.is_null() {
        &[]
    } else {
        // SAFETY: the caller promises data points to len bytes.
        unsafe { core::slice::from_raw_parts(s.data, s.len) }
    }
}

/// Copies `src` into `pool`; `None` when the pool is out of memory.
///
/// # Safety
/// `pool` must be a live nginx pool.
pub unsafe fn pool_str(pool: *mut ngx_pool_t, src: &[u8]) -> Option<ngx_str_t> {
    if src.is_empty() {
        // a non-null pointer keeps "present but empty" apart from "absent"
        return Some(ngx_str_t {
            len: 0,
            data: c"".as_ptr() as *mut u8,
        });
    }
    // SAFETY: pool is live; ngx_pnalloc returns len writable bytes or null.
    let data = unsafe { ngx_pnalloc(pool, src.len()) } as *mut u8;
    if data.is_null() {
        return None;
    }
    // SAFETY: data has src.len() bytes and does not overlap src.
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), data, src.len()) };
    Some(ngx_str_t {
        len: src.len(),
        data,
    })
}

/// Writes one error-log line; `msg` may hold any bytes, as `%V` would.
///
/// # Safety
/// `log` must be a live nginx log.
pub unsafe fn log(level: ngx_uint_t, log: *mut ngx_log_t, err: ngx_err_t, msg: &[u8]) {
    // SAFETY: log is live as the caller promises.
    if log.is_null() || level > unsafe { (*log).log_level } {
        return;
    }
    let end = msg.len().min(nginx_sys::NGX_MAX_ERROR_STR as usize - 200);
    // SAFETY: as above; the message is copied by nginx.
    unsafe { ngx::log::log_error(level, log, err, msg.get(..end).unwrap_or(msg)) };
}

/// Whether a line at `level` would be written to `log`.
///
/// # Safety
/// `log` must be null or a live nginx log.
pub unsafe fn log_enabled(level: ngx_uint_t, log: *mut ngx_log_t) -> bool {
    // SAFETY: as the caller promises.
    !log.is_null() && level <= unsafe { (*log).log_level }
}

/// Formats and logs, with no errno. Nothing is formatted (and no argument
/// evaluated) when the log's level filters the line out: every session
/// passes several info lines that production configs never write.
#[macro_export]
macro_rules! mail_log {
    ($level:expr, $log:expr, $($arg:tt)+) => {{
        let level = $level;
        let log = $log;
        // SAFETY: callers pass a live connection, configuration or cycle log.
        // (Some call sites are inside unsafe blocks already.)
        #[allow(unused_unsafe)]
        if unsafe { $crate::ffi::log_enabled(level, log) } {
            let msg = format!($($arg)+);
            #[allow(unused_unsafe)]
            let () = unsafe { $crate::ffi::log(level, log, 0, msg.as_bytes()) };
        }
    }};
}

/// Shows bytes from the network in a log line as nginx's `%V` would, with
/// anything unprintable escaped so a log line stays one line.
pub fn shown(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// nginx's page size, the default of every `*_buffer` directive.
pub fn page_size() -> usize {
    // SAFETY: ngx_pagesize is written once at startup, before any
    // configuration is read, and only read afterwards.
    unsafe { nginx_sys::ngx_pagesize }
}
