//! `access_log PATH [mail|json] [buffer=SIZE] [flush=TIME] | off`: the
//! file, opened by nginx with the cycle's other files (so `nginx -s
//! reopen` reopens it, flushing first), and a per-worker buffer.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_add_timer, ngx_conf_t, ngx_del_timer, ngx_event_t, ngx_log_t, ngx_msec_t, ngx_open_file_t,
    ngx_str_t,
};

use crate::ffi::{bytes, LOG_ERR};

/// One `access_log` target, in the configuration pool (each worker has
/// its own copy after fork, so its buffer is the worker's).
pub struct LogTarget {
    pub file: *mut ngx_open_file_t,
    pub json: bool,
    /// The file's buffer (shared by every target naming the same file).
    buf: *mut FileBuf,
}

/// A file's buffer: the first `access_log` naming the file with `buffer=`
/// sets it up; without one, lines are written at once.
struct FileBuf {
    size: usize,
    flush: ngx_msec_t,
    data: Vec<u8>,
    timer: ngx_event_t,
}

pub enum Parsed {
    Off,
    Target(LogTarget),
}

/// Parses the directive's arguments and opens the file.
///
/// # Safety
/// `cf` is the live configuration, its args the directive's.
pub unsafe fn parse(cf: *mut ngx_conf_t) -> Result<Parsed, String> {
    // SAFETY: cf->args holds the directive's name and its arguments.
    let args: Vec<&[u8]> = unsafe {
        let a = (*cf).args;
        let elts = (*a).elts.cast::<ngx_str_t>();
        (1..(*a).nelts).map(|i| bytes(&*elts.add(i))).collect()
    };
    let Some((&path, rest)) = args.split_first() else {
        return Err("invalid number of arguments in \"access_log\" directive".into());
    };
    if path == b"off" {
        if !rest.is_empty() {
            return Err("invalid parameter after \"off\" in \"access_log\"".into());
        }
        return Ok(Parsed::Off);
    }
    let mut json = false;
    let mut size = 0usize;
    let mut flush: Option<ngx_msec_t> = None;
    for (i, &arg) in rest.iter().enumerate() {
        let shown = String::from_utf8_lossy(arg);
        if i == 0 && (arg == b"mail" || arg == b"json") {
            json = arg == b"json";
        } else if let Some(v) = arg.strip_prefix(b"buffer=") {
            let bad = || format!("invalid buffer size \"{}\"", String::from_utf8_lossy(v));
            size = parse_size(v).ok_or_else(bad)?;
        } else if let Some(v) = arg.strip_prefix(b"flush=") {
            let bad = || format!("invalid flush time \"{}\"", String::from_utf8_lossy(v));
            flush = Some(parse_msec(v).ok_or_else(bad)?);
        } else {
            return Err(format!("invalid parameter \"{shown}\""));
        }
    }
    if flush.is_some() && size == 0 {
        return Err("no buffer is defined for access_log \"flush\"".into());
    }
    let mut name = ngx_str_t {
        len: path.len(),
        data: path.as_ptr().cast_mut(),
    };
    // SAFETY: cf is live; nginx keeps the file with the cycle's.
    let file = unsafe { nginx_sys::ngx_conf_open_file((*cf).cycle, &mut name) };
    if file.is_null() {
        return Err("could not open the log file".into());
    }
    let mut buf = ptr::null_mut();
    if size > 0 {
        // SAFETY: file is the cycle's; its data is ours or null.
        unsafe {
            if (*file).data.is_null() {
                let fb = FileBuf {
                    size,
                    flush: flush.unwrap_or(0),
                    data: Vec::new(),
                    // SAFETY: an all-zero event is nginx's idle event.
                    timer: core::mem::zeroed(),
                };
                let Some(p) = crate::conf::keep_in_conf_pool(cf, fb) else {
                    return Err("out of memory".into());
                };
                (*file).data = p.cast_mut().cast();
                (*file).flush = Some(flush_file);
            }
            buf = (*file).data.cast();
        }
    }
    Ok(Parsed::Target(LogTarget { file, json, buf }))
}

fn parse_size(v: &[u8]) -> Option<usize> {
    let (num, mult) = match v.last()? {
        b'k' | b'K' => (v.get(..v.len() - 1)?, 1024),
        b'm' | b'M' => (v.get(..v.len() - 1)?, 1024 * 1024),
        _ => (v, 1),
    };
    let n: usize = std::str::from_utf8(num).ok()?.parse().ok()?;
    n.checked_mul(mult).filter(|&n| n > 0)
}

