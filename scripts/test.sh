#!/usr/bin/env bash
# Builds nginx and the module, runs the protocol core's unit tests, then the
# t/ suite in both nginx shapes:
#   dynamic  mail as ngx_mail_module.so, loaded before ours
#   static   mail compiled in (--with-mail), ours loaded
# Usage:
#   scripts/test.sh            our module, both shapes
#   scripts/test.sh --stock    the same t/ against nginx's stock C modules
#                              (tests of deliberate hardening are skipped)
#   scripts/test.sh t/pop3.t   only the files named
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

stock=0
files=()
for arg in "$@"; do
    case $arg in
        --stock) stock=1 ;;
        *) files+=("$arg") ;;
    esac
done
[ ${#files[@]} -gt 0 ] || files=(t/)

scripts/install-deps.sh
scripts/build-nginx.sh all
profile=${PROFILE:-release}
NGINX_BUILD_DIR="$top/nginx-src/objs" cargo build --profile "$profile" --quiet
module="$top/target/$profile/libngx_mail_rs.so"

if [ $stock = 0 ]; then
    cargo test --quiet -p mail-core
    NGINX_BUILD_DIR="$top/nginx-src/objs" cargo test --profile "$profile" --quiet -p ngx-mail-rs
fi

user=""
[ "$(id -u)" = 0 ] && user="user root;"
mail_so="load_module $top/nginx-src/objs/ngx_mail_module.so;"

run_prove() {
    local shape=$1 binary=$2 globals=$3
    echo "=== t/ against nginx ($shape mail), $([ $stock = 1 ] && echo "stock modules" || echo "ngx-mail-rs")"
    TEST_NGINX_BINARY="$binary" TEST_NGINX_GLOBALS="$user $globals" \
        prove -j"${JOBS:-2}" "${files[@]}"
}

if [ $stock = 1 ]; then
    run_prove dynamic "$top/nginx-src/objs/nginx" "$mail_so"
    run_prove static "$top/nginx-src/objs-static/nginx" ""
else
    run_prove dynamic "$top/nginx-src/objs/nginx" "$mail_so load_module $module;"
    run_prove static "$top/nginx-src/objs-static/nginx" "load_module $module;"
fi
