pub mod handler;
pub mod module;
mod resolver;
