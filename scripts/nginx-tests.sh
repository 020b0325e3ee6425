#!/usr/bin/env bash
# Runs nginx's own mail tests (a checkout of the public nginx-tests
# repository, with its own lib; nothing of it lives in this repository)
# against our module in both shapes and prints per-file figures:
#   static   nginx with mail compiled in, our module loaded
#   dynamic  nginx without mail; the globals load ngx_mail_module.so, then ours
#            (nginx-tests would load the mail module itself, after our globals,
#            for a binary built --with-mail=dynamic)
# Usage: scripts/nginx-tests.sh [--ours] /path/to/nginx-tests [files...]
#   --ours   run our own t/*.t under nginx-tests' lib instead (copied into a
#            temporary directory next to a link to its lib/)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
ours=0
if [ "${1:-}" = --ours ]; then
    ours=1
    shift
fi
tests=$(cd "${1:?usage: scripts/nginx-tests.sh [--ours] /path/to/nginx-tests}" && pwd)
shift
scripts=$top/scripts
"$scripts/build-nginx.sh" all >/dev/null
"$scripts/build-nginx.sh" nomail >/dev/null
NGINX_BUILD_DIR="$top/nginx-src/objs" cargo build --release --quiet --manifest-path "$top/Cargo.toml"
module=$top/target/release/libngx_mail_rs.so
user=""
[ "$(id -u)" = 0 ] && user="user root;"
if [ $ours = 1 ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    ln -s "$tests/lib" "$work/lib"
    cp "$top"/t/*.t "$work/"
    cd "$work"
    [ $# -gt 0 ] || set -- *.t
else
    cd "$tests"
    [ $# -gt 0 ] || set -- mail_*.t worker_shutdown_timeout_mail.t
fi
status=0
run() {
    local shape=$1 binary=$2 globals=$3 total=0 failed=0
    echo "=== nginx-tests, $shape shape"
    shift 3
    for f in "$@"; do
        out=$(TEST_NGINX_BINARY=$binary TEST_NGINX_GLOBALS="$globals" prove "$f" 2>&1) || failed=1
        n=$(sed -n 's/.*Tests=\([0-9]*\).*/\1/p' <<<"$out")
        total=$((total + ${n:-0}))
        printf '%-34s %4s  %s\n' "$f" "${n:-0}" "$(sed -n 's/^Result: //p' <<<"$out")"
    done
    echo "$shape: $total assertions"
    [ $failed = 0 ] || status=1
}
run static "$top/nginx-src/objs-static/nginx" "load_module $module; $user" "$@"
run dynamic "$top/nginx-src/objs-nomail/nginx" \
    "load_module $top/nginx-src/objs/ngx_mail_module.so; load_module $module; $user" "$@"
exit $status
