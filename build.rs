//! Generates Rust bindings for nginx's src/mail headers (nginx-sys does not
//! bind them) against the nginx tree that nginx-sys was configured with, and
//! tells the crate which optional mail parts that tree has.

use std::env;
use std::path::PathBuf;

fn main() {
    for var in [
        "DEP_NGINX_INCLUDE",
        "DEP_NGINX_CFLAGS",
        "DEP_NGINX_BUILD_DIR",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(ngx_mail_ssl)");
    println!("cargo::rustc-check-cfg=cfg(ngx_proxy_protocol_v1_max)");
    println!("cargo::rustc-check-cfg=cfg(ngx_http)");

    let includes = env::var("DEP_NGINX_INCLUDE").expect("nginx-sys exports DEP_NGINX_INCLUDE");
    let cflags = env::var("DEP_NGINX_CFLAGS").unwrap_or_default();
    let build_dir = PathBuf::from(env::var("DEP_NGINX_BUILD_DIR").expect("DEP_NGINX_BUILD_DIR"));

    let include_dirs: Vec<PathBuf> = env::split_paths(&includes).collect();
    // nginx-sys binds http only when ngx_http.h is on the include path (an
    // nginx built with http); the mail_metrics handler needs those types
    if include_dirs.iter().any(|d| d.join("ngx_http.h").is_file()) {
        println!("cargo::rustc-cfg=ngx_http");
    }
    let mail_dir = include_dirs
        .iter()
        .filter_map(|dir| dir.parent().map(|p| p.join("mail")))
        .find(|dir| dir.join("ngx_mail.h").is_file())
        .or_else(|| {
            let dir = build_dir.parent()?.join("src/mail");
            dir.join("ngx_mail.h").is_file().then_some(dir)
        })
        .expect("nginx source tree has src/mail/ngx_mail.h");

    // nginx 1.25.x renamed the PROXY v1 header bound when it learned v2
    let core_dir = mail_dir
        .parent()
        .map(|src| src.join("core"))
        .unwrap_or_default();
    let proxy_protocol_h =
        std::fs::read_to_string(core_dir.join("ngx_proxy_protocol.h")).unwrap_or_default();
    if proxy_protocol_h.contains("NGX_PROXY_PROTOCOL_V1_MAX_HEADER") {
        println!("cargo::rustc-cfg=ngx_proxy_protocol_v1_max");
    }

    let auto_config = std::fs::read_to_string(build_dir.join("ngx_auto_config.h"))
        .expect("ngx_auto_config.h in the nginx build directory");
    let mail_ssl = auto_config.contains("#define NGX_MAIL_SSL");
    if mail_ssl {
        println!("cargo::rustc-cfg=ngx_mail_ssl");
    }

    let mut wrapper = String::from(
        "#include <ngx_config.h>\n#include <ngx_core.h>\n#include <ngx_event.h>\n\
         #include <ngx_event_connect.h>\n#include <ngx_mail.h>\n",
    );
    if mail_ssl {
        wrapper.push_str("#include <ngx_mail_ssl_module.h>\n");
    }

    let mut builder = bindgen::Builder::default()
        .header_contents("mail_wrapper.h", &wrapper)
        .clang_arg(format!("-I{}", mail_dir.display()))
        .clang_args(include_dirs.iter().map(|d| format!("-I{}", d.display())))
        .clang_args(cflags.split_whitespace().map(str::to_owned))
        .allowlist_type("ngx_mail_.*")
        .allowlist_function("ngx_mail_.*")
        .allowlist_var("ngx_mail_.*")
        .allowlist_var("NGX_MAIL_.*")
        .allowlist_recursively(false)
        .layout_tests(false)
        .use_core()
        .raw_line("#[allow(unused_imports)] use nginx_sys::*;");
    if let Ok(target) = env::var("CARGO_PKG_RUST_VERSION") {
        if let Ok(t) = target.parse() {
            builder = builder.rust_target(t);
        }
    }
    let bindings = builder.generate().expect("mail bindings");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("mail_bindings.rs"))
        .expect("write mail bindings");
}
