//! The client's hostname for `Client-Host` and XCLIENT `NAME`: a PTR lookup
//! of its address and a forward lookup of the answer, on nginx's resolver,
//! judged by `mail_core::smtp::resolve` (`ngx_mail_smtp_init_session`).

use mail_core::smtp::resolve::{self, AfterPtr, LookupError, TEMPUNAVAIL, UNAVAILABLE};

use crate::ffi::{shown, LOG_ERR};
use crate::mail_log;
use crate::nginx::Event;
use crate::resolve::{Pending, Query};
use crate::session::Session;

/// A lookup this session started, finished with the function of its kind
/// when dropped: when its answer was used, and when the session ends while
/// it is still pending (the resolver would otherwise call back into a freed
/// session). The ctx cannot tell its own kind: nginx fills a forward
/// lookup's `addr` when it returns one IPv4 address. Between the two
/// lookups it holds no query, only where the session goes next.
pub struct Lookup {
    query: Option<Pending>,
    /// Where the session goes once its name is known (the greeting).
    then: fn(Session),
}

impl Lookup {
    /// Finishes this lookup and keeps where the session goes next.
    fn done(mut self) -> fn(Session) {
        drop(self.query.take());
        self.then
    }
}

/// Keeps a started-to-be lookup in the smtp module's slot (and where stock
/// keeps it). Owned before the start: an answer from the cache comes back
/// inside the start call.
fn own(sess: Session, query: Query, reverse: bool, then: fn(Session)) {
    sess.set_resolver_ctx(Some(query));
    // SAFETY: the query is started right after; a failed start disowns it.
    let pending = unsafe { Pending::new(query, reverse) };
    sess.set_state(Lookup {
        query: Some(pending),
        then,
    });
}

/// A start that failed freed its ctx itself: forget it unfinished.
fn disown(sess: Session) {
    if let Some(mut lookup) = sess.take_state::<Lookup>() {
        core::mem::forget(lookup.query.take());
    }
    sess.set_resolver_ctx(None);
}

/// The lookup answered: finish it (its data was copied out before) and
/// say where the session goes next.
fn finish(sess: Session) -> fn(Session) {
    sess.set_resolver_ctx(None);
    sess.take_state::<Lookup>()
        .map_or(Session::close as fn(Session), Lookup::done)
}

/// Starts with the client's address; `then` (the greeting) follows when
/// done.
pub fn resolve_client(sess: Session, then: fn(Session)) {
    let cscf = sess.core_conf();
    if cscf.resolver.is_null() {
        sess.set_host_static(UNAVAILABLE);
        return then(sess);
    }
    // a unix socket has no address to look up
    if sess.client_is_unix() {
        sess.set_host_static(TEMPUNAVAIL);
        return then(sess);
    }
    sess.set_action(c"in resolving client address");
    let Some(query) = Query::new(
        cscf.resolver,
        cscf.resolver_timeout,
        addr_resolved,
        sess.raw().cast(),
    ) else {
        return sess.close();
    };
    own(sess, query, true, then);
    sess.read_event().set_handler(block_reading);
    if !sess.lookup_client_address(query) {
        disown(sess);
        sess.close();
    }
}

/// How a lookup failed, logged as stock does.
fn lookup_error(query: Query) -> LookupError {
    if query.not_found() {
        LookupError::NotFound
    } else {
        LookupError::Other
    }
}

crate::resolver_handler!(addr_resolved => ptr_answer);

fn ptr_answer(sess: Session, query: Query) {
    crate::mail_debug!(sess.log(), "mail smtp resolve handler");
    let addr_text = shown(sess.client_addr());
    let answer = if query.state() != 0 {
        mail_log!(
            LOG_ERR,
            sess.log(),
            "{} could not be resolved ({}: {})",
            addr_text,
            query.state(),
            query.error_text()
        );
        Err(lookup_error(query))
    } else {
        Ok(query.name())
    };
    let forward = match resolve::after_ptr(answer) {
        AfterPtr::Host { host, invalid_name } => {
            if invalid_name {
                mail_log!(
                    LOG_ERR,
                    sess.log(),
                    "{} resolved to invalid host name \"{}\"",
                    addr_text,
                    shown(query.name())
                );
            }
            sess.set_host_static(host);
            false
        }
        AfterPtr::Forward(name) => {
            sess.set_action(c"in resolving client hostname");
            if !sess.set_host(name) {
                let _ = finish(sess);
                return sess.close();
            }
            true
        }
    };
    let then = finish(sess);
    if !forward {
        return then(sess);
    }
    // the next lookup finds where to go in the slot
    sess.set_state(Lookup { query: None, then });
    let rev = sess.read_event();
    rev.set_handler(lookup_name);
    rev.post();
}

crate::event_handler!(
    /// The forward lookup of the name the PTR answer gave.
    lookup_name => start_forward
);

fn start_forward(sess: Session, rev: Event) {
    let cscf = sess.core_conf();
    let Some(then) = sess.take_state::<Lookup>().map(Lookup::done) else {
        return sess.close();
    };
    let Some(query) = Query::new(
        cscf.resolver,
        cscf.resolver_timeout,
        name_resolved,
        sess.raw().cast(),
    ) else {
        return sess.close();
    };
    own(sess, query, false, then);
    rev.set_handler(block_reading);
    if !sess.lookup_client_host(query) {
        disown(sess);
        sess.close();
    }
}

crate::resolver_handler!(name_resolved => forward_answer);

fn forward_answer(sess: Session, query: Query) {
    crate::mail_debug!(sess.log(), "mail smtp resolve name handler");
    let name = query.name();
    let addrs;
    let answer = if query.state() != 0 {
        mail_log!(
            LOG_ERR,
            sess.log(),
            "\"{}\" could not be resolved ({}: {})",
            shown(name),
            query.state(),
            query.error_text()
        );
        Err(lookup_error(query))
    } else {
        addrs = query.addresses();
        Ok(addrs.as_slice())
    };
    let host = match sess.client_ip() {
        Some(client) => resolve::after_forward(name, answer, client),
        None => UNAVAILABLE,
    };
    // s->host already holds the name; a failure replaces it (a valid
    // hostname never looks like "[UNAVAILABLE]")
    if host != name {
        sess.set_host_static(if host == TEMPUNAVAIL {
            TEMPUNAVAIL
        } else {
            UNAVAILABLE
        });
    }
    let then = finish(sess);
    then(sess);
}

crate::event_handler!(
    /// While a lookup runs, the client's input waits in the socket.
    block_reading => wait_for_lookup
);

fn wait_for_lookup(sess: Session, rev: Event) {
    // the pending lookup is cancelled with our state when the session ends
    if sess.ends_at_shutdown() {
        return;
    }
    if !rev.handle_read() {
        sess.close();
    }
}
