mod buffers;
pub mod conf;
mod login;
pub mod module;
mod proxy_v2;
pub mod relay;
pub mod splice;
pub mod upstream;
