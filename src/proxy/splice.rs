//! Bulk pass-through by splice(2): once a direction of a plain-TCP session
//! fills its relay buffer, its bytes move socket -> pipe -> socket in the
//! kernel, up to a pipe's worth (64 KiB) per pair of system calls instead
//! of a buffer's worth (one page by default) per recv and send, and no copy
//! through the worker. Sessions that only trade commands never get a pipe:
//! an idle session holds no more than before.
//!
//! Order is kept: a direction reads into its pipe only once its buffer has
//! been sent, and never into its buffer again. A pipe is filled only when
//! empty, so EAGAIN from the socket side means the socket is drained (a
//! non-empty pipe could refuse too), which is what edge-triggered events
//! need before the read flag is cleared.

use core::ffi::{c_int, c_void};
use core::ptr;

use nginx_sys::{ngx_connection_t, ngx_pool_cleanup_add};

use crate::session::Session;

/// What one step of a spliced direction did.
pub enum Step {
    /// Bytes moved; try again.
    Progress,
    /// Nothing more now: wait for an event, or the source reached its end
    /// (its read event says which).
    Wait,
    /// The destination failed: the session must end.
    Failed,
}

/// A direction's pipe; `held` bytes are in it.
struct Pipe {
    read_end: c_int,
    write_end: c_int,
    held: usize,
}

/// Both directions of a session: [from upstream, from client].
#[derive(Default)]
struct Pipes {
    pipes: [Option<Pipe>; 2],
    /// A direction whose pipe could not be made stays on its buffer.
    unavailable: [bool; 2],
}

fn slot(sess: Session) -> *mut *mut c_void {
    // SAFETY: s->ctx has a slot for every mail module; the auth_http
    // module's is unused once the session is logged in.
    unsafe { (*sess.raw()).ctx.add(crate::auth_http::module::ctx_index()) }
}

/// Runs `f` on the session's pipes, if it has had any; the borrow ends
/// with `f`.
fn with_pipes<R>(sess: Session, f: impl FnOnce(&mut Pipes) -> R) -> Option<R> {
    // SAFETY: the slot is null or was set by `start` to a Pipes in the
    // session's pool, which lives as long as the session. Nothing `f` is
    // given reaches the slot, so this is the only reference while it runs.
    let all = unsafe { (*slot(sess)).cast::<Pipes>().as_mut() }?;
    Some(f(all))
}

fn index(from_upstream: bool) -> usize {
    usize::from(!from_upstream)
}

/// Bytes of this direction still in its pipe.
pub fn held(sess: Session, from_upstream: bool) -> usize {
    with_pipes(sess, |all| {
        all.pipes
            .get(index(from_upstream))
            .and_then(Option::as_ref)
            .map_or(0, |p| p.held)
    })
    .unwrap_or(0)
}

/// Whether this direction moves by splice.
pub fn active(sess: Session, from_upstream: bool) -> bool {
    with_pipes(sess, |all| {
        all.pipes
            .get(index(from_upstream))
            .is_some_and(Option::is_some)
    })
    .unwrap_or(false)
}

/// A relay buffer filled up: move this direction to a pipe if both sides
/// are plain sockets. False when it stays on its buffer.
pub fn start(
    sess: Session,
    from_upstream: bool,
    src: *mut ngx_connection_t,
    dst: *mut ngx_connection_t,
) -> bool {
    // SAFETY: both connections are live.
    if unsafe { !(*src).ssl.is_null() || !(*dst).ssl.is_null() } {
        return false;
    }
    // SAFETY: the slot is null or holds the session's Pipes (see with_pipes).
    if unsafe { (*slot(sess)).is_null() } && !make_pipes(sess) {
        return false;
    }
    let i = index(from_upstream);
    if with_pipes(sess, |all| all.unavailable.get(i).copied().unwrap_or(true)).unwrap_or(true) {
        return false;
    }
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let rc = unsafe {
        nginx_sys::pipe2(
            fds.as_mut_ptr(),
            (nginx_sys::O_NONBLOCK | nginx_sys::O_CLOEXEC) as c_int,
        )
    };
    with_pipes(sess, |all| {
        if rc != 0 {
            // out of descriptors, say: this direction keeps its buffer
            if let Some(u) = all.unavailable.get_mut(i) {
                *u = true;
            }
            return false;
        }
        if let Some(p) = all.pipes.get_mut(i) {
            *p = Some(Pipe {
                read_end: fds[0],
                write_end: fds[1],
                held: 0,
            });
        }
        true
    })
    .unwrap_or(false)
}

