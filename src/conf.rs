//! Directive plumbing shared by our modules: config errors in nginx's voice,
//! and forwarding of shadowed directives to the stock module of the same
//! name, so that stock merges (which our directives would otherwise starve)
//! still pass and servers left to stock modules keep their settings.

use core::ffi::{c_char, c_void, CStr};
use core::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_cycle_t, ngx_int_t, ngx_module_t, ngx_str_t, ngx_uint_t,
};

use crate::bindings::{
    ngx_mail_core_main_conf_t, ngx_mail_core_module, ngx_mail_core_srv_conf_t, ngx_mail_module_t,
    ngx_mail_protocol_t,
};

use crate::bindings::{ngx_mail_conf_ctx_t, NGX_MAIL_MODULE};
use crate::ffi::{bytes, CONF_ERROR, CONF_OK, LOG_EMERG};

pub type SetFn =
    unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// Logs an `[emerg]` with the config file and line, and fails the directive.
pub fn conf_error(cf: *mut ngx_conf_t, msg: &str) -> *mut c_char {
    ngx::ngx_conf_log_error!(LOG_EMERG, cf, "{}", msg);
    CONF_ERROR
}

/// A directive of ours: its own setter, and the stock module it shadows.
pub struct Directive {
    pub name: &'static CStr,
    pub set: SetFn,
    pub shadows: &'static CStr,
}

/// Finds a loaded mail module by name.
///
/// # Safety
/// `cf` must be the live configuration being parsed.
pub unsafe fn find_mail_module(cf: *mut ngx_conf_t, name: &CStr) -> Option<*mut ngx_module_t> {
    // SAFETY: cycle->modules is a null-terminated array while configuring.
    unsafe {
        let modules = (*(*cf).cycle).modules;
        let mut i = 0;
        loop {
            let m = *modules.add(i);
            if m.is_null() {
                return None;
            }
            if (*m).type_ == NGX_MAIL_MODULE as ngx_uint_t && CStr::from_ptr((*m).name) == name {
                return Some(m);
            }
            i += 1;
        }
    }
}

/// Runs our setter, then the stock module's setter for the same directive.
///
/// # Safety
/// Called by nginx's configuration parser with a live `cf` and `cmd`.
pub unsafe fn set_and_forward(
    table: &[Directive],
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: cmd is one of our commands, with a static name.
    let name = unsafe { bytes(&(*cmd).name) };
    let Some(dir) = table.iter().find(|d| d.name.to_bytes() == name) else {
        return conf_error(cf, "internal error: unknown directive");
    };
    // SAFETY: the setter's contract is nginx's, which the parser upholds.
    let rv = unsafe { (dir.set)(cf, cmd, conf) };
    if rv != CONF_OK {
        return rv;
    }
    // SAFETY: cf is live; modules and their command arrays are static.
    unsafe {
        let Some(stock) = find_mail_module(cf, dir.shadows) else {
            return CONF_OK;
        };
        let mut c = (*stock).commands;
        while !c.is_null() && (*c).name.len != 0 {
            if bytes(&(*c).name) == name {
                let Some(set) = (*c).set else { break };
                if !stock_takes_value(cf, (*c).type_) {
                    break;
                }
                let confp = *((*cf).ctx as *mut u8)
                    .add((*c).conf)
                    .cast::<*mut *mut c_void>();
                if confp.is_null() {
                    break;
                }
                let stock_conf = *confp.add((*stock).ctx_index);
                if dir.set as usize == nginx_sys::ngx_conf_set_bitmask_slot as *const () as usize {
                    return forward_known_values(cf, c, set, stock_conf);
                }
                return set(cf, c, stock_conf);
            }
            c = c.add(1);
        }
    }
    CONF_OK
}

