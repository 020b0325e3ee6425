mod attempt;
#[cfg(ngx_mail_ssl)]
mod cache;
pub mod client;
pub mod conf;
pub mod keepalive;
pub mod module;
mod read;
