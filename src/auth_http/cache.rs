//! `auth_http_cache zone=NAME:SIZE [valid=T] [invalid=T]` (ours): answers
//! of the auth server in shared memory, for every worker. An entry is the
//! raw answer (up to the empty line, as read) under the HMAC-SHA-256 of
//! the login's key parts with a secret the zone draws at its creation, in
//! a red-black tree by the digest's first word and a queue from the most
//! to the least recently used; when the slab pool is full the least
//! recently used entries go. An entry ends at its TTL only.

use core::ffi::c_void;
use core::mem::offset_of;
use core::ptr::{self, addr_of_mut};

use nginx_sys::{
    ngx_int_t, ngx_msec_t, ngx_queue_t, ngx_rbtree_delete, ngx_rbtree_init, ngx_rbtree_insert,
    ngx_rbtree_insert_value, ngx_rbtree_key_t, ngx_rbtree_node_t, ngx_rbtree_t, ngx_shm_zone_t,
    ngx_shmtx_lock, ngx_shmtx_unlock, ngx_slab_alloc, ngx_slab_alloc_locked, ngx_slab_free_locked,
    ngx_slab_pool_t,
};

use mail_core::auth_http::cache::{cacheable_method, ttl, KeyParts};
use mail_core::auth_http::{parse_response, Response};

use super::client::AuthState;
use super::conf;
use crate::nginx::Event;
use crate::session::Session;

const DIGEST: usize = 32;

/// The zone's own part of the shared memory.
#[repr(C)]
struct Shared {
    rbtree: ngx_rbtree_t,
    sentinel: ngx_rbtree_node_t,
    /// Most recently used first.
    lru: ngx_queue_t,
    secret: [u8; 32],
}

/// One answer, allocated with room for `len` bytes of it.
#[repr(C)]
struct Node {
    rb: ngx_rbtree_node_t,
    lru: ngx_queue_t,
    digest: [u8; DIGEST],
    expires: ngx_msec_t,
    len: usize,
    data: [u8; 0],
}

/// The shm zone's `data`, in the configuration's pool.
#[repr(C)]
pub struct CacheZone {
    shpool: *mut ngx_slab_pool_t,
    shared: *mut Shared,
}

/// The zone's mutex, held while the guard lives.
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

// nginx's queue macros, as functions on raw links.
unsafe fn queue_init(q: *mut ngx_queue_t) {
    // SAFETY: q is a live link.
    unsafe {
        (*q).prev = q;
        (*q).next = q;
    }
}

unsafe fn queue_insert_head(h: *mut ngx_queue_t, x: *mut ngx_queue_t) {
    // SAFETY: h is a live queue head, x a live link not in a queue.
    unsafe {
        (*x).next = (*h).next;
        (*(*x).next).prev = x;
        (*x).prev = h;
        (*h).next = x;
    }
}

unsafe fn queue_remove(x: *mut ngx_queue_t) {
    // SAFETY: x is a live link in a queue.
    unsafe {
        (*(*x).next).prev = (*x).prev;
        (*(*x).prev).next = (*x).next;
    }
}

fn now() -> ngx_msec_t {
    // SAFETY: nginx's monotonic clock, the same in every worker.
    unsafe { ptr::read_volatile(&raw const nginx_sys::ngx_current_msec) }
}

fn tree_key(digest: &[u8; DIGEST]) -> ngx_rbtree_key_t {
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    u64::from_ne_bytes(word) as ngx_rbtree_key_t
}

impl CacheZone {
    /// The digest of `message` under the zone's secret; `None` before the
    /// zone is mapped or when OpenSSL fails.
    pub fn digest(&self, message: &[u8]) -> Option<[u8; DIGEST]> {
        if self.shared.is_null() {
            return None;
        }
        let mut out = [0u8; DIGEST];
        let mut len: core::ffi::c_uint = 0;
        // SAFETY: the secret is set at the zone's creation and never
        // changes; out has room for a SHA-256 digest.
        let done = unsafe {
            nginx_sys::HMAC(
                nginx_sys::EVP_sha256(),
                (*self.shared).secret.as_ptr().cast(),
                32,
                message.as_ptr(),
                message.len(),
                out.as_mut_ptr(),
                &mut len,
            )
        };
        (!done.is_null() && len as usize == DIGEST).then_some(out)
    }