/// Hands the directive being parsed to `stock`'s setter of directive
/// `name` (another name than ours: stock reads only the arguments), so
/// that a stock merge that wants it set is satisfied.
///
/// # Safety
/// Called from a setter with nginx's live `cf`.
pub unsafe fn forward_to_stock(cf: *mut ngx_conf_t, stock: &CStr, name: &[u8]) -> *mut c_char {
    // SAFETY: cf is live; modules and their command arrays are static.
    unsafe {
        let Some(stock) = find_mail_module(cf, stock) else {
            return CONF_OK;
        };
        let mut c = (*stock).commands;
        while !c.is_null() && (*c).name.len != 0 {
            if bytes(&(*c).name) == name {
                let Some(set) = (*c).set else { break };
                let confp = *((*cf).ctx as *mut u8)
                    .add((*c).conf)
                    .cast::<*mut *mut c_void>();
                if confp.is_null() {
                    break;
                }
                return set(cf, c, *confp.add((*stock).ctx_index));
            }
            c = c.add(1);
        }
    }
    CONF_OK
}

/// Whether a stock directive of type `type_` can take this one's value:
/// where nginx 1.28 has a flag and we have more values (`proxy_protocol
/// v2`), only `on` and `off` are handed on; stock keeps its default then,
/// and only our conf is read.
///
/// # Safety
/// `cf` is live, with the directive's arguments.
unsafe fn stock_takes_value(cf: *mut ngx_conf_t, type_: ngx_uint_t) -> bool {
    if type_ & nginx_sys::NGX_CONF_FLAG as ngx_uint_t == 0 {
        return true;
    }
    // SAFETY: cf->args holds the directive's name and its arguments.
    let value = unsafe {
        let args = (*cf).args;
        if (*args).nelts < 2 {
            return true;
        }
        bytes(&*(*args).elts.cast::<ngx_str_t>().add(1))
    };
    value.eq_ignore_ascii_case(b"on") || value.eq_ignore_ascii_case(b"off")
}

/// Forwards a bitmask directive (`pop3_auth`, ...) with the values the
/// stock module's own table names only: stock 1.28 rejects the ones it does
/// not know (`xoauth2`, `oauthbearer`), and a directive left with none is
/// not forwarded at all.
///
/// # Safety
/// As for `set_and_forward`; `c` is the stock module's command, whose
/// `post` is its `ngx_conf_bitmask_t` table.
unsafe fn forward_known_values(
    cf: *mut ngx_conf_t,
    c: *mut ngx_command_t,
    set: SetFn,
    stock_conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as the caller promises: cf->args holds the directive's name
    // and values, and the table ends with an empty name.
    unsafe {
        let mask = (*c).post.cast::<nginx_sys::ngx_conf_bitmask_t>();
        if mask.is_null() {
            return set(cf, c, stock_conf);
        }
        let known = |value: &[u8]| {
            let mut m = mask;
            while (*m).name.len != 0 {
                if bytes(&(*m).name).eq_ignore_ascii_case(value) {
                    return true;
                }
                m = m.add(1);
            }
            false
        };
        let args = (*cf).args;
        let elts = (*args).elts.cast::<ngx_str_t>();
        let all: Vec<ngx_str_t> = (0..(*args).nelts).map(|i| *elts.add(i)).collect();
        let (name, values) = match all.split_first() {
            Some(split) => split,
            None => return CONF_OK,
        };
        let kept: Vec<ngx_str_t> = values.iter().filter(|v| known(bytes(v))).copied().collect();
        if kept.is_empty() {
            return CONF_OK;
        }
        // the stock setter sees the known values only; the array is put
        // back as it was for whatever reads it after us
        *elts = *name;
        for (i, v) in kept.iter().enumerate() {
            *elts.add(i + 1) = *v;
        }
        (*args).nelts = kept.len() + 1;
        let rv = set(cf, c, stock_conf);
        for (i, v) in all.iter().enumerate() {
            *elts.add(i) = *v;
        }
        (*args).nelts = all.len();
        rv
    }
}

