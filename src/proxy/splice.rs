//! Bulk pass-through by splice(2): once a direction of a plain-TCP session
//! fills its relay buffer, its bytes move socket -> pipe -> socket in the
//! kernel, up to a pipe's worth (64 KiB) per pair of system calls instead
//! of a buffer's worth (one page by default) per recv and send, and no copy
//! through the worker. Sessions that only trade commands never get a pipe.
//!
//! A pipe is lent, not kept: once it is empty and its source socket has
//! nothing more for now (EAGAIN) or has ended, it is closed and the
//! direction goes back to its buffer, so an idle session holds no more
//! descriptors than a stock one, whatever it moved before. It gets a pipe
//! again when its buffer fills again.
//!
//! Order is kept: a direction reads into its pipe only once its buffer has
//! been sent, and into its buffer again only once its pipe is empty and
//! given back. A pipe is filled only when empty, so EAGAIN from the socket
//! side means the socket is drained (a non-empty pipe could refuse too),
//! which is what edge-triggered events need before the read flag is
//! cleared; the next edge then finds the direction on its buffer.

use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use nginx_sys::ngx_connection_t;

use crate::session::Session;

/// What one step of a spliced direction did.
pub enum Step {
    /// Bytes moved; try again.
    Progress,
    /// Nothing more now: wait for an event, or the source reached its end
    /// (its read event says which). The pipe may have been given back.
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

/// Both directions of a session: [from upstream, from client]. The proxy
/// module's per-session state once the session relays; dropped (its pipes
/// closed) with the session.
#[derive(Default)]
pub struct Pipes {
    pipes: [Option<Pipe>; 2],
}

impl Drop for Pipes {
    fn drop(&mut self) {
        self.pipes.iter_mut().for_each(give_back);
    }
}

/// The most pipe pairs a worker holds at once; past it a direction stays on
/// its buffer (slower, never wrong). A pair costs two descriptors and up to
/// 64 KiB of kernel memory that cannot be swapped out. 1024 pairs is what
/// Linux's default fs.pipe-user-pages-soft (16384 pages) lets a user hold
/// at full size; past that the kernel hands out pipes of one or two pages,
/// no better than the buffer, so more pairs would only take descriptors
/// (2048 at this cap) that new connections need. That kernel limit counts
/// all of the user's processes, so with several busy workers later pipes
/// may still be small ones: correct, only slower. A worker whose descriptor
/// limit is lower meets EMFILE first and falls back the same way.
const MAX_PIPES: usize = 1024;

/// Pipe pairs open in this worker. Workers are single-threaded; an atomic
/// only spares a `static mut`.
static PIPES_OPEN: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` on the session's pipes, if it has had any; the borrow ends
/// with `f`.
fn with_pipes<R>(sess: Session, f: impl FnOnce(&mut Pipes) -> R) -> Option<R> {
    sess.with_state(f)
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
/// are plain sockets and a pipe can be had. False when it stays on its
/// buffer: TLS, the worker's cap reached, or pipe2 failed (EMFILE, ENFILE).
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
    if PIPES_OPEN.load(Ordering::Relaxed) >= MAX_PIPES {
        return false;
    }
    if with_pipes(sess, |_| ()).is_none() {
        sess.set_state(Pipes::default());
    }
    let i = index(from_upstream);
    // a direction has one pipe at a time
    if !with_pipes(sess, |all| matches!(all.pipes.get(i), Some(None))).unwrap_or(false) {
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
    if rc != 0 {
        // out of descriptors, say: this direction keeps its buffer for now
        return false;
    }
    PIPES_OPEN.fetch_add(1, Ordering::Relaxed);
    with_pipes(sess, |all| {
        if let Some(p) = all.pipes.get_mut(i) {
            *p = Some(Pipe {
                read_end: fds[0],
                write_end: fds[1],
                held: 0,
            });
        }
    });
    true
}

/// Closes a direction's pipe, which goes back to its buffer.
fn give_back(pipe: &mut Option<Pipe>) {
    if let Some(p) = pipe.take() {
        // SAFETY: the descriptors are this pipe's and closed once, here:
        // take() left None behind.
        unsafe {
            nginx_sys::close(p.read_end);
            nginx_sys::close(p.write_end);
        }
        PIPES_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One step of a spliced direction: empty its pipe into `dst`, or, when
/// empty, fill it from `src`, or give it back when `src` has nothing more.
pub fn step(
    sess: Session,
    from_upstream: bool,
    src: *mut ngx_connection_t,
    dst: *mut ngx_connection_t,
) -> Step {
    with_pipes(sess, |all| {
        all.pipes
            .get_mut(index(from_upstream))
            .map_or(Step::Failed, |slot| step_pipe(slot, src, dst))
    })
    .unwrap_or(Step::Failed)
}

fn step_pipe(
    slot: &mut Option<Pipe>,
    src: *mut ngx_connection_t,
    dst: *mut ngx_connection_t,
) -> Step {
    let Some(pipe) = slot.as_mut() else {
        return Step::Failed;
    };
    // SAFETY: both connections and their events are live; the pipe's
    // descriptors are open until given back or the pool's cleanup.
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
            // empty, and the source has nothing now: the next edge finds
            // the direction on its buffer
            give_back(slot);
            return Step::Wait;
        }
        let n = splice((*src).fd, pipe.write_end, PIPE_BYTES);
        if n > 0 {
            pipe.held = n as usize;
            return Step::Progress;
        }
        (*rev).set_ready(0);
        let drained = n < 0 && errno() == nginx_sys::EAGAIN as c_int;
        // the pipe is empty: EAGAIN means the socket is drained, 0 that the
        // peer closed; either way the pipe is not needed now
        give_back(slot);
        if drained {
            return Step::Wait;
        }
        // an error ends reading as recv's does
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
    nginx_sys::ngx_errno()
}