fn parse_msec(v: &[u8]) -> Option<ngx_msec_t> {
    let units: [(&[u8], ngx_msec_t); 4] =
        [(b"ms", 1), (b"s", 1000), (b"m", 60_000), (b"h", 3_600_000)];
    for (suffix, mult) in units {
        if let Some(num) = v.strip_suffix(suffix) {
            let n: ngx_msec_t = std::str::from_utf8(num).ok()?.parse().ok()?;
            return n.checked_mul(mult);
        }
    }
    let n: ngx_msec_t = std::str::from_utf8(v).ok()?.parse().ok()?;
    n.checked_mul(1000)
}

impl LogTarget {
    /// Writes one line (a newline is added), through the buffer if any.
    pub fn write(&self, line: &str, log: *mut ngx_log_t) {
        // SAFETY: the buffer is this worker's (a single-threaded process)
        // and lives with the configuration.
        let Some(fb) = (unsafe { self.buf.as_mut() }) else {
            // SAFETY: the file is the cycle's, open while it lives.
            return unsafe { write_all(self.file, &[line.as_bytes(), b"\n"].concat(), log) };
        };
        if fb.data.len() + line.len() + 1 > fb.size {
            // SAFETY: as above.
            unsafe { flush_buf(self.file, fb, log) };
        }
        fb.data.extend_from_slice(line.as_bytes());
        fb.data.push(b'\n');
        if fb.data.len() >= fb.size {
            // SAFETY: as above.
            unsafe { flush_buf(self.file, fb, log) };
        } else if fb.flush > 0 && fb.timer.timer_set() == 0 {
            fb.timer.handler = Some(flush_timer);
            fb.timer.data = self.file.cast();
            fb.timer.log = log_of_cycle();
            fb.timer.set_cancelable(1);
            // SAFETY: the event lives with the configuration.
            unsafe { ngx_add_timer(&mut fb.timer, fb.flush) };
        }
    }
}

fn log_of_cycle() -> *mut ngx_log_t {
    // SAFETY: ngx_cycle is set for the process's life.
    unsafe { (*nginx_sys::ngx_cycle).log }
}

/// # Safety
/// `file` is open.
unsafe fn write_all(file: *mut ngx_open_file_t, data: &[u8], log: *mut ngx_log_t) {
    // SAFETY: file is open; data is readable.
    let n = unsafe { nginx_sys::write((*file).fd, data.as_ptr().cast::<c_void>(), data.len()) };
    if n < 0 || n as usize != data.len() {
        // SAFETY: log is live; file names the file.
        unsafe {
            let name = String::from_utf8_lossy(bytes(&(*file).name)).into_owned();
            crate::ffi::log(
                LOG_ERR,
                log,
                *nginx_sys::__errno_location(),
                format!("write() to \"{name}\" failed").as_bytes(),
            );
        }
    }
}

/// # Safety
/// `file` is open and `fb` its buffer.
unsafe fn flush_buf(file: *mut ngx_open_file_t, fb: &mut FileBuf, log: *mut ngx_log_t) {
    if fb.timer.timer_set() != 0 {
        // SAFETY: the timer is ours and armed.
        unsafe { ngx_del_timer(&mut fb.timer) };
    }
    if fb.data.is_empty() {
        return;
    }
    // SAFETY: as the caller promises.
    unsafe { write_all(file, &fb.data, log) };
    fb.data.clear();
}

/// `ngx_open_file_t.flush`: before a reopen, and at a worker's exit.
unsafe extern "C" fn flush_file(file: *mut ngx_open_file_t, log: *mut ngx_log_t) {
    // SAFETY: nginx calls this with an open file whose data is our buffer.
    unsafe {
        if let Some(fb) = (*file).data.cast::<FileBuf>().as_mut() {
            flush_buf(file, fb, log);
        }
    }
}

unsafe extern "C" fn flush_timer(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is its file, which lives with the cycle.
    unsafe { flush_file((*ev).data.cast(), (*ev).log) };
}

/// A worker exits: what its buffers hold is written.
///
/// # Safety
/// `cycle` is the live cycle.
pub unsafe fn flush_all(cycle: *mut nginx_sys::ngx_cycle_t) {
    // SAFETY: the cycle's open files are a list of ngx_open_file_t.
    unsafe {
        let mut part = &raw mut (*cycle).open_files.part;
        while !part.is_null() {
            let files = (*part).elts.cast::<ngx_open_file_t>();
            for i in 0..(*part).nelts {
                let f = files.add(i);
                if (*f).flush.map(|h| h as usize)
                    == Some(flush_file as unsafe extern "C" fn(_, _) as usize)
                {
                    flush_file(f, (*cycle).log);
                }
            }
            part = (*part).next;
        }
    }
}
