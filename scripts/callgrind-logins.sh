#!/usr/bin/env bash
# Counts the instructions nginx's worker runs in user space per login
# session (connect, greeting, login through auth_http and the backend, one
# command, logout), stock modules against ngx-mail-rs, with valgrind's
# callgrind: a count, not a time, so it repeats to the instruction whatever
# else the machine does. The worker's total after 20 + N sessions minus its
# total after 20 + 0, divided by N. The auth server is the same worker's
# http{} block, so its cost (the same for both) is in the figures.
# Usage: scripts/callgrind-logins.sh [pop3|imap|smtp ...] [--sessions N]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
command -v valgrind >/dev/null || { echo "callgrind-logins: valgrind is required" >&2; exit 1; }

sessions=200
protos=()
while [ $# -gt 0 ]; do
    case $1 in
        --sessions) sessions=$2; shift ;;
        pop3|imap|smtp) protos+=("$1") ;;
        *) echo "callgrind-logins: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ ${#protos[@]} -gt 0 ] || protos=(pop3 imap smtp)

scripts/build-nginx.sh bench >/dev/null
NGINX_BUILD_DIR="$top/nginx-src/objs-bench" CARGO_TARGET_DIR="$top/target/bench" \
    cargo build --release --quiet -p ngx-mail-rs
cargo build --release --quiet -p mailbench

work=$(mktemp -d /tmp/ngx-mail-rs-callgrind.XXXXXX)
[ -n "${KEEP:-}" ] && echo "callgrind-logins: profiles kept in $work" >&2 || trap 'rm -rf "$work"' EXIT
cat > "$work/nginx" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --trace-children=yes --log-file=\$CALLGRIND_DIR/vg.%p \
    --callgrind-out-file=\$CALLGRIND_DIR/out.%p $top/nginx-src/objs-bench/nginx "\$@"
WRAP
chmod +x "$work/nginx"

# the worker's instruction total for one run: the largest of the processes'
worker_total() {
    local dir=$1 count=$2 what=$3
    rm -rf "$dir"
    mkdir -p "$dir"
    CALLGRIND_DIR="$dir" "$top/target/release/mailbench" --nginx "$work/nginx" \
        --mail-module "$top/nginx-src/objs-bench/ngx_mail_module.so" \
        --ours "$top/target/bench/release/libngx_mail_rs.so" \
        --profile "$what" --logins "$count" >/dev/null
    awk '/^totals:/ { if ($2 > max) max = $2 } END { print max + 0 }' "$dir"/out.*
}

printf '| protocol | stock instructions per session | ours | ours/stock |\n|---|---|---|---|\n'
for proto in "${protos[@]}"; do
    declare -A per=()
    for who in stock ours; do
        what=$proto
        [ $who = stock ] && what=$proto:stock
        base=$(worker_total "$work/$who-0" 0 "$what")
        full=$(worker_total "$work/$who-n" "$sessions" "$what")
        per[$who]=$(( (full - base) / sessions ))
    done
    printf '| %s | %d | %d | %s |\n' "$proto" "${per[stock]}" "${per[ours]}" \
        "$(awk -v a="${per[ours]}" -v b="${per[stock]}" 'BEGIN { printf "%.2f", a / b }')"
done
