mod buffers;
pub mod conf;
mod login;
pub mod module;
mod proxy_v2;
pub mod relay;
pub mod splice;
#[cfg(ngx_mail_ssl)]
pub mod ssl;
pub mod ssl_module;
pub mod upstream;
