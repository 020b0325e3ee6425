#!/usr/bin/env bash
# Soak under injected faults (scripts/soak/): POP3, IMAP and SMTP sessions
# through nginx + this module with clients, auth server, DNS server and
# backends that fail at every stage, and reloads during the load.
# Usage: scripts/soak.sh [seconds] [--valgrind] [--concurrency N] [--reload-every S]
#   --valgrind   every nginx process under valgrind memcheck (one worker)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
seconds=60
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --valgrind) args+=(--valgrind "$top/scripts/memcheck.supp") ;;
        --concurrency|--reload-every) args+=("$1" "$2"); shift ;;
        *) seconds=$1 ;;
    esac
    shift
done
scripts/build-nginx.sh dynamic >/dev/null
NGINX_BUILD_DIR="$top/nginx-src/objs" cargo build --release --quiet
user=""
[ "$(id -u)" = 0 ] && user="user root;"
exec python3 scripts/soak/soak.py --nginx "$top/nginx-src/objs/nginx" --seconds "$seconds" \
    --globals "$user load_module $top/nginx-src/objs/ngx_mail_module.so; load_module $top/target/release/libngx_mail_rs.so;" \
    "${args[@]}"