    /// The node of `digest`, or null.
    ///
    /// # Safety
    /// The zone is mapped and locked.
    unsafe fn find(&self, digest: &[u8; DIGEST]) -> *mut Node {
        // SAFETY: as the caller promises; every node but the sentinel is a
        // Node.
        unsafe {
            let tree = addr_of_mut!((*self.shared).rbtree);
            let sentinel = (*tree).sentinel;
            let key = tree_key(digest);
            let mut node = (*tree).root;
            while node != sentinel {
                if key < (*node).key {
                    node = (*node).left;
                } else if key > (*node).key {
                    node = (*node).right;
                } else {
                    let n = node.cast::<Node>();
                    // keys are unique in the tree (insert replaces)
                    return if (*n).digest == *digest {
                        n
                    } else {
                        ptr::null_mut()
                    };
                }
            }
            ptr::null_mut()
        }
    }

    /// # Safety
    /// The zone is mapped and locked; `node` is in it.
    unsafe fn remove(&self, node: *mut Node) {
        // SAFETY: as the caller promises.
        unsafe {
            ngx_rbtree_delete(addr_of_mut!((*self.shared).rbtree), node.cast());
            queue_remove(addr_of_mut!((*node).lru));
            ptr::write_bytes(addr_of_mut!((*node).data).cast::<u8>(), 0, (*node).len);
            ngx_slab_free_locked(self.shpool, node.cast());
        }
    }

    /// The answer kept under `digest`, if it has not expired.
    pub fn get(&self, digest: &[u8; DIGEST]) -> Option<Vec<u8>> {
        if self.shared.is_null() {
            return None;
        }
        // SAFETY: the zone is mapped for the worker's life; the tree and
        // queue are touched only under the mutex.
        unsafe {
            let _locked = Locked::new(self.shpool);
            let node = self.find(digest);
            if node.is_null() {
                return None;
            }
            if ((*node).expires.wrapping_sub(now()) as isize) <= 0 {
                self.remove(node);
                return None;
            }
            queue_remove(addr_of_mut!((*node).lru));
            queue_insert_head(addr_of_mut!((*self.shared).lru), addr_of_mut!((*node).lru));
            let data =
                core::slice::from_raw_parts(ptr::addr_of!((*node).data).cast::<u8>(), (*node).len);
            Some(data.to_vec())
        }
    }

    /// Keeps `answer` under `digest` for `ttl` ms, making room by evicting
    /// the least recently used entries; silently not kept when the zone
    /// cannot hold it.
    pub fn put(&self, digest: &[u8; DIGEST], answer: &[u8], ttl: ngx_msec_t) {
        if self.shared.is_null() {
            return;
        }
        let size = offset_of!(Node, data) + answer.len();
        // SAFETY: as in `get`.
        unsafe {
            let _locked = Locked::new(self.shpool);
            let old = self.find(digest);
            if !old.is_null() {
                self.remove(old);
            }
            let mut node = ngx_slab_alloc_locked(self.shpool, size).cast::<Node>();
            // the least recently used go first, a few at a time, as
            // nginx's caches do when their zone is full
            let lru = addr_of_mut!((*self.shared).lru);
            let mut evicted = 0;
            while node.is_null() && (*lru).prev != lru && evicted < 32 {
                let last = (*lru).prev;
                self.remove(last.cast::<u8>().sub(offset_of!(Node, lru)).cast::<Node>());
                evicted += 1;
                node = ngx_slab_alloc_locked(self.shpool, size).cast::<Node>();
            }
            if node.is_null() {
                return;
            }
            (*node).rb.key = tree_key(digest);
            (*node).digest = *digest;
            (*node).expires = now().wrapping_add(ttl);
            (*node).len = answer.len();
            ptr::copy_nonoverlapping(
                answer.as_ptr(),
                addr_of_mut!((*node).data).cast::<u8>(),
                answer.len(),
            );
            // a key collision with another digest: the newer answer wins
            let clash = {
                let tree = addr_of_mut!((*self.shared).rbtree);
                let sentinel = (*tree).sentinel;
                let mut n = (*tree).root;
                while n != sentinel && (*n).key != (*node).rb.key {
                    n = if (*node).rb.key < (*n).key {
                        (*n).left
                    } else {
                        (*n).right
                    };
                }
                (n != sentinel).then_some(n.cast::<Node>())
            };
            if let Some(other) = clash {
                self.remove(other);
            }
            ngx_rbtree_insert(addr_of_mut!((*self.shared).rbtree), node.cast());
            queue_insert_head(lru, addr_of_mut!((*node).lru));
        }
    }
}

