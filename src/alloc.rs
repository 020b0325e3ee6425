//! Where this module's Rust allocations live: small blocks in size-class
//! slabs of their own, larger ones in malloc.
//!
//! A session's pre-login state (protocol state, SASL exchange, parsed auth
//! response, backend dialogue) is allocated between nginx's long-lived
//! allocations for that session (its pool blocks, its proxy buffer) and
//! freed at login. In glibc's heap those frees left holes between blocks that
//! stay: 2,000 idle POP3 sessions took about 250 bytes more RSS each than
//! stock's, with the same bytes in use (the difference was all free chunks;
//! with Rust's allocations moved out of the heap it was gone). Here small
//! blocks are carved from 64 KiB chunks and recycled per size class, so they
//! never sit between nginx's blocks; what the slabs hold is the peak of
//! blocks in use at once, reused by later sessions.
//!
//! `NGX_MAIL_RS_SYSTEM_ALLOC=1` in nginx's environment at start sends every
//! allocation to malloc instead, so that valgrind sees each block of ours
//! (scripts/memcheck.sh sets it). `NGX_MAIL_RS_SLAB_DEBUG=1` keeps the slabs
//! and checks them: a block freed twice, or written to while free, aborts
//! the process with a message (scripts/memcheck.sh --slabs sets it).
//!
//! Every block is zeroed when it is freed, on both paths: credentials,
//! SASL responses, tokens, auth requests and backend login lines pass
//! through Rust buffers, and none of them may outlive its owner in freed
//! memory.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::alloc::System;

/// Size classes are multiples of this, which is also the largest alignment
/// the slabs give.
const GRAIN: usize = 16;
/// Larger blocks go to malloc.
const LARGEST: usize = 1024;
const CLASSES: usize = LARGEST / GRAIN;
const CHUNK: usize = 64 * 1024;

const MODE_UNSET: u8 = 0;
const MODE_SLABS: u8 = 1;
const MODE_SYSTEM: u8 = 2;
const MODE_SLABS_DEBUG: u8 = 3;

struct FreeBlock {
    next: *mut FreeBlock,
}

/// The bytes of a free block that hold its link.
const LINK: usize = size_of::<FreeBlock>();

/// Zeroes `len` bytes that are about to be freed; the pointer escapes, so
/// the stores cannot be dropped as dead.
///
/// # Safety
/// `block` has `len` writable bytes.
unsafe fn wipe(block: *mut u8, len: usize) {
    // SAFETY: as the caller promises.
    unsafe { ptr::write_bytes(block, 0, len) };
    core::hint::black_box(block);
}

/// A chunk for the slabs. In debug mode (run under valgrind) it is mapped
/// rather than malloc'd: nginx unloads this module at exit, taking the
/// chunk list with it, and memcheck would count the chunks as leaks.
fn new_chunk(debug: bool) -> *mut u8 {
    if debug {
        // SAFETY: an anonymous private mapping of CHUNK bytes.
        let p = unsafe {
            nginx_sys::mmap(
                ptr::null_mut(),
                CHUNK,
                (nginx_sys::PROT_READ | nginx_sys::PROT_WRITE) as core::ffi::c_int,
                (nginx_sys::MAP_PRIVATE | nginx_sys::MAP_ANONYMOUS) as core::ffi::c_int,
                -1,
                0,
            )
        };
        if p as isize == -1 {
            return ptr::null_mut();
        }
        return p.cast();
    }
    // SAFETY: a non-zero size and a valid alignment.
    unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, GRAIN)) }
}

