pub mod conf;
mod login;
pub mod module;
pub mod relay;
pub mod splice;
pub mod upstream;