/// Declares the zone `name` of `size` bytes (or finds it, when another
/// server's `auth_http_cache` declared it).
///
/// # Safety
/// `cf` is live; `name`'s bytes live for the cycle.
pub unsafe fn add_zone(
    cf: *mut nginx_sys::ngx_conf_t,
    name: &mut nginx_sys::ngx_str_t,
    size: usize,
) -> Result<*mut ngx_shm_zone_t, *mut core::ffi::c_char> {
    // SAFETY: as the caller promises; the tag is our module, so nginx
    // refuses a zone of the same name declared for another use.
    unsafe {
        let tag = core::ptr::addr_of_mut!(super::module::ngx_mail_rs_auth_http_module).cast();
        let shm_zone = nginx_sys::ngx_shared_memory_add(cf, name, size, tag);
        if shm_zone.is_null() {
            return Err(crate::ffi::CONF_ERROR);
        }
        if (*shm_zone).data.is_null() {
            let ctx = nginx_sys::ngx_pcalloc((*cf).pool, size_of::<CacheZone>());
            if ctx.is_null() {
                return Err(crate::ffi::CONF_ERROR);
            }
            (*shm_zone).data = ctx;
            (*shm_zone).init = Some(init_zone);
        }
        Ok(shm_zone)
    }
}

/// The zone of a server's `auth_http_cache`.
///
/// # Safety
/// `shm_zone` is one `add_zone` returned, of this cycle.
pub unsafe fn zone_of<'a>(shm_zone: *mut ngx_shm_zone_t) -> &'a CacheZone {
    // SAFETY: as the caller promises: its data is a CacheZone.
    unsafe { &*(*shm_zone).data.cast::<CacheZone>() }
}

/// The zone's `init`: a new zone gets its tree, queue and secret; a zone
/// kept at a reload keeps its entries.
pub unsafe extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    const OK: ngx_int_t = nginx_sys::NGX_OK as ngx_int_t;
    const ERROR: ngx_int_t = nginx_sys::NGX_ERROR as ngx_int_t;
    // SAFETY: nginx calls this once per zone and cycle, with the zone
    // mapped, its data our CacheZone, and `data` the previous cycle's
    // CacheZone of a zone it kept (or null).
    unsafe {
        let ctx = (*shm_zone).data.cast::<CacheZone>();
        if ctx.is_null() {
            return ERROR;
        }
        if let Some(old) = data.cast::<CacheZone>().as_ref() {
            (*ctx).shpool = old.shpool;
            (*ctx).shared = old.shared;
            return OK;
        }
        let shpool = (*shm_zone).shm.addr.cast::<ngx_slab_pool_t>();
        (*ctx).shpool = shpool;
        // a full zone evicts: no "no memory" line for each time
        (*shpool).set_log_nomem(0);
        if (*shm_zone).shm.exists != 0 {
            (*ctx).shared = (*shpool).data.cast();
            return OK;
        }
        let shared = ngx_slab_alloc(shpool, size_of::<Shared>()).cast::<Shared>();
        if shared.is_null() {
            return ERROR;
        }
        if nginx_sys::RAND_bytes((*shared).secret.as_mut_ptr(), 32) != 1 {
            return ERROR;
        }
        (*shpool).data = shared.cast();
        (*ctx).shared = shared;
        ngx_rbtree_init(
            addr_of_mut!((*shared).rbtree),
            addr_of_mut!((*shared).sentinel),
            Some(ngx_rbtree_insert_value),
        );
        queue_init(addr_of_mut!((*shared).lru));
        // the slab pool's "no memory" line names the zone
        let name = String::from_utf8_lossy(crate::ffi::bytes(&(*shm_zone).shm.name));
        let log_ctx = format!(" in auth_http_cache zone \"{name}\"\0");
        let p = ngx_slab_alloc(shpool, log_ctx.len()).cast::<u8>();
        if p.is_null() {
            return ERROR;
        }
        ptr::copy_nonoverlapping(log_ctx.as_ptr(), p, log_ctx.len());
        (*shpool).log_ctx = p;
        OK
    }
}