/// The slabs are corrupt: say so and stop, without allocating.
fn fatal(msg: &[u8]) -> ! {
    // SAFETY: writes a static message to stderr.
    unsafe { nginx_sys::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort()
}

struct Slabs {
    free: [*mut FreeBlock; CLASSES],
    /// The unused rest of the newest chunk.
    next: *mut u8,
    end: *mut u8,
    /// The newest chunk, whose first GRAIN bytes point at the one before:
    /// chunks live as long as the process, and so stay reachable (for
    /// valgrind, and anyone reading a core).
    chunks: *mut u8,
}

pub struct WorkerAlloc {
    lock: AtomicBool,
    mode: AtomicU8,
    slabs: UnsafeCell<Slabs>,
}

// SAFETY: the slabs are only touched with `lock` held.
unsafe impl Sync for WorkerAlloc {}

impl WorkerAlloc {
    pub const fn new() -> Self {
        WorkerAlloc::with_mode(MODE_UNSET)
    }

    const fn with_mode(mode: u8) -> Self {
        WorkerAlloc {
            lock: AtomicBool::new(false),
            mode: AtomicU8::new(mode),
            slabs: UnsafeCell::new(Slabs {
                free: [ptr::null_mut(); CLASSES],
                next: ptr::null_mut(),
                end: ptr::null_mut(),
                chunks: ptr::null_mut(),
            }),
        }
    }

    /// A slab allocator that never looks at the environment (for tests).
    #[cfg(test)]
    const fn slabs_only() -> Self {
        WorkerAlloc::with_mode(MODE_SLABS)
    }

    /// The same, with the debug checks on (for tests).
    #[cfg(test)]
    const fn slabs_debug() -> Self {
        WorkerAlloc::with_mode(MODE_SLABS_DEBUG)
    }

    /// The size class of `layout`, or `None` for malloc. Fixed for the
    /// process at the first allocation, so a block is freed the way it
    /// was allocated.
    fn class(&self, layout: Layout) -> Option<usize> {
        if layout.size() > LARGEST || layout.align() > GRAIN || self.use_system() {
            return None;
        }
        Some(layout.size().max(1).div_ceil(GRAIN) - 1)
    }

    fn use_system(&self) -> bool {
        self.mode() == MODE_SYSTEM
    }

    fn debug(&self) -> bool {
        self.mode() == MODE_SLABS_DEBUG
    }

    fn mode(&self) -> u8 {
        let mode = self.mode.load(Ordering::Relaxed);
        if mode != MODE_UNSET {
            return mode;
        }
        let set = |name: &core::ffi::CStr| {
            // SAFETY: the name is a C string; getenv does not allocate.
            unsafe { !nginx_sys::getenv(name.as_ptr()).is_null() }
        };
        let mode = if set(c"NGX_MAIL_RS_SYSTEM_ALLOC") {
            MODE_SYSTEM
        } else if set(c"NGX_MAIL_RS_SLAB_DEBUG") {
            MODE_SLABS_DEBUG
        } else {
            MODE_SLABS
        };
        // the first caller decides; a racing one takes its answer
        match self
            .mode
            .compare_exchange(MODE_UNSET, mode, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => mode,
            Err(m) => m,
        }
    }

    fn with_slabs<R>(&self, f: impl FnOnce(&mut Slabs) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: the lock gives this caller the only access.
        let r = f(unsafe { &mut *self.slabs.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

impl Default for WorkerAlloc {
    fn default() -> Self {
        WorkerAlloc::new()
    }
}

impl Slabs {
    /// # Safety
    /// Every block on the free lists came from `take` of the same class and
    /// is no longer used.
    unsafe fn take(&mut self, class: usize, debug: bool) -> *mut u8 {
        let Some(head) = self.free.get_mut(class) else {
            return ptr::null_mut();
        };
        if !head.is_null() {
            let block = *head;
            // SAFETY: a free block holds the link written by give().
            *head = unsafe { (*block).next };
            if debug {
                // SAFETY: the block has the class's size; give() zeroed all
                // of it but the link.
                let rest = unsafe {
                    core::slice::from_raw_parts(
                        block.cast::<u8>().add(LINK),
                        (class + 1) * GRAIN - LINK,
                    )
                };
                if rest.iter().any(|&b| b != 0) {
                    fatal(b"ngx-mail-rs: a slab block was written to while free\n");
                }
            }
            return block.cast();
        }
        let size = (class + 1) * GRAIN;
        if (self.end as usize) - (self.next as usize) < size {
            // the rest of the old chunk (less than one block) is left unused
            let chunk = new_chunk(debug);
            if chunk.is_null() {
                return ptr::null_mut();
            }
            // SAFETY: the chunk has CHUNK bytes, GRAIN-aligned; its first
            // GRAIN hold the link.
            unsafe {
                chunk.cast::<*mut u8>().write(self.chunks);
                self.chunks = chunk;
                self.next = chunk.add(GRAIN);
                self.end = chunk.add(CHUNK);
            }
        }
        let block = self.next;
        // SAFETY: at least `size` bytes are left before `end`.
        self.next = unsafe { block.add(size) };
        block
    }

    /// Puts a block back on its class's list; false (and nothing done)
    /// when `debug` finds it there already.
    ///
    /// # Safety
    /// `block` came from `take(class)` and is no longer used; without
    /// `debug`, it is not free already.
    #[must_use]
    unsafe fn give(&mut self, class: usize, block: *mut u8, debug: bool) -> bool {
        let Some(head) = self.free.get_mut(class) else {
            return true;
        };
        let block = block.cast::<FreeBlock>();
        if debug {
            let mut free = *head;
            while !free.is_null() {
                if free == block {
                    return false;
                }
                // SAFETY: a free block holds the link written here.
                free = unsafe { (*free).next };
            }
        }
        // SAFETY: the block is ours again, at least GRAIN bytes and
        // GRAIN-aligned; nothing of its owner's may stay in it.
        unsafe {
            wipe(block.cast(), (class + 1) * GRAIN);
            (*block).next = *head;
        }
        *head = block;
        true
    }
}

// SAFETY: blocks are GRAIN-aligned and at least layout.size() bytes; a block
// is handed out once until it is freed; everything else goes to malloc.
unsafe impl GlobalAlloc for WorkerAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.class(layout) {
            // SAFETY: the free lists hold only freed blocks of their class.
            Some(class) => {
                let debug = self.debug();
                self.with_slabs(|s| unsafe { s.take(class, debug) })
            }
            // SAFETY: the caller's layout is valid and non-zero.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match self.class(layout) {
            Some(class) => {
                let debug = self.debug();
                // SAFETY: the caller frees a block this allocator gave for
                // the same layout, hence the same class.
                if !self.with_slabs(|s| unsafe { s.give(class, block, debug) }) {
                    fatal(b"ngx-mail-rs: a slab block was freed twice\n");
                }
            }
            // SAFETY: as above, from malloc; its bytes go first.
            None => unsafe {
                wipe(block, layout.size());
                System.dealloc(block, layout)
            },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's promises for realloc hold for the new layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (self.class(layout), self.class(new)) {
            // a block that only shrinks stays where it is
            (None, None) if new_size <= layout.size() => {
                // SAFETY: the cut tail is the caller's no more.
                unsafe {
                    wipe(block.add(new_size), layout.size() - new_size);
                    System.realloc(block, layout, new_size)
                }
            }
            (Some(a), Some(b)) if a == b => block,
            // malloc's realloc could free the old block unwiped: move it here
            _ => {
                // SAFETY: a fresh block for `new`, then the old one freed.
                unsafe {
                    let moved = self.alloc(new);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random allocations, reallocations and frees against a model: every
    /// live block keeps its fill, is aligned, and overlaps no other.
    #[test]
    fn blocks_keep_their_bytes_and_never_overlap() {
        let a = WorkerAlloc::slabs_only();
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..200_000u32 {
            let r = rand();
            if live.len() < 500 && (r % 3 != 0 || live.is_empty()) {
                let size = 1 + (rand() % 1500) as usize;
                let align = [1, 2, 8, 16, 32][(rand() % 5) as usize];
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a valid non-zero layout.
                let p = unsafe { a.alloc(layout) };
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                let fill = step as u8;
                // SAFETY: p has size bytes.
                unsafe { ptr::write_bytes(p, fill, size) };
                live.push((p, layout, fill));
            } else {
                let i = (rand() as usize) % live.len();
                let (p, layout, fill) = live.swap_remove(i);
                // SAFETY: p has layout.size() bytes.
                let bytes = unsafe { core::slice::from_raw_parts(p, layout.size()) };
                assert!(
                    bytes.iter().all(|&b| b == fill),
                    "block changed under its owner"
                );
                if r % 2 == 0 {
                    let new_size = 1 + (rand() % 1500) as usize;
                    // SAFETY: p came from a with layout.
                    let q = unsafe { a.realloc(p, layout, new_size) };
                    assert!(!q.is_null());
                    // SAFETY: q has new_size bytes, the first of them moved.
                    let kept =
                        unsafe { core::slice::from_raw_parts(q, layout.size().min(new_size)) };
                    assert!(kept.iter().all(|&b| b == fill), "realloc lost bytes");
                    // SAFETY: as above.
                    unsafe { ptr::write_bytes(q, fill, new_size) };
                    let nl = Layout::from_size_align(new_size, layout.align()).unwrap();
                    live.push((q, nl, fill));
                } else {
                    // SAFETY: p came from a with layout.
                    unsafe { a.dealloc(p, layout) };
                }
            }
        }
        let mut spans: Vec<(usize, usize)> = live
            .iter()
            .map(|&(p, l, _)| (p as usize, p as usize + l.size()))
            .collect();
        spans.sort_unstable();
        assert!(
            spans.windows(2).all(|w| w[0].1 <= w[1].0),
            "two live blocks overlap"
        );
    }

    #[test]
    fn a_freed_block_is_reused_for_its_class() {
        let a = WorkerAlloc::slabs_only();
        let small = Layout::from_size_align(40, 8).unwrap();
        // SAFETY: valid layouts; each block is freed once with its layout.
        unsafe {
            let p = a.alloc(small);
            a.dealloc(p, small);
            assert_eq!(a.alloc(Layout::from_size_align(33, 1).unwrap()), p);
            let other = a.alloc(Layout::from_size_align(17, 1).unwrap());
            assert_ne!(other, p);
        }
    }

    #[test]
    fn freed_blocks_are_zeroed() {
        for a in [WorkerAlloc::slabs_only(), WorkerAlloc::slabs_debug()] {
            let layout = Layout::from_size_align(48, 8).unwrap();
            // SAFETY: valid layouts; each block is freed once; the freed
            // block is read only as the allocator's own free block.
            unsafe {
                let p = a.alloc(layout);
                ptr::write_bytes(p, b'S', 48);
                a.dealloc(p, layout);
                let left = core::slice::from_raw_parts(p.add(LINK), 48 - LINK);
                assert!(left.iter().all(|&b| b == 0), "secret left in a free block");
                assert_eq!(a.alloc(layout), p);
            }
        }
    }

    #[test]
    fn debug_mode_finds_a_double_free() {
        let a = WorkerAlloc::slabs_debug();
        let layout = Layout::from_size_align(32, 8).unwrap();
        // SAFETY: the block is given back through the slabs directly so
        // that the second give is seen, not acted on.
        unsafe {
            let p = a.alloc(layout);
            let other = a.alloc(layout);
            a.dealloc(other, layout);
            assert!(a.with_slabs(|s| s.give(1, p, true)));
            assert!(!a.with_slabs(|s| s.give(1, p, true)), "double free missed");
            assert!(!a.with_slabs(|s| s.give(1, other, true)));
        }
    }

    #[test]
    fn large_and_overaligned_blocks_go_to_malloc() {
        let a = WorkerAlloc::slabs_only();
        assert_eq!(
            a.class(Layout::from_size_align(1024, 16).unwrap()),
            Some(63)
        );
        assert_eq!(a.class(Layout::from_size_align(1025, 16).unwrap()), None);
        assert_eq!(a.class(Layout::from_size_align(64, 32).unwrap()), None);
        assert_eq!(a.class(Layout::from_size_align(1, 1).unwrap()), Some(0));
        assert_eq!(a.class(Layout::from_size_align(17, 1).unwrap()), Some(1));
    }
}
