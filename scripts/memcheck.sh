#!/usr/bin/env bash
# Runs t/ with every nginx process (master, workers, nginx -t) under
# valgrind memcheck, our module loaded. Fails on any invalid access or
# uninitialised use, and on any definite leak other than the allocations
# nginx itself keeps for a process's life (scripts/memcheck.supp).
# Usage: scripts/memcheck.sh [--slabs] [t/files...]   (needs valgrind)
#   JOBS=n   t/ files run at once (default 2: valgrind keeps a core busy each)
#   default  this module's blocks from malloc, so memcheck sees each of them
#   --slabs  the slabs production uses, with their debug checks on (a double
#            free or a write to a free block aborts the worker, which the
#            t/ files' alert checks catch); memcheck still checks everything
#            else, nginx's pools included
set -euo pipefail
alloc_env="export NGX_MAIL_RS_SYSTEM_ALLOC=1"
if [ "${1:-}" = --slabs ]; then
    alloc_env="export NGX_MAIL_RS_SLAB_DEBUG=1"
    shift
fi
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
command -v valgrind >/dev/null || { echo "memcheck: valgrind is required" >&2; exit 1; }
scripts/build-nginx.sh dynamic >/dev/null
NGINX_BUILD_DIR="$top/nginx-src/objs" cargo build --release --quiet
work=$(mktemp -d /tmp/ngx-mail-rs-memcheck.XXXXXX)
cat > "$work/nginx" <<WRAP
#!/bin/sh
case "\$1" in -V|-v) exec $top/nginx-src/objs/nginx "\$@";; esac
# see the usage above (src/alloc.rs reads these)
$alloc_env
exec valgrind --tool=memcheck --trace-children=yes --log-file=$work/vg.%p.log \
    --num-callers=30 --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --suppressions=$top/scripts/memcheck.supp \
    $top/nginx-src/objs/nginx "\$@"
WRAP
chmod +x "$work/nginx"
user=""
[ "$(id -u)" = 0 ] && user="user root;"
[ $# -gt 0 ] || set -- t/
TEST_NGINX_BINARY="$work/nginx" \
TEST_NGINX_GLOBALS="$user load_module $top/nginx-src/objs/ngx_mail_module.so; load_module $top/target/release/libngx_mail_rs.so;" \
    prove -j"${JOBS:-2}" "$@"
logs=$(ls "$work"/vg.*.log | wc -l)
errors=$(grep -h "ERROR SUMMARY" "$work"/vg.*.log | awk '{s += $4} END {print s + 0}')
echo "memcheck: $logs nginx processes, $errors errors (invalid accesses, uninitialised values, definite leaks)"
[ "$errors" = 0 ] || { echo "logs kept in $work" >&2; exit 1; }
rm -rf "$work"
