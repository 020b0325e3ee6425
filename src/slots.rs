//! Per-session state that a module keeps in its own `s->ctx` slot, as
//! nginx's auth_http module keeps its ctx, and that goes with its stage.
//!
//! A state lives on the heap (this module's slabs), not in the session's
//! pool: it goes at login, and an idle proxied session must hold no more
//! than a stock one. Until it goes, a node in the pool's cleanup list drops
//! it if the session ends first; the node lives in the same heap block
//! (a node allocated in the pool would stay there: 24 bytes, which in a
//! POP3 session's 256-byte pool blocks can cost a whole extra block).
//!
//! A slot may hold different types over a session (the SMTP module's the
//! client-name lookup, then the protocol state; the proxy module's the login
//! dialogue, then the relay's pipes): each block records its type, and an
//! access with another type finds nothing.

use core::any::TypeId;
use core::ffi::c_void;
use core::mem::ManuallyDrop;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use nginx_sys::{ngx_module_t, ngx_pool_cleanup_t, ngx_pool_t};

/// A type a module keeps per session in its slot. The module is named
/// where the module tables are (the top layer), so that the stage that
/// owns the type need not import them.
pub trait SessionState: Sized + 'static {
    fn module() -> *const ngx_module_t;
}

#[repr(C)]
struct Header {
    /// First, so that the node's address is the block's.
    cleanup: ngx_pool_cleanup_t,
    /// The session's slot that points here (or `own_slot`).
    slot: *mut *mut c_void,
    /// The slot of a value that lives as long as the session (the end
    /// watch): in no module's, and left alone at login.
    own_slot: *mut c_void,
    /// A module's state for the rest of the session (`put_kept`): left
    /// alone at login too.
    kept: bool,
    type_id: TypeId,
    /// Drops the value in place (the block's memory stays).
    drop_value: unsafe fn(*mut Header),
    /// Frees the block's memory (its value already dropped or moved out).
    free: unsafe fn(*mut Header),
}

#[repr(C)]
struct Block<T> {
    header: Header,
    value: ManuallyDrop<T>,
}

unsafe fn drop_value<T>(h: *mut Header) {
    // SAFETY: h is the header of a Block<T> whose value is still there.
    unsafe { ManuallyDrop::drop(&mut (*h.cast::<Block<T>>()).value) };
}

unsafe fn free<T>(h: *mut Header) {
    // SAFETY: h came from Box::into_raw of a Block<T>; the value is gone,
    // and ManuallyDrop keeps the Box from dropping it again.
    drop(unsafe { Box::from_raw(h.cast::<Block<T>>()) });
}

/// A block for `value` whose node is linked into `pool`'s cleanups; it
/// points at `slot`, or (null) at its own.
///
/// # Safety
/// `pool` is a live session pool; `slot` is null or that session's slot.
unsafe fn link<T: 'static>(pool: *mut ngx_pool_t, slot: *mut *mut c_void, value: T) -> *mut Header {
    let h = Box::into_raw(Box::new(Block {
        header: Header {
            cleanup: ngx_pool_cleanup_t {
                handler: Some(pool_cleanup),
                data: ptr::null_mut(),
                next: ptr::null_mut(),
            },
            slot,
            own_slot: ptr::null_mut(),
            kept: false,
            type_id: TypeId::of::<T>(),
            drop_value: drop_value::<T>,
            free: free::<T>,
        },
        value: ManuallyDrop::new(value),
    }))
    .cast::<Header>();
    // SAFETY: as the caller promises; the node stays linked until `unlink`
    // or the pool runs it.
    unsafe {
        if slot.is_null() {
            (*h).slot = &raw mut (*h).own_slot;
        }
        *(*h).slot = h.cast();
        (*h).cleanup.data = h.cast();
        (*h).cleanup.next = (*pool).cleanup;
        (*pool).cleanup = &raw mut (*h).cleanup;
    }
    h
}

/// # Safety
/// `slot` is a live session's slot; `pool` its live pool; the slot is empty.
pub unsafe fn put<T: SessionState>(pool: *mut ngx_pool_t, slot: *mut *mut c_void, value: T) {
    // SAFETY: as the caller promises.
    unsafe { link(pool, slot, value) };
}

/// As `put`, for the rest of the session: `clear_all` (login) passes it
/// by, so the module's slot reaches it until the pool goes (which drops
/// it) or it is taken back.
///
/// # Safety
/// As for `put`.
pub unsafe fn put_kept<T: SessionState>(pool: *mut ngx_pool_t, slot: *mut *mut c_void, value: T) {
    // SAFETY: as the caller promises.
    unsafe { (*link(pool, slot, value)).kept = true };
}

/// Gives `value` to the session for as long as its pool lives: it is
/// dropped when the pool goes, however the session closes, and never
/// before (`clear_all` passes it by) unless `unwatch` takes it back.
///
/// # Safety
/// `pool` is a live session pool.
pub unsafe fn watch<T: 'static>(pool: *mut ngx_pool_t, value: T) {
    // SAFETY: as the caller promises.
    unsafe { link(pool, ptr::null_mut(), value) };
}

