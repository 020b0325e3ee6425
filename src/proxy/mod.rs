pub mod module;
pub mod relay;
pub mod upstream;