/// The session's first pipe: a Pipes in its pool, with a cleanup that
/// closes what is still open when the pool goes.
fn make_pipes(sess: Session) -> bool {
    // SAFETY: the pool is live; the Pipes and the cleanup that closes its
    // pipes live and die with it.
    unsafe {
        let cln = ngx_pool_cleanup_add(sess.pool(), size_of::<Pipes>());
        if cln.is_null() {
            return false;
        }
        let p = (*cln).data.cast::<Pipes>();
        ptr::write(p, Pipes::default());
        (*cln).handler = Some(close_pipes);
        *slot(sess) = p.cast();
    }
    true
}

/// One step of a spliced direction: empty its pipe into `dst`, or, when
/// empty, fill it from `src`.
pub fn step(
    sess: Session,
    from_upstream: bool,
    src: *mut ngx_connection_t,
    dst: *mut ngx_connection_t,
) -> Step {
    with_pipes(sess, |all| {
        all.pipes
            .get_mut(index(from_upstream))
            .and_then(Option::as_mut)
            .map_or(Step::Failed, |pipe| step_pipe(pipe, src, dst))
    })
    .unwrap_or(Step::Failed)
}

fn step_pipe(pipe: &mut Pipe, src: *mut ngx_connection_t, dst: *mut ngx_connection_t) -> Step {
    // SAFETY: both connections and their events are live; the pipe's
    // descriptors are open until the pool's cleanup.
    unsafe {
        if pipe.held > 0 {
            if (*(*dst).write).ready() == 0 {
                return Step::Wait;
            }
            let n = splice(pipe.read_end, (*dst).fd, pipe.held);
            if n < 0 {
                if errno() == nginx_sys::EAGAIN as c_int {
                    (*(*dst).write).set_ready(0);
                    return Step::Wait;
                }
                (*(*dst).write).set_error(1);
                return Step::Failed;
            }
            let n = n as usize;
            (*dst).sent += n as i64;
            pipe.held -= n.min(pipe.held);
            // a short write is not taken for a full socket: only EAGAIN
            // clears the write flag, so an edge is never waited for in vain
            return Step::Progress;
        }
        let rev = (*src).read;
        if (*rev).ready() == 0 || (*rev).eof() != 0 {
            return Step::Wait;
        }
        let n = splice((*src).fd, pipe.write_end, PIPE_BYTES);
        if n > 0 {
            pipe.held = n as usize;
            return Step::Progress;
        }
        (*rev).set_ready(0);
        if n < 0 && errno() == nginx_sys::EAGAIN as c_int {
            return Step::Wait;
        }
        // 0: the peer closed; an error ends reading as recv's does
        (*rev).set_eof(1);
        if n < 0 {
            (*rev).set_error(1);
        }
        Step::Wait
    }
}

/// A pipe's default capacity on Linux.
const PIPE_BYTES: usize = 64 * 1024;

/// # Safety
/// Both descriptors are open.
unsafe fn splice(from: c_int, to: c_int, len: usize) -> isize {
    let flags = nginx_sys::SPLICE_F_MOVE | nginx_sys::SPLICE_F_NONBLOCK;
    // SAFETY: as the caller promises; no offsets are used on sockets/pipes.
    unsafe { nginx_sys::splice(from, ptr::null_mut(), to, ptr::null_mut(), len, flags) as isize }
}

fn errno() -> c_int {
    // SAFETY: the calling thread's errno.
    unsafe { *nginx_sys::__errno_location() }
}

/// The session's pool goes: close the pipes.
unsafe extern "C" fn close_pipes(data: *mut c_void) {
    // SAFETY: data is the Pipes this cleanup was made with.
    let all = unsafe { &mut *data.cast::<Pipes>() };
    for pipe in all.pipes.iter_mut().filter_map(Option::take) {
        // SAFETY: the descriptors are ours and closed once, here.
        unsafe {
            nginx_sys::close(pipe.read_end);
            nginx_sys::close(pipe.write_end);
        }
    }
}
