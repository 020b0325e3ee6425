//! `limit_conn_zone`'s shared memory: per zone, one red-black tree of
//! counters in nginx's slab pool, as freenginx's mail (and nginx's http
//! and stream) limit_conn keep it. nginx maps every zone before it forks
//! the workers, so all of them count in the same tree, under the pool's
//! mutex.
//!
//! A node is nginx's tree node, then the count and the key: ordered by the
//! key's hash (`mail_core::limit::hash`), then its bytes. It lives while a
//! session holds a `Lease` on it and is freed with the last one.

use core::cell::Cell;
use core::ffi::c_void;
use core::mem::offset_of;
use core::ptr::{self, addr_of_mut};

use mail_core::limit::{hash, Key};
use nginx_sys::{
    ngx_int_t, ngx_rbt_red, ngx_rbtree_delete, ngx_rbtree_init, ngx_rbtree_insert,
    ngx_rbtree_node_t, ngx_rbtree_t, ngx_shm_zone_t, ngx_shmtx_lock, ngx_shmtx_unlock,
    ngx_slab_alloc, ngx_slab_alloc_locked, ngx_slab_free_locked, ngx_slab_pool_t,
};

use crate::ffi::{bytes, LOG_EMERG};

/// The zone's own part of the shared memory: the tree.
#[repr(C)]
struct Shared {
    rbtree: ngx_rbtree_t,
    sentinel: ngx_rbtree_node_t,
}

/// One key's counter, allocated with room for `len` bytes of key.
#[repr(C)]
struct Node {
    rb: ngx_rbtree_node_t,
    conn: u16,
    len: u8,
    data: [u8; 0],
}

/// The bytes of a node's key.
///
/// # Safety
/// `node` is a live node of a zone's tree (or one being inserted).
unsafe fn key_of<'a>(node: *const Node) -> &'a [u8] {
    // SAFETY: as the caller promises; a node is allocated with `len` bytes
    // after its header.
    unsafe {
        core::slice::from_raw_parts(
            ptr::addr_of!((*node).data).cast::<u8>(),
            usize::from((*node).len),
        )
    }
}

/// A zone: its key, and once nginx has mapped it, its pool and tree. The
/// shm zone's `data`; it lives in the configuration pool.
pub struct ZoneCtx {
    /// The key as written (`$remote_user`), for the logs and for the check
    /// at reload that a zone keeps its key.
    pub key_text: Vec<u8>,
    pub key: Key,
    shpool: Cell<*mut ngx_slab_pool_t>,
    shared: Cell<*mut Shared>,
}

impl ZoneCtx {
    pub fn new(key_text: &[u8], key: Key) -> ZoneCtx {
        ZoneCtx {
            key_text: key_text.to_vec(),
            key,
            shpool: Cell::new(ptr::null_mut()),
            shared: Cell::new(ptr::null_mut()),
        }
    }
}

/// The zone behind a `limit_conn`.
///
/// # Safety
/// `shm_zone` is a shared memory zone of this cycle.
pub unsafe fn ctx_of<'a>(shm_zone: *mut ngx_shm_zone_t) -> Option<&'a ZoneCtx> {
    // SAFETY: as the caller promises; our zones' data is a ZoneCtx (or
    // null for a name no limit_conn_zone declared, which nginx refuses
    // before any session).
    unsafe { (*shm_zone).data.cast::<ZoneCtx>().as_ref() }
}

/// The shared memory's mutex, held while the guard lives.
struct Locked(*mut ngx_slab_pool_t);

impl Locked {
    /// # Safety
    /// `shpool` is a mapped zone's slab pool.
    unsafe fn new(shpool: *mut ngx_slab_pool_t) -> Locked {
        // SAFETY: as the caller promises.
        unsafe { ngx_shmtx_lock(addr_of_mut!((*shpool).mutex)) };
        Locked(shpool)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: locked in `new`, by this process.
        unsafe { ngx_shmtx_unlock(addr_of_mut!((*self.0).mutex)) };
    }
}

/// What counting one more connection under a key gave.
pub enum Acquire {
    /// Counted, until the lease is dropped; the count is now `conn`.
    Counted { lease: Lease, conn: u16 },
    /// `limit` connections are counted already.
    Full,
    /// The zone has no room for another key (nginx logged it at `crit`).
    NoMemory,
}

impl ZoneCtx {
    /// Counts one more connection under `key` (1 to 255 bytes), unless
    /// `limit` are counted already.
    pub fn acquire(&'static self, key: &[u8], limit: usize) -> Acquire {
        let shpool = self.shpool.get();
        let shared = self.shared.get();
        let Ok(len) = u8::try_from(key.len()) else {
            return Acquire::NoMemory;
        };
        if shpool.is_null() || shared.is_null() {
            return Acquire::NoMemory;
        }
        let h = hash(key);
        // SAFETY: the zone is mapped (init_zone ran) in every worker for
        // its whole life; the tree is only touched under the mutex.
        unsafe {
            let _locked = Locked::new(shpool);
            let tree = addr_of_mut!((*shared).rbtree);
            let mut node = lookup(tree, h, key);
            if node.is_null() {
                let size = offset_of!(Node, data) + key.len();
                node = ngx_slab_alloc_locked(shpool, size).cast::<Node>();
                if node.is_null() {
                    return Acquire::NoMemory;
                }
                (*node).rb.key = h as nginx_sys::ngx_rbtree_key_t;
                (*node).conn = 1;
                (*node).len = len;
                ptr::copy_nonoverlapping(
                    key.as_ptr(),
                    ptr::addr_of_mut!((*node).data).cast::<u8>(),
                    key.len(),
                );
                ngx_rbtree_insert(tree, node.cast());
            } else {
                if usize::from((*node).conn) >= limit {
                    return Acquire::Full;
                }
                (*node).conn += 1;
            }
            Acquire::Counted {
                lease: Lease { zone: self, node },
                conn: (*node).conn,
            }
        }
    }
}

