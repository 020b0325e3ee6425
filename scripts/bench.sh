#!/usr/bin/env bash
# Benchmarks ngx-mail-rs against nginx's stock mail modules on the same
# nginx binary (no debug log, -O2, mail as a dynamic module), alternating
# stock and ours for N rounds with worker_processes 1: login rates and
# latencies, 16 MiB pass-through per protocol next to a stream proxy_pass,
# and worker memory per idle proxied session. See BENCHMARKS.md.
# Usage: scripts/bench.sh [--rounds N] [--quick] [--markdown FILE]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
scripts/build-nginx.sh bench >/dev/null
# a target directory of its own: this build is against the bench nginx tree
NGINX_BUILD_DIR="$top/nginx-src/objs-bench" CARGO_TARGET_DIR="$top/target/bench" \
    cargo build --release --quiet -p ngx-mail-rs
cargo build --release --quiet -p mailbench
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec "$top/target/release/mailbench" --nginx "$top/nginx-src/objs-bench/nginx" \
    --mail-module "$top/nginx-src/objs-bench/ngx_mail_module.so" \
    --ours "$top/target/bench/release/libngx_mail_rs.so" "$@"
