pub mod client;
pub mod conf;
pub mod module;
