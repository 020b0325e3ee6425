#!/usr/bin/env bash
# Builds nginx with its own ./configure and this checkout as a dynamic
# module (the way a packager would), then checks the result loads and
# accepts a mail configuration.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/build-nginx.sh" dynamic >/dev/null
src=$top/nginx-src
out=$src/objs-addon
cd "$src"
auto/configure --builddir="$out" --with-compat --with-mail=dynamic --with-mail_ssl_module \
    --without-http_gzip_module --add-dynamic-module="$top" >"$out.log" 2>&1 \
    || { tail -20 "$out.log"; exit 1; }
make -s -j"$(nproc)" -f "$out/Makefile" >/dev/null
make -s -f "$out/Makefile" modules >/dev/null
test -f "$out/ngx_mail_rs_module.so"

conf=$(mktemp -d)
trap 'rm -rf "$conf"' EXIT
cat > "$conf/nginx.conf" <<CONF
load_module $out/ngx_mail_module.so;
load_module $out/ngx_mail_rs_module.so;
error_log $conf/error.log notice;
pid $conf/nginx.pid;
events {}
mail {
    auth_http 127.0.0.1:9/auth;
    server { listen 127.0.0.1:1110; protocol pop3; pop3_auth plain apop; }
}
CONF
"$out/nginx" -p "$conf" -e "$conf/startup.log" -c "$conf/nginx.conf" -t 2>&1 | tee "$conf/t.log"
grep -q "ngx-mail-rs .*: serving pop3" "$conf/error.log" "$conf/t.log"
echo "configure --add-dynamic-module build: ok"
