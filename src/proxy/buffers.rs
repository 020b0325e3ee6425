//! Relay buffers are lent, not kept. An IMAP client in IDLE stays connected
//! for hours and moves a few bytes an hour, yet stock holds its two relay
//! buffers (a page each by default) all that time. Here a direction's
//! buffer goes back to a per-worker free list as soon as it is drained, and
//! is taken again when its source has something to read: an idle session
//! holds no buffer memory, a busy one the same as before.
//!
//! A lent block stays one of the session's pool's large blocks, so that
//! whatever way the session ends, destroying the pool frees it (with
//! `ngx_free`, which is why blocks come from `ngx_alloc`). A buffer too
//! small to be a large block (POP3's 128-byte command buffer in a 256-byte
//! pool) lives inside a pool block, cannot be given back, and is kept.
//!
//! A released `ngx_buf_t` has null `start`, `pos`, `last` and `end`: empty,
//! with no room, as every reader of the buffer sees it. Its capacity is
//! kept in `file_last`, which a memory buffer never uses.

use core::ptr;
use std::sync::Mutex;

use nginx_sys::{ngx_buf_t, ngx_pool_large_t, ngx_pool_t};

/// Blocks a worker keeps for the next session that wakes up; past this,
/// given back to malloc. 64 pages cover bursts of wake-ups without holding
/// more than a fraction of what the sessions it serves would hold.
const FREE_LIST_CAP: usize = 64;

struct FreeBlock {
    start: *mut u8,
    size: usize,
}

// SAFETY: a block is plain malloc'd memory that no one else points to while
// it is on the list; workers are single-threaded anyway.
unsafe impl Send for FreeBlock {}

/// One list per process (a worker is single-threaded; the lock is never
/// contended). A static, not a thread-local: nginx unloads this module at
/// exit, after `free_all` emptied it.
static FREE: Mutex<Vec<FreeBlock>> = Mutex::new(Vec::new());

/// Runs `f` on the free list; None if a panic ever poisoned it.
fn with_free<R>(f: impl FnOnce(&mut Vec<FreeBlock>) -> R) -> Option<R> {
    FREE.lock().ok().map(|mut free| f(&mut free))
}

/// The worker ends: the blocks it kept go back to malloc.
pub fn free_all() {
    for block in with_free(core::mem::take).unwrap_or_default() {
        // SAFETY: the block came from ngx_alloc and is on no pool's list.
        unsafe { nginx_sys::free(block.start.cast()) };
    }
}

/// Gives a drained buffer's memory back. Does nothing to a buffer that
/// holds bytes, is already released, or lives inside a pool block.
///
/// # Safety
/// `b` is a live temp buffer allocated in `pool`, whose memory (if any)
/// came from `pool` or from `acquire` with the same pool.
pub unsafe fn release(pool: *mut ngx_pool_t, b: *mut ngx_buf_t, side: &str) {
    // SAFETY: b and pool are live as the caller promises.
    unsafe {
        let start = (*b).start;
        if start.is_null() || (*b).pos != (*b).last {
            return;
        }
        let Some(node) = large_node(pool, start.cast()) else {
            return;
        };
        let size = (*b).end.offset_from(start) as usize;
        (*node).alloc = ptr::null_mut();
        (*b).start = ptr::null_mut();
        (*b).pos = ptr::null_mut();
        (*b).last = ptr::null_mut();
        (*b).end = ptr::null_mut();
        (*b).file_last = size as i64;
        crate::mail_debug!(
            (*pool).log,
            "mail relay buffer released: {}, {}",
            side,
            size
        );
        let kept = with_free(|free| {
            if free.len() < FREE_LIST_CAP {
                free.push(FreeBlock { start, size });
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
        if !kept {
            nginx_sys::free(start.cast());
        }
    }
}

/// Gives a released buffer memory again, of its old size. True when the
/// buffer has memory (it may never have been released); false when out of
/// memory.
///
/// # Safety
/// As for `release`.
pub unsafe fn acquire(pool: *mut ngx_pool_t, b: *mut ngx_buf_t, side: &str) -> bool {
    // SAFETY: b and pool are live as the caller promises.
    unsafe {
        if !(*b).start.is_null() {
            return true;
        }
        let size = (*b).file_last as usize;
        let reused = with_free(|free| {
            let i = free.iter().rposition(|f| f.size == size)?;
            Some(free.swap_remove(i).start)
        })
        .flatten();
        let start = match reused {
            Some(start) => start,
            None => nginx_sys::ngx_alloc(size, (*pool).log).cast::<u8>(),
        };
        if start.is_null() {
            return false;
        }
        let node = match large_node(pool, ptr::null_mut()) {
            Some(node) => node,
            None => {
                let node = nginx_sys::ngx_palloc(pool, size_of::<ngx_pool_large_t>())
                    .cast::<ngx_pool_large_t>();
                if node.is_null() {
                    nginx_sys::free(start.cast());
                    return false;
                }
                (*node).next = (*pool).large;
                (*pool).large = node;
                node
            }
        };
        (*node).alloc = start.cast();
        (*b).start = start;
        (*b).pos = start;
        (*b).last = start;
        (*b).end = start.add(size);
        (*b).file_last = 0;
        crate::mail_debug!((*pool).log, "mail relay buffer taken: {}, {}", side, size);
        true
    }
}

/// The pool's large-block node that holds `alloc` (null: a free node).
///
/// # Safety
/// `pool` is live.
unsafe fn large_node(
    pool: *mut ngx_pool_t,
    alloc: *mut core::ffi::c_void,
) -> Option<*mut ngx_pool_large_t> {
    // SAFETY: the pool's large list is well formed while the pool lives.
    unsafe {
        let mut node = (*pool).large;
        while !node.is_null() {
            if (*node).alloc == alloc {
                return Some(node);
            }
            node = (*node).next;
        }
    }
    None
}
