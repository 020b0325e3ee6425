mod attempt;
pub mod client;
pub mod conf;
pub mod keepalive;
pub mod module;
mod read;