/// Takes back the value `watch` gave the pool, if there is one of type `T`.
///
/// # Safety
/// `pool` is a live session pool; no borrow of the value is live.
pub unsafe fn unwatch<T: 'static>(pool: *mut ngx_pool_t) -> Option<T> {
    // SAFETY: as the caller promises; our nodes are blocks' headers.
    unsafe {
        let ours = pool_cleanup as unsafe extern "C" fn(*mut c_void) as usize;
        let mut node = (*pool).cleanup;
        while !node.is_null() {
            let h = node.cast::<Header>();
            if (*node).handler.map(|f| f as usize) == Some(ours)
                && (*h).slot == &raw mut (*h).own_slot
                && (*h).type_id == TypeId::of::<T>()
            {
                let h = unlink(pool, (*h).slot);
                let value = ManuallyDrop::take(&mut (*h.cast::<Block<T>>()).value);
                ((*h).free)(h);
                return Some(value);
            }
            node = (*node).next;
        }
        None
    }
}

/// The value of type `T` in `slot`, if that is what it holds.
///
/// # Safety
/// `slot` is a live session's slot, null or set by `put`; the returned
/// borrow must end before anything can change or free the slot's block.
pub unsafe fn get<'a, T: SessionState>(slot: *mut *mut c_void) -> Option<&'a mut T> {
    // SAFETY: as the caller promises.
    unsafe {
        let h = (*slot).cast::<Header>();
        if h.is_null() || (*h).type_id != TypeId::of::<T>() {
            return None;
        }
        Some(&mut *(*h.cast::<Block<T>>()).value)
    }
}

/// Unlinks the block in `slot` from the pool's cleanups and empties the
/// slot; the caller then owns the block.
///
/// # Safety
/// As for `get`; `pool` is the session's live pool.
unsafe fn unlink(pool: *mut ngx_pool_t, slot: *mut *mut c_void) -> *mut Header {
    // SAFETY: as the caller promises: the block's node is in this pool's
    // cleanup list.
    unsafe {
        let h = ptr::replace(slot, ptr::null_mut()).cast::<Header>();
        if h.is_null() {
            return h;
        }
        let mut link = &raw mut (*pool).cleanup;
        while !(*link).is_null() {
            if *link == &raw mut (*h).cleanup {
                *link = (*h).cleanup.next;
                break;
            }
            link = &raw mut (**link).next;
        }
        h
    }
}

/// Moves the value of type `T` out of `slot`; the slot is then empty.
///
/// # Safety
/// As for `unlink`.
pub unsafe fn take<T: SessionState>(pool: *mut ngx_pool_t, slot: *mut *mut c_void) -> Option<T> {
    // SAFETY: as the caller promises; the type is checked before the block
    // is unlinked, and freed only after its value moved out.
    unsafe {
        let h = (*slot).cast::<Header>();
        if h.is_null() || (*h).type_id != TypeId::of::<T>() {
            return None;
        }
        let h = unlink(pool, slot);
        let value = ManuallyDrop::take(&mut (*h.cast::<Block<T>>()).value);
        ((*h).free)(h);
        Some(value)
    }
}

/// Drops whatever `slot` holds.
///
/// # Safety
/// As for `unlink`; no borrow of the value is live.
pub unsafe fn clear(pool: *mut ngx_pool_t, slot: *mut *mut c_void) {
    // SAFETY: as the caller promises.
    unsafe {
        let h = unlink(pool, slot);
        if !h.is_null() {
            ((*h).drop_value)(h);
            ((*h).free)(h);
        }
    }
}

/// Drops every state of ours in `pool`'s session, whatever its slot: at
/// login nothing of the stages before it is needed any more.
///
/// # Safety
/// `pool` is a live session pool; no borrow of any state is live.
pub unsafe fn clear_all(pool: *mut ngx_pool_t) {
    // SAFETY: as the caller promises; each of our nodes is a block's header.
    unsafe {
        loop {
            let mut node = (*pool).cleanup;
            // our nodes are the ones with our handler (one function of this
            // module, so one address)
            let ours = pool_cleanup as unsafe extern "C" fn(*mut c_void) as usize;
            // ours, and neither a watch (which points at its own slot) nor
            // kept for the rest of the session
            while !node.is_null()
                && ((*node).handler.map(|h| h as usize) != Some(ours)
                    || (*node.cast::<Header>()).slot == &raw mut (*node.cast::<Header>()).own_slot
                    || (*node.cast::<Header>()).kept)
            {
                node = (*node).next;
            }
            if node.is_null() {
                return;
            }
            clear(pool, (*node.cast::<Header>()).slot);
        }
    }
}

/// A block whose cleanup ran: `ngx_destroy_pool` still reads the node's
/// `next` after the handler returns, so its memory goes at the next cleanup.
static RETIRED: AtomicPtr<Header> = AtomicPtr::new(ptr::null_mut());

/// Frees the last retired block (at process exit: no pool is being
/// destroyed then).
pub fn free_retired() {
    let h = RETIRED.swap(ptr::null_mut(), Ordering::Relaxed);
    if !h.is_null() {
        // SAFETY: a retired block's value was dropped and its pool's
        // cleanups are over; only its memory is left.
        unsafe { ((*h).free)(h) };
    }
}

/// The pool's cleanup of a state whose session ended before its stage did.
///
/// # Safety
/// `data` is a block's header whose node is being run by `ngx_destroy_pool`.
unsafe extern "C" fn pool_cleanup(data: *mut c_void) {
    let h = data.cast::<Header>();
    // SAFETY: as the caller promises; the slot is emptied before the drop
    // so that nothing can reach the value while it goes. The previous
    // retired block's node was passed already (the list is walked forward).
    unsafe {
        *(*h).slot = ptr::null_mut();
        ((*h).drop_value)(h);
        let previous = RETIRED.swap(h, Ordering::Relaxed);
        if !previous.is_null() {
            ((*previous).free)(previous);
        }
    }
}
