pub mod client;
pub mod module;