/// One counted connection of a session; dropping it uncounts it.
pub struct Lease {
    zone: &'static ZoneCtx,
    node: *mut Node,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let shpool = self.zone.shpool.get();
        let shared = self.zone.shared.get();
        // SAFETY: a lease's node stays in the tree (its count is at least
        // this lease's) until the last lease on it goes, here, under the
        // mutex; the zone stays mapped for the worker's life.
        unsafe {
            let _locked = Locked::new(shpool);
            crate::mail_debug!(
                (*nginx_sys::ngx_cycle).log,
                "limit conn cleanup: {:08X} {}",
                (*self.node).rb.key,
                (*self.node).conn
            );
            (*self.node).conn = (*self.node).conn.saturating_sub(1);
            if (*self.node).conn == 0 {
                ngx_rbtree_delete(addr_of_mut!((*shared).rbtree), self.node.cast());
                ngx_slab_free_locked(shpool, self.node.cast());
            }
        }
    }
}

impl Lease {
    /// The node's tree key (the key's hash), for debug traces.
    pub fn hash(&self) -> u32 {
        // SAFETY: the node lives while the lease does.
        unsafe { (*self.node).rb.key as u32 }
    }
}

/// The node of `key`, or null.
///
/// # Safety
/// `tree` is a zone's tree, locked.
unsafe fn lookup(tree: *mut ngx_rbtree_t, h: u32, key: &[u8]) -> *mut Node {
    // SAFETY: as the caller promises; every node but the sentinel is a Node.
    unsafe {
        let sentinel = (*tree).sentinel;
        let mut node = (*tree).root;
        let h = h as nginx_sys::ngx_rbtree_key_t;
        while node != sentinel {
            let order = h
                .cmp(&(*node).key)
                .then_with(|| key.cmp(key_of(node.cast::<Node>())));
            node = match order {
                core::cmp::Ordering::Less => (*node).left,
                core::cmp::Ordering::Greater => (*node).right,
                core::cmp::Ordering::Equal => return node.cast(),
            };
        }
        ptr::null_mut()
    }
}

/// The tree's insert function: by hash, then by key bytes.
unsafe extern "C" fn insert_value(
    mut temp: *mut ngx_rbtree_node_t,
    node: *mut ngx_rbtree_node_t,
    sentinel: *mut ngx_rbtree_node_t,
) {
    // SAFETY: nginx calls this with the tree's root (not the sentinel), a
    // new node and the sentinel; all but the sentinel are Nodes.
    unsafe {
        loop {
            let order = (*node)
                .key
                .cmp(&(*temp).key)
                .then_with(|| key_of(node.cast::<Node>()).cmp(key_of(temp.cast::<Node>())));
            let p = if order == core::cmp::Ordering::Less {
                addr_of_mut!((*temp).left)
            } else {
                addr_of_mut!((*temp).right)
            };
            if *p == sentinel {
                *p = node;
                break;
            }
            temp = *p;
        }
        (*node).parent = temp;
        (*node).left = sentinel;
        (*node).right = sentinel;
        ngx_rbt_red(node);
    }
}

/// The zone's `init`: a new zone gets its tree; at a reload, a zone kept
/// by nginx (same name, size and module) keeps its tree, and its counts,
/// if it kept its key.
pub unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    const OK: ngx_int_t = nginx_sys::NGX_OK as ngx_int_t;
    const ERROR: ngx_int_t = nginx_sys::NGX_ERROR as ngx_int_t;
    // SAFETY: nginx calls this once per zone and cycle, with the zone
    // mapped, its data our ZoneCtx, and `data` the previous cycle's
    // ZoneCtx of a zone it kept (or null).
    unsafe {
        let Some(ctx) = ctx_of(shm_zone) else {
            return ERROR;
        };
        let name = String::from_utf8_lossy(bytes(&(*shm_zone).shm.name)).into_owned();
        if let Some(old) = data.cast::<ZoneCtx>().as_ref() {
            if old.key_text != ctx.key_text {
                crate::mail_log!(
                    LOG_EMERG,
                    (*shm_zone).shm.log,
                    "limit_conn_zone \"{}\" uses the \"{}\" key while previously it used the \"{}\" key",
                    name,
                    String::from_utf8_lossy(&ctx.key_text),
                    String::from_utf8_lossy(&old.key_text)
                );
                return ERROR;
            }
            ctx.shpool.set(old.shpool.get());
            ctx.shared.set(old.shared.get());
            return OK;
        }
        let shpool = (*shm_zone).shm.addr.cast::<ngx_slab_pool_t>();
        ctx.shpool.set(shpool);
        if (*shm_zone).shm.exists != 0 {
            ctx.shared.set((*shpool).data.cast());
            return OK;
        }
        let shared = ngx_slab_alloc(shpool, size_of::<Shared>()).cast::<Shared>();
        if shared.is_null() {
            return ERROR;
        }
        (*shpool).data = shared.cast();
        ctx.shared.set(shared);
        ngx_rbtree_init(
            addr_of_mut!((*shared).rbtree),
            addr_of_mut!((*shared).sentinel),
            Some(insert_value),
        );
        // the slab pool's "no memory" line names the zone
        let log_ctx = format!(" in limit_conn_zone \"{name}\"\0");
        let p = ngx_slab_alloc(shpool, log_ctx.len()).cast::<u8>();
        if p.is_null() {
            return ERROR;
        }
        ptr::copy_nonoverlapping(log_ctx.as_ptr(), p, log_ctx.len());
        (*shpool).log_ctx = p;
        OK
    }
}
