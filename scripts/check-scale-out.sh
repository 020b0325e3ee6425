#!/usr/bin/env bash
# The README's scale-out recipe, run: HAProxy (Debian's package) in TCP
# mode in front of two nginx nodes, sending the PROXY protocol v2
# (`send-proxy-v2`); each node has `listen ... proxy_protocol` and
# `set_real_ip_from`, one shared auth server (a small Python one that
# records Client-IP), and one fake POP3 backend. Clients log in from
# 127.0.0.2 through HAProxy. Checked: the auth server saw 127.0.0.2 for
# every login (not HAProxy's address), each node's access log names
# 127.0.0.2, and each node's /metrics counts exactly its own sessions
# (round robin: half each), with the two adding up.
# Usage: scripts/check-scale-out.sh [SESSIONS]   (even; default 6)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
sessions=${1:-6}

command -v haproxy >/dev/null || "$top/scripts/apt-install-quiet.sh" haproxy
module="$top/target/release/libngx_mail_rs.so"
nginx="$top/nginx-src/objs/nginx"
mail_so="$top/nginx-src/objs/ngx_mail_module.so"
[ -e "$module" ] || { echo "build the module first (cargo build --release)" >&2; exit 1; }

dir=$(mktemp -d /tmp/ngx-mail-rs-scale-out.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for n in 1 2; do
        [ -e "$dir/node$n/nginx.pid" ] && kill -QUIT "$(cat "$dir/node$n/nginx.pid")" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

lb=19110 auth=19180 backend=19120

# the shared auth server: records each request's Client-IP, says OK
cat > "$dir/auth.py" <<'PY'
import http.server, sys
log = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        log.write("%s %s\n" % (self.headers.get("Client-IP"), self.headers.get("Auth-User")))
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", sys.argv[3])
        self.send_header("Auth-Pass", "backend-secret")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

# a fake POP3 backend: any login, then QUIT
cat > "$dir/backend.py" <<'PY'
import socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"+OK backend ready\r\n")
        for line in self.rfile:
            if line.upper().startswith(b"QUIT"):
                self.wfile.write(b"+OK bye\r\n")
                return
            self.wfile.write(b"+OK\r\n")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY

python3 "$dir/auth.py" $auth "$dir/auth.log" $backend & pids+=($!)
python3 "$dir/backend.py" $backend & pids+=($!)

for n in 1 2; do
    mkdir -p "$dir/node$n/logs"
    cat > "$dir/node$n/nginx.conf" <<CONF
user root;
load_module $mail_so;
load_module $module;
pid $dir/node$n/nginx.pid;
error_log $dir/node$n/error.log info;
events {}
mail {
    auth_http    127.0.0.1:$auth/auth;
    metrics_zone mail;
    access_log   $dir/node$n/session.log;

    server {
        listen           127.0.0.1:1911$n proxy_protocol;
        protocol         pop3;
        set_real_ip_from 127.0.0.1;
    }
}
http {
    access_log off;
    server {
        listen 127.0.0.1:1918$n;
        location = /metrics { mail_metrics mail; }
    }
}
CONF
    "$nginx" -p "$dir/node$n" -c "$dir/node$n/nginx.conf"
done

cat > "$dir/haproxy.cfg" <<CONF
global
    pidfile $dir/haproxy.pid
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend mail_pop3
    bind 127.0.0.1:$lb
    default_backend nodes
backend nodes
    balance roundrobin
    server node1 127.0.0.1:19111 send-proxy-v2
    server node2 127.0.0.1:19112 send-proxy-v2
CONF
haproxy -q -f "$dir/haproxy.cfg" & pids+=($!)

# wait for the nodes and HAProxy without opening a mail session
for p in 19181 19182; do
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$p/metrics" >/dev/null && break; sleep 0.1; done
done
# (a connection to HAProxy would open one to a node, a session it counts:
# its listening socket is looked for in /proc instead)
for _ in $(seq 50); do
    grep -qi ":$(printf %04X $lb) 00000000:0000 0A" /proc/net/tcp && break
    sleep 0.1
done

python3 - "$lb" "$sessions" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    s = socket.socket()
    s.bind(("127.0.0.2", 0))          # the real client's address
    s.connect(("127.0.0.1", port))
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK"), "greeting"
    for cmd in (b"USER user%d" % i, b"PASS client-secret", b"QUIT"):
        s.sendall(cmd + b"\r\n")
        line = f.readline()
        assert line.startswith(b"+OK"), (cmd, line)
    s.close()
PY

fail=0
check() { if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: got '$2', want '$3'"; fail=1; fi; }

sleep 0.5
check "logins seen by the auth server" "$(wc -l < "$dir/auth.log")" "$sessions"
check "auth server saw the real client address" \
    "$(grep -vc '^127\.0\.0\.2 ' "$dir/auth.log" || true)" 0
total=0
for n in 1 2; do
    m=$(curl -fs "http://127.0.0.1:1918$n/metrics")
    got=$(awk '$1 == "nginx_mail_connections_total{protocol=\"pop3\"}" { print $2 }' <<<"$m")
    check "node$n counts its own sessions" "$got" $((sessions / 2))
    total=$((total + got))
    check "node$n session log names the real client" \
        "$(grep -c ' client=127\.0\.0\.2 ' "$dir/node$n/session.log")" $((sessions / 2))
    check "node$n: no password in its logs" \
        "$(cat "$dir/node$n"/*.log | grep -c 'client-secret\|backend-secret' || true)" 0
done
check "the nodes' counts add up" "$total" "$sessions"
[ $fail = 0 ] && echo "scale-out recipe: ok" || { KEEP=1; echo "kept $dir"; exit 1; }
