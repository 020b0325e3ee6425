//! freenginx 1.29's mail limits (ours only: stock 1.28 has none):
//! `limit_conn` counts a session in shared-memory zones once the auth
//! server said where to log in, and refuses it past a zone's number;
//! `limit_rate` / `limit_rate_after` pace what the relay sends the client.

pub mod conf;
pub mod conn;
pub mod module;
pub mod rate;
pub mod zone;

/// The limits a session is under, in the limit module's slot for the rest
/// of the session once it has any (`Session::keep_state`): the connections
/// it is counted as, and the relay's rate bucket.
pub struct Limits {
    /// Dropping a lease uncounts it: `Session::ended` empties this, and the
    /// pool's cleanup drops whatever is left however the session closes.
    pub leases: Vec<zone::Lease>,
    pub bucket: Option<mail_core::limit::Bucket>,
}