/// A module's directives from one list: the `ngx_command_t` table nginx
/// reads (`COMMANDS`, every entry set through `set_directive`) and the
/// table `set_and_forward` uses (`DIRECTIVES`) to run our setter, then the
/// stock module's of the same name. Entries:
/// `c"name" => setter, type flags, conf offset, post;`
#[macro_export]
macro_rules! directives {
    (shadows $stock:expr; $($name:literal => $set:expr, $flags:expr, $offset:expr, $post:expr;)+) => {
        const DIRECTIVES: &[$crate::conf::Directive] = &[
            $($crate::conf::Directive { name: $name, set: $set, shadows: $stock },)+
        ];

        unsafe extern "C" fn set_directive(
            cf: *mut nginx_sys::ngx_conf_t,
            cmd: *mut nginx_sys::ngx_command_t,
            conf: *mut core::ffi::c_void,
        ) -> *mut core::ffi::c_char {
            // SAFETY: called by nginx's parser with live arguments.
            unsafe { $crate::conf::set_and_forward(DIRECTIVES, cf, cmd, conf) }
        }

        static mut COMMANDS: [nginx_sys::ngx_command_t; DIRECTIVES.len() + 1] = [
            $($crate::conf::command($name, $flags, set_directive, $offset, $post),)+
            $crate::conf::NULL_COMMAND,
        ];
    };
}

/// `ngx_string` for static tables. nginx compares directive, protocol and
/// bitmask names with `strcmp`, so the data must be NUL-terminated too.
pub const fn ngx_str(s: &'static CStr) -> ngx_str_t {
    ngx_str_t {
        len: s.to_bytes().len(),
        data: s.as_ptr() as *mut u8,
    }
}

pub const SRV_CONF_OFFSET: ngx_uint_t = core::mem::offset_of!(ngx_mail_conf_ctx_t, srv_conf);

/// A directive entry for a mail server conf field.
pub const fn command(
    name: &'static CStr,
    type_: u32,
    set: SetFn,
    offset: usize,
    post: *mut c_void,
) -> ngx_command_t {
    ngx_command_t {
        name: ngx_str(name),
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf: SRV_CONF_OFFSET,
        offset,
        post,
    }
}

/// One value of a `*_auth` directive: its name and its `auth_bits` bit.
pub const fn bitmask(name: &'static CStr, bit: usize) -> nginx_sys::ngx_conf_bitmask_t {
    nginx_sys::ngx_conf_bitmask_t {
        name: ngx_str(name),
        mask: bit as ngx_uint_t,
    }
}

/// The end of a bitmask table.
pub const NULL_BITMASK: nginx_sys::ngx_conf_bitmask_t = nginx_sys::ngx_conf_bitmask_t {
    name: ngx_str_t {
        len: 0,
        data: ptr::null_mut(),
    },
    mask: 0,
};

pub const NULL_COMMAND: ngx_command_t = ngx_command_t {
    name: ngx_str_t {
        len: 0,
        data: ptr::null_mut(),
    },
    type_: 0,
    set: None,
    conf: 0,
    offset: 0,
    post: ptr::null_mut(),
};

/// A mail module of ours: its context and directives.
pub const fn mail_module(
    ctx: *mut ngx_mail_module_t,
    commands: *mut ngx_command_t,
) -> ngx_module_t {
    ngx_module_t {
        ctx: ctx.cast(),
        commands,
        type_: NGX_MAIL_MODULE as ngx_uint_t,
        ..ngx_module_t::default()
    }
}

/// A context for a module with server confs only (no protocol).
pub const fn srv_ctx(
    create: unsafe extern "C" fn(*mut ngx_conf_t) -> *mut c_void,
    merge: unsafe extern "C" fn(*mut ngx_conf_t, *mut c_void, *mut c_void) -> *mut c_char,
) -> ngx_mail_module_t {
    ngx_mail_module_t {
        protocol: ptr::null_mut(),
        create_main_conf: None,
        init_main_conf: None,
        create_srv_conf: Some(create),
        merge_srv_conf: Some(merge),
    }
}

/// `ngx_conf_merge_*_value`: keep a set value, else inherit, else default.
pub fn merge<T: Copy + PartialEq>(conf: &mut T, prev: T, unset: T, default: T) {
    if *conf == unset {
        *conf = if prev == unset { default } else { prev };
    }
}

