//! Small safe-ish helpers over raw nginx types used by every part of the
//! shell. Each `unsafe` block states why it holds.

use core::ffi::c_char;
use core::ptr;

use nginx_sys::{ngx_err_t, ngx_log_t, ngx_pnalloc, ngx_pool_t, ngx_str_t, ngx_uint_t};

pub const CONF_OK: *mut c_char = ptr::null_mut();
pub const CONF_ERROR: *mut c_char = usize::MAX as *mut c_char;

pub const NGX_ERROR: isize = nginx_sys::NGX_ERROR as isize;
pub const NGX_AGAIN: isize = nginx_sys::NGX_AGAIN as isize;
pub const NGX_BUSY: isize = nginx_sys::NGX_BUSY as isize;
pub const NGX_DECLINED: isize = nginx_sys::NGX_DECLINED as isize;

pub const LOG_EMERG: ngx_uint_t = nginx_sys::NGX_LOG_EMERG as ngx_uint_t;
pub const LOG_ERR: ngx_uint_t = nginx_sys::NGX_LOG_ERR as ngx_uint_t;
pub const LOG_WARN: ngx_uint_t = nginx_sys::NGX_LOG_WARN as ngx_uint_t;
pub const LOG_NOTICE: ngx_uint_t = nginx_sys::NGX_LOG_NOTICE as ngx_uint_t;
pub const LOG_INFO: ngx_uint_t = nginx_sys::NGX_LOG_INFO as ngx_uint_t;
pub const ETIMEDOUT: ngx_err_t = nginx_sys::ETIMEDOUT as ngx_err_t;

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

/// One log line, formatted on the stack: no heap allocation per line,
/// whatever the line shows. What does not fit is cut, as nginx cuts its own
/// lines at `NGX_MAX_ERROR_STR`.
pub struct LogLine {
    buf: [u8; LOG_LINE_MAX],
    len: usize,
}

/// nginx's own line limit less the room its prefix and the
/// `, client: ..., server: ...` context take.
const LOG_LINE_MAX: usize = nginx_sys::NGX_MAX_ERROR_STR as usize - 200;

