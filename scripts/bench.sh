#!/usr/bin/env bash
# Benchmarks ngx-mail-rs against nginx's stock mail modules on the same
# nginx binary (no debug log, -O2, mail as a dynamic module), alternating
# stock and ours for N rounds with worker_processes 1: login rates and
# latencies, 16 MiB pass-through per protocol next to a stream proxy_pass,
# worker memory per idle proxied session, plain and with TLS on the client
# side, and wake-up latency of idle sessions. See BENCHMARKS.md.
# Usage: scripts/bench.sh [--rounds N] [--quick] [--markdown FILE]
#            [--only login|keepalive|cache|keepalive-remote|cache-remote|
#                    transfer|idle|idle-tls|hold|backend-tls] [--hold]
#            [--idle-sessions N] [--mail-extra DIRECTIVES]
#            [--auth-delay-ms N] [--auth-conn-delay-ms N]
# keepalive and cache ask nginx's own http{} block in the same worker;
# the -remote groups ask a fake auth server in mailbench that waits before
# each answer (--auth-delay-ms, default 5 for cache-remote, 0 for
# keepalive-remote) and longer on a new connection's first
# (--auth-conn-delay-ms, default 0 and 1).
# The hold mode (as many idle sessions as the descriptor limit allows, in
# several workers) runs only when asked: --only hold, or --hold besides
# the rest. The openssl command makes the TLS figures' certificate; without
# it they are left out.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/build-nginx.sh bench >/dev/null
# a target directory of its own: this build is against the bench nginx tree
NGINX_BUILD_DIR="$top/nginx-src/objs-bench" CARGO_TARGET_DIR="$top/target/bench" \
    cargo build --release --quiet -p ngx-mail-rs
cargo build --release --quiet -p mailbench
# the hard limit as it is: raising it needs CAP_SYS_RESOURCE, which a
# container often lacks (the hold mode says which limit bound it)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# the nginx worker gets the last CPU (worker_cpu_affinity); the load
# generator and the fake backends stay on the others
pin=()
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null; then
    pin=(taskset -c "0-$((cpus - 2))")
fi
exec "${pin[@]}" "$top/target/release/mailbench" --nginx "$top/nginx-src/objs-bench/nginx" \
    --mail-module "$top/nginx-src/objs-bench/ngx_mail_module.so" \
    --ours "$top/target/bench/release/libngx_mail_rs.so" "$@"
