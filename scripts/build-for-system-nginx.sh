#!/usr/bin/env bash
# Builds ngx-mail-rs for the nginx installed on this machine, without
# rebuilding nginx: reads `nginx -V`, configures a copy of the headers from
# the distribution's development package (Debian/Ubuntu: nginx-dev, in
# /usr/share/nginx/src) with the same flags, and builds the module against it.
#
# Usage: scripts/build-for-system-nginx.sh [path/to/nginx]
# Output: target/system-nginx/ngx_mail_rs_module.so (path printed last)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
nginx=${1:-$(command -v nginx || echo /usr/sbin/nginx)}
devsrc=${NGINX_DEV_SRC:-/usr/share/nginx/src}
out=$top/target/system-nginx

die() { echo "build-for-system-nginx: $*" >&2; exit 1; }

[ -x "$nginx" ] || die "no nginx at $nginx (install nginx, or pass its path)"
info=$("$nginx" -V 2>&1)
version=$(sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p' <<<"$info")
[ -n "$version" ] || die "cannot read the version from '$nginx -V'"
args=$(sed -n 's/^configure arguments: //p' <<<"$info")

[ -f "$devsrc/src/core/nginx.h" ] && [ -f "$devsrc/conf_flags" ] \
    || die "nginx headers not found in $devsrc: install the development package (Debian/Ubuntu: apt install nginx-dev)"
dev_version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$devsrc/src/core/nginx.h")
[ "$dev_version" = "$version" ] \
    || die "$nginx is $version but the headers in $devsrc are $dev_version: install the matching nginx-dev"

grep -q -- "--with-mail" <<<"$args" \
    || die "$nginx was built without mail (--with-mail): there is no mail core to load this module into"

# conf_flags holds the flags every module must be built with; nginx -V
# also shows the mail flags that conf_flags (made for http modules) lacks
# shellcheck disable=SC1091
. "$devsrc/conf_flags"
flags=("${NGX_CONF_FLAGS[@]}")
for f in --with-mail=dynamic --with-mail --with-mail_ssl_module; do
    if grep -q -- "$f\( \|$\)" <<<"$args" && ! printf '%s\n' "${flags[@]}" | grep -qx -- "$f"; then
        flags+=("$f")
    fi
done

rm -rf "$out/src"
mkdir -p "$out"
cp -a "$devsrc" "$out/src"
chmod -R u+w "$out/src"
(cd "$out/src" && ./configure "${flags[@]}" >"$out/configure.log" 2>&1) \
    || { tail -20 "$out/configure.log" >&2; die "configure failed (see $out/configure.log)"; }

NGINX_BUILD_DIR="$out/src/objs" CARGO_TARGET_DIR="$out/cargo" \
    cargo build --release --quiet --manifest-path "$top/Cargo.toml" -p ngx-mail-rs
cp "$out/cargo/release/libngx_mail_rs.so" "$out/ngx_mail_rs_module.so"
echo "built for nginx $version: $out/ngx_mail_rs_module.so"
