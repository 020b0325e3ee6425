#!/usr/bin/env bash
# Builds libnginx-mod-mail-rs, a Debian package of the module for the nginx
# installed here, shaped like Debian's own libnginx-mod-* packages:
#   /usr/lib/nginx/modules/ngx_mail_rs_module.so
#   /usr/share/nginx/modules-available/mod-mail-rs.conf
#   enabled as /etc/nginx/modules-enabled/60-mod-mail-rs.conf, which sorts
#   after Debian's 50-mod-mail.conf (the mail core must load first)
# and depending on the nginx ABI it was built for (nginx-dev's
# debian/libnginx-mod.abisubstvars), like Debian's module packages.
#
# Usage: scripts/build-deb.sh [path/to/nginx]   -> target/deb/*.deb (path printed last)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
devsrc=${NGINX_DEV_SRC:-/usr/share/nginx/src}
so=$top/target/system-nginx/ngx_mail_rs_module.so

"$top/scripts/build-for-system-nginx.sh" "$@" >/dev/null

abi=$(sed -n 's/^nginx:abi=//p' "$devsrc/debian/libnginx-mod.abisubstvars" 2>/dev/null || true)
[ -n "$abi" ] || { echo "build-deb: no nginx:abi in $devsrc/debian/libnginx-mod.abisubstvars" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)-1
arch=$(dpkg --print-architecture)
glibc=$(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)

pkg=libnginx-mod-mail-rs
stage=$top/target/deb/stage
rm -rf "$stage"
install -D -m 0644 "$so" "$stage/usr/lib/nginx/modules/ngx_mail_rs_module.so"
objcopy --strip-debug "$stage/usr/lib/nginx/modules/ngx_mail_rs_module.so"
install -d "$stage/usr/share/nginx/modules-available" "$stage/usr/share/doc/$pkg" "$stage/DEBIAN"
echo "load_module modules/ngx_mail_rs_module.so;" > "$stage/usr/share/nginx/modules-available/mod-mail-rs.conf"
cat > "$stage/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngx-mail-rs
Files: *
License: BSD-2-Clause
EOF

cat > "$stage/DEBIAN/control" <<EOF
Package: $pkg
Version: $version
Architecture: $arch
Section: httpd
Priority: optional
Maintainer: ngx-mail-rs developers <ngx-mail-rs@localhost>
Depends: $abi, libnginx-mod-mail, libc6 (>= $glibc), libgcc-s1
Description: nginx mail proxy (POP3, IMAP, auth_http, proxy) in Rust
 A drop-in replacement for nginx's POP3 and IMAP mail modules, its
 auth_http client and mail proxy, loaded after libnginx-mod-mail and
 configured with the same mail {} directives.
EOF

# Enable on fresh installs and on reinstalls after a remove, keep what the
# admin did otherwise; a remove parks the link, a purge deletes it.
conf=mod-mail-rs.conf
link=60-mod-mail-rs.conf
cat > "$stage/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
enabled=/etc/nginx/modules-enabled
if [ -L \$enabled/$link.removed ]; then
    rm \$enabled/$link.removed
    parked=true
else
    parked=false
fi
if [ -z "\$2" ] || [ "\$parked" = true ]; then
    mkdir -p \$enabled
    ln -sf /usr/share/nginx/modules-available/$conf \$enabled/$link
fi
if [ "\$1" = configure ] && command -v dpkg-trigger >/dev/null 2>&1; then
    dpkg-trigger --no-await nginx-reload
fi
EOF
cat > "$stage/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
enabled=/etc/nginx/modules-enabled
case "\$1" in
remove)
    if [ -L \$enabled/$link ]; then
        mv \$enabled/$link \$enabled/$link.removed
    fi
    if command -v dpkg-trigger >/dev/null 2>&1; then
        dpkg-trigger --no-await nginx-reload
    fi
    ;;
purge)
    rm -f \$enabled/$link \$enabled/$link.removed
    ;;
esac
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/postrm"

out=$top/target/deb/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$out" >/dev/null
echo "$out"
