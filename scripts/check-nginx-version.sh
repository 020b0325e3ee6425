#!/usr/bin/env bash
# Checks the module against any nginx source tree (a release tarball, or a
# checkout of nginx's public repository at some tag), kept outside the project:
# builds that nginx in the two shapes scripts/build-nginx.sh uses, builds the
# module against each, then runs t/ in both shapes, as scripts/test.sh does
# for the crate's 1.28.3. Not run by CI.
#   <dir>/objs, <dir>/objs-static          nginx, mail dynamic / compiled in
#   <dir>/target, <dir>/target-static      the module built against each
# Usage:
#   scripts/check-nginx-version.sh /work/nginx-versions/1.31.4
#   scripts/check-nginx-version.sh --stock <dir>    the t/ suite against that
#                                                   nginx's stock C modules
#   scripts/check-nginx-version.sh <dir> t/imap.t   only the files named
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

stock=0
if [ "${1:-}" = --stock ]; then
    stock=1
    shift
fi
src=$(cd "${1:?usage: scripts/check-nginx-version.sh [--stock] <nginx-source-dir> [t/files...]}" && pwd)
shift
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(t/)
version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$src/src/core/nginx.h")
echo "=== nginx $version in $src"

NGINX_SRC_DIR=$src "$top/scripts/build-nginx.sh" all
profile=${PROFILE:-release}
cd "$top"
NGINX_BUILD_DIR="$src/objs" cargo build --profile "$profile" --quiet --target-dir "$src/target"
NGINX_BUILD_DIR="$src/objs-static" cargo build --profile "$profile" --quiet \
    --target-dir "$src/target-static"
module=$src/target/$profile/libngx_mail_rs.so
module_static=$src/target-static/$profile/libngx_mail_rs.so

user=""
[ "$(id -u)" = 0 ] && user="user root;"
mail_so="load_module $src/objs/ngx_mail_module.so;"

status=0
run_prove() {
    local shape=$1 binary=$2 globals=$3
    echo "=== t/ against nginx $version ($shape mail), $([ $stock = 1 ] && echo "stock modules" || echo "ngx-mail-rs")"
    TEST_NGINX_BINARY="$binary" TEST_NGINX_GLOBALS="$user $globals" \
        prove -j"${JOBS:-2}" "${files[@]}" || status=1
}

if [ $stock = 1 ]; then
    run_prove dynamic "$src/objs/nginx" "$mail_so"
    run_prove static "$src/objs-static/nginx" ""
else
    run_prove dynamic "$src/objs/nginx" "$mail_so load_module $module;"
    run_prove static "$src/objs-static/nginx" "load_module $module_static;"
fi
exit $status
