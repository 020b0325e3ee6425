pub mod conf;
pub mod handler;
pub mod module;