/// `listen 110;` without `protocol` picks the LAST mail module whose ports
/// match: the stock one. Moves such servers onto `ours` (same name).
///
/// # Safety
/// Called from an init_main_conf, when cf->ctx is the mail{} ctx and the
/// core main conf lists every server's core conf.
pub unsafe fn take_over_guessed_servers(
    cf: *mut ngx_conf_t,
    ours: *mut ngx_mail_protocol_t,
) -> *mut c_char {
    // SAFETY: as the caller promises; protocol names are static strings.
    unsafe {
        let ctx = (*cf).ctx.cast::<ngx_mail_conf_ctx_t>();
        let cmcf = (*(*ctx).main_conf.add(ngx_mail_core_module.ctx_index))
            .cast::<ngx_mail_core_main_conf_t>();
        let servers = (*cmcf).servers.elts.cast::<*mut ngx_mail_core_srv_conf_t>();
        let name = bytes(&(*ours).name);
        for i in 0..(*cmcf).servers.nelts {
            let cscf = *servers.add(i);
            let proto = (*cscf).protocol;
            if !proto.is_null() && proto != ours && bytes(&(*proto).name) == name {
                (*cscf).protocol = ours;
            }
        }
    }
    CONF_OK
}

/// `*_auth`: keep, else inherit, else plain (with nginx's "set" bit).
pub fn merge_auth_methods(conf: &mut ngx_uint_t, prev: ngx_uint_t) {
    merge(
        conf,
        prev,
        0,
        nginx_sys::NGX_CONF_BITMASK_SET as ngx_uint_t | mail_core::auth_bits::PLAIN as ngx_uint_t,
    );
}

/// An empty `*_capabilities` list, ready for `ngx_mail_capabilities`.
///
/// # Safety
/// `cf` must be the live configuration.
pub unsafe fn capabilities_array(cf: *mut ngx_conf_t) -> Option<nginx_sys::ngx_array_t> {
    // SAFETY: the pool is live; the array header is copied out.
    unsafe {
        let a = nginx_sys::ngx_array_create((*cf).pool, 4, size_of::<ngx_str_t>());
        (!a.is_null()).then(|| *a)
    }
}

/// `*_capabilities`: keep, else inherit, else `defaults`; returns the list.
pub fn merge_capabilities(
    conf: &mut nginx_sys::ngx_array_t,
    prev: &nginx_sys::ngx_array_t,
    defaults: &[&'static CStr],
) -> Option<Vec<&'static [u8]>> {
    if conf.nelts == 0 {
        *conf = *prev;
    }
    if conf.nelts == 0 {
        for cap in defaults {
            // SAFETY: the array lives in the config pool.
            let slot = unsafe { nginx_sys::ngx_array_push(conf) }.cast::<ngx_str_t>();
            if slot.is_null() {
                return None;
            }
            // SAFETY: slot is a fresh element.
            unsafe { *slot = ngx_str(cap) };
        }
    }
    // SAFETY: the array holds nelts ngx_str_t from the config pool.
    unsafe {
        let elts = conf.elts.cast::<ngx_str_t>();
        Some((0..conf.nelts).map(|i| bytes(&*elts.add(i))).collect())
    }
}

/// Moves `value` into the configuration pool, which drops it with the cycle.
///
/// # Safety
/// `cf` must be the live configuration.
pub unsafe fn keep_in_conf_pool<T>(cf: *mut ngx_conf_t, value: T) -> Option<*const T> {
    // SAFETY: the pool is live; Pool::allocate registers the drop.
    let p = unsafe { ngx::core::Pool::from_ngx_pool((*cf).pool).allocate(value) };
    (!p.is_null()).then_some(p.cast_const())
}

/// Logs once per configuration load which protocols this module serves.
pub unsafe extern "C" fn announce(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    let msg = format!(
        "ngx-mail-rs {}: serving pop3, imap, smtp, sieve (auth_http, proxy)",
        env!("CARGO_PKG_VERSION")
    );
    // SAFETY: the cycle log is live during init_module.
    unsafe { crate::ffi::log(crate::ffi::LOG_NOTICE, (*cycle).log, 0, msg.as_bytes()) };
    0
}