/// `ngx_mail_auth` with `auth_http_cache`: true when the login's answer is
/// in the zone (it is acted on from a posted event, as an answer from the
/// server would be, never inside the client's handler); false to ask the
/// server, with the key kept for `store` when the answer may be kept.
pub fn answer_from_cache(sess: Session) -> bool {
    let ahcf = conf::conf(sess);
    if ahcf.cache_zone.is_null() {
        return false;
    }
    // SAFETY: a zone set by auth_http_cache, of this cycle.
    let zone = unsafe { zone_of(ahcf.cache_zone) };
    let Some(method) = sess.with_state(|auth: &mut AuthState| auth.handover.method) else {
        return false;
    };
    if !cacheable_method(method) {
        return false;
    }
    let server = sess
        .client()
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut message = KeyParts {
        protocol: sess.protocol_name(),
        method,
        login: sess.login(),
        secret: sess.passwd().unwrap_or_default(),
        client_ip: sess.client_addr(),
        server: server.as_bytes(),
    }
    .message();
    let digest = zone.digest(&message);
    // it held the password
    message.fill(0);
    let Some(digest) = digest else {
        return false;
    };
    let Some(answer) = zone.get(&digest) else {
        sess.with_state(|auth: &mut AuthState| auth.cache_key = Some(digest));
        return false;
    };
    crate::mail_debug!(sess.log(), "mail auth http cache hit");
    sess.with_state(|auth: &mut AuthState| auth.cached = Some(answer));
    let rev = sess.read_event();
    rev.set_handler(cached_answer);
    rev.post();
    true
}

crate::event_handler!(cached_answer => act_on_cached);

fn act_on_cached(sess: Session, _rev: Event) {
    if sess.ends_at_shutdown() {
        return;
    }
    sess.set_action(c"in http auth state");
    let answer = sess
        .with_state(|auth: &mut AuthState| auth.cached.take())
        .flatten()
        .unwrap_or_default();
    // kept only once parsed: it parses the same again
    let Ok(Some(resp)) = parse_response(&answer) else {
        return sess.internal_server_error();
    };
    crate::limit::conn::keep_auth_keys(sess, &answer);
    super::client::judge(sess, resp);
}

/// A whole answer from the server: kept when the login and the answer
/// allow it.
pub fn store(sess: Session, resp: &Response) {
    let ahcf = conf::conf(sess);
    let kept = sess.with_state(|auth: &mut AuthState| {
        let raw = core::mem::take(&mut auth.cache_raw);
        auth.cache_key.take().map(|key| (key, raw))
    });
    let Some(Some((key, mut raw))) = kept else {
        return;
    };
    if !ahcf.cache_zone.is_null() {
        if let Some(ttl) = ttl(resp, ahcf.cache_valid as u64, ahcf.cache_invalid as u64) {
            // SAFETY: as in answer_from_cache.
            let zone = unsafe { zone_of(ahcf.cache_zone) };
            zone.put(&key, &raw, ttl as ngx_msec_t);
        }
    }
    raw.fill(0);
}
