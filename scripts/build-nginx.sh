#!/usr/bin/env bash
# Unpacks nginx 1.28.3 from the nginx-src crate into nginx-src/ and builds it in
# the two shapes the tests use:
#   nginx-src/objs         mail as a dynamic module (the way distributions ship it)
#   nginx-src/objs-static  mail compiled in (--with-mail)
#   nginx-src/objs-bench   mail dynamic, no debug log, -O2 ("bench", on request)
#   nginx-src/objs-nomail  no mail at all ("nomail", built only on request):
#                          for running nginx-tests with objs/ngx_mail_module.so
#                          loaded from the globals; --with-mail_ssl_module only
#                          marks the binary so nginx-tests runs its TLS files
# Usage: scripts/build-nginx.sh [dynamic|static|nomail|bench|all]   (default: all)
# NGINX_SRC_DIR=/path/to/nginx builds that source tree (a release or a checkout
# of nginx's repository, outside the project) in the same shapes instead of
# unpacking the crate's 1.28.3 (scripts/check-nginx-version.sh uses it).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
shape=${1:-all}
jobs=$(nproc 2>/dev/null || echo 2)

if [ -n "${NGINX_SRC_DIR:-}" ]; then
    src=$(cd "$NGINX_SRC_DIR" && pwd)
    [ -f "$src/auto/configure" ] || { echo "$src: no auto/configure (not an nginx source tree)" >&2; exit 1; }
else
    locator=$top/scripts/nginx-src-locator/Cargo.toml
    cargo fetch --quiet --manifest-path "$locator"
    crate_dir=$(cargo metadata --format-version 1 --manifest-path "$locator" \
        | python3 -c 'import json,sys,os; m=json.load(sys.stdin); print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"]=="nginx-src"))')
    src=$top/nginx-src
    if [ ! -f "$src/src/core/nginx.h" ] || ! cmp -s "$crate_dir/nginx/src/core/nginx.h" "$src/src/core/nginx.h"; then
        rm -rf "$src"
        cp -a "$crate_dir/nginx" "$src"
        chmod -R u+w "$src"
    fi
fi

common=(--with-compat --with-debug --with-http_ssl_module --with-mail_ssl_module
        --with-stream --with-stream_ssl_module --without-http_gzip_module)

build() {
    local builddir=$1; shift
    cd "$src"
    if [ ! -f "$builddir/Makefile" ] || [ "$(cat "$builddir/.flags" 2>/dev/null)" != "$*" ]; then
        auto/configure --builddir="$builddir" "$@" >"$src/configure-$(basename "$builddir").log" 2>&1 \
            || { tail -20 "$src/configure-$(basename "$builddir").log"; exit 1; }
        echo "$*" > "$builddir/.flags"
    fi
    make -s -j"$jobs" -f "$builddir/Makefile" >/dev/null
    if grep -q "modules:" "$builddir/Makefile"; then
        make -s -j"$jobs" -f "$builddir/Makefile" modules >/dev/null
    fi
}

case $shape in
    dynamic|all) build objs "${common[@]}" --with-mail=dynamic ;;&
    static|all)  build objs-static "${common[@]}" --with-mail ;;&
    nomail)      build objs-nomail "${common[@]}" ;;
    bench)       build objs-bench --with-compat --with-http_ssl_module --with-mail_ssl_module \
                     --with-stream --with-stream_ssl_module --without-http_gzip_module --with-mail=dynamic \
                     --with-cc-opt=-O2 ;;
esac
echo "nginx built in $src"
