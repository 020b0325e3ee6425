pub mod handler;
pub mod module;