impl LogLine {
    pub fn new() -> Self {
        LogLine {
            buf: [0; LOG_LINE_MAX],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Default for LogLine {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Write for LogLine {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = LOG_LINE_MAX - self.len;
        let n = s.len().min(room);
        if let Some(dst) = self.buf.get_mut(self.len..self.len + n) {
            dst.copy_from_slice(s.as_bytes().get(..n).unwrap_or_default());
            self.len += n;
        }
        // a full line stops the formatting: nothing more would be kept
        if n < s.len() {
            Err(core::fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// Formats `args` into a `LogLine` and logs it with `err`.
///
/// # Safety
/// `log` must be null or a live nginx log.
pub unsafe fn log_fmt(
    level: ngx_uint_t,
    log: *mut ngx_log_t,
    err: ngx_err_t,
    args: core::fmt::Arguments<'_>,
) {
    // SAFETY: as the caller promises.
    if !unsafe { log_enabled(level, log) } {
        return;
    }
    let mut line = LogLine::new();
    // a line cut short is still logged
    let _ = core::fmt::write(&mut line, args);
    // SAFETY: as above.
    unsafe { self::log(level, log, err, line.as_bytes()) };
}

/// Formats and logs, with no errno. Nothing is formatted (and no argument
/// evaluated) when the log's level filters the line out: every session
/// passes several info lines that production configs never write.
#[macro_export]
macro_rules! mail_log {
    ($level:expr, $log:expr, errno = $err:expr; $($arg:tt)+) => {{
        let level = $level;
        let log = $log;
        let err = $err;
        // SAFETY: callers pass a live connection, configuration or cycle log.
        #[allow(unused_unsafe)]
        if unsafe { $crate::ffi::log_enabled(level, log) } {
            // a match keeps the arguments' temporaries alive for the call
            match format_args!($($arg)+) {
                #[allow(unused_unsafe)]
                args => unsafe { $crate::ffi::log_fmt(level, log, err, args) },
            }
        }
    }};
    ($level:expr, $log:expr, $($arg:tt)+) => {{
        let level = $level;
        let log = $log;
        // SAFETY: callers pass a live connection, configuration or cycle log.
        // (Some call sites are inside unsafe blocks already.)
        #[allow(unused_unsafe)]
        if unsafe { $crate::ffi::log_enabled(level, log) } {
            // a match keeps the arguments' temporaries alive for the call
            match format_args!($($arg)+) {
                #[allow(unused_unsafe)]
                args => unsafe { $crate::ffi::log_fmt(level, log, 0, args) },
            }
        }
    }};
}

/// A debug trace under nginx's mail debug mask (`debug_mail`), as stock's
/// src/mail writes them: formatted on the stack, and compiled out of an
/// nginx built without `--with-debug`.
#[macro_export]
macro_rules! mail_debug {
    ($log:expr, $($arg:tt)+) => {{
        let log: *mut nginx_sys::ngx_log_t = $log;
        if !log.is_null() {
            ngx::ngx_log_debug!(mask: ngx::log::DebugMask::Mail, log, $($arg)+);
        }
    }};
}

/// At most this much of what a peer sent is shown in one log line.
const SHOWN_MAX: usize = 512;

/// Bytes from the network shown in a log line as nginx's `%V` would, with
/// anything unprintable escaped so a log line stays one line, cut at
/// `SHOWN_MAX` input bytes before any escaping (a flood costs the same as a
/// short line). Formatted lazily: nothing is allocated.
pub struct Shown<'a> {
    bytes: &'a [u8],
    /// CR and LF as `_`, as stock logs a rejected SMTP command.
    line_ends_as_underscores: bool,
}

impl core::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let cut = self.bytes.len() > SHOWN_MAX;
        let bytes = self.bytes.get(..SHOWN_MAX).unwrap_or(self.bytes);
        for chunk in bytes.split_inclusive(|b| !(0x20..0x7f).contains(b)) {
            let (text, last) = match chunk.split_last() {
                Some((&b, rest)) if !(0x20..0x7f).contains(&b) => (rest, Some(b)),
                _ => (chunk, None),
            };
            // printable ASCII is valid UTF-8
            f.write_str(core::str::from_utf8(text).unwrap_or_default())?;
            match last {
                Some(b'\r' | b'\n') if self.line_ends_as_underscores => f.write_str("_")?,
                Some(b) => write!(f, "\\x{b:02X}")?,
                None => {}
            }
        }
        if cut {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// See `Shown`.
pub fn shown(bytes: &[u8]) -> Shown<'_> {
    Shown {
        bytes,
        line_ends_as_underscores: false,
    }
}

/// A refused SMTP command as stock logs it: CR and LF shown as `_`.
pub fn shown_rejected(bytes: &[u8]) -> Shown<'_> {
    Shown {
        bytes,
        line_ends_as_underscores: true,
    }
}

/// nginx's page size, the default of every `*_buffer` directive.
pub fn page_size() -> usize {
    // SAFETY: ngx_pagesize is written once at startup, before any
    // configuration is read, and only read afterwards.
    unsafe { nginx_sys::ngx_pagesize }
}

#[cfg(test)]
mod tests {
    use core::fmt::Write;

    use super::*;

    #[test]
    fn shown_escapes_and_cuts_before_escaping() {
        assert_eq!(shown(b"a b\r\n\x00~").to_string(), "a b\\x0D\\x0A\\x00~");
        assert_eq!(shown_rejected(b"MAIL\r\nX").to_string(), "MAIL__X");
        let flood = vec![1u8; 10 << 20];
        let text = shown(&flood).to_string();
        assert_eq!(text.len(), SHOWN_MAX * 4 + 3);
        assert!(text.ends_with("\\x01..."));
    }

    #[test]
    fn log_line_keeps_what_fits() {
        let flood = vec![b'x'; 10 << 20];
        let mut line = LogLine::new();
        let rc = write!(line, "client sent \"{}\"", shown(&flood));
        assert!(rc.is_ok(), "the shown part is cut before the line is full");
        assert_eq!(
            line.as_bytes().len(),
            "client sent \"\"".len() + SHOWN_MAX + 3
        );
        let mut line = LogLine::new();
        let long = "y".repeat(LOG_LINE_MAX + 10);
        assert!(write!(line, "{long}").is_err());
        assert_eq!(line.as_bytes().len(), LOG_LINE_MAX);
    }
}
