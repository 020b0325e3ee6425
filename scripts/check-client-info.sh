#!/usr/bin/env bash
# proxy_pass_client_info against a real Dovecot: a private Dovecot (IMAP
# and POP3, the proxy's address in login_trusted_networks) behind our
# proxy; Python's imaplib and poplib log in from 127.0.0.2, and Dovecot's
# log must name that address (rip=127.0.0.2) for both logins, where with
# the directive off it names the proxy's (rip=127.0.0.1).
# Usage: scripts/check-client-info.sh   (root: installs Dovecot if missing)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/dovecot.sh"
. "$top/scripts/lib/nginx.sh"

if [ ! -e /usr/lib/dovecot/imap ] || [ ! -e /usr/lib/dovecot/pop3 ]; then
    "$top/scripts/apt-install-quiet.sh" dovecot-pop3d dovecot-imapd
fi
[ -e "$top/target/release/libngx_mail_rs.so" ] || {
    echo "build the module first (scripts/test.sh or cargo build --release)" >&2
    exit 1
}

dir=$(mktemp -d /tmp/ngx-mail-rs-client-info.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/dovecot" "$dir/nginx/logs" "$dir/mail/demo/new" "$dir/mail/demo/cur" "$dir/mail/demo/tmp"
chown -R 65534:65534 "$dir/mail"
dovecot_conf "$dir"
cat >> "$dir/dovecot/dovecot.conf" <<CONF
protocols = pop3 imap
ssl = no
disable_plaintext_auth = no
login_trusted_networks = 127.0.0.1/32
mail_location = maildir:$dir/mail/%u
CONF
dovecot_service "$dir" imap imap=8244 imaps=0
dovecot_service "$dir" pop3 pop3=8211 pop3s=0

nginx_conf_head "$dir" > "$dir/nginx/nginx.conf"
cat >> "$dir/nginx/nginx.conf" <<CONF
mail {
    auth_http 127.0.0.1:8280/auth;
    proxy_pass_client_info on;
    server { listen 127.0.0.1:8210; protocol pop3; }
    server { listen 127.0.0.1:8243; protocol imap; }
    server { listen 127.0.0.1:8212; protocol pop3; proxy_pass_client_info off; }
    server { listen 127.0.0.1:8245; protocol imap; proxy_pass_client_info off; }
}
http {
    access_log off;
    server {
        listen 127.0.0.1:8280;
        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            set \$backend_port 8211;
            if (\$http_auth_protocol = imap) {
                set \$backend_port 8244;
            }
            add_header Auth-Port \$backend_port;
            add_header Auth-Pass backend-secret;
            return 204;
        }
    }
}
CONF

cleanup() {
    [ -e "$dir/nginx/nginx.pid" ] && kill "$(cat "$dir/nginx/nginx.pid")" 2>/dev/null || true
    dovecot_stop "$dir"
}
trap cleanup EXIT

dovecot_start "$dir"
"$top/nginx-src/objs/nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" &
python3 - <<'PY'
import socket, time
for port in (8210, 8243, 8211, 8244):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.1)
PY

python3 - <<'PY'
import imaplib, poplib, socket

def connect(port):
    return socket.create_connection(("127.0.0.1", port), 5, source_address=("127.0.0.2", 0))

class Imap(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return connect(self.port)

class Pop3(poplib.POP3):
    def _create_socket(self, timeout):
        return connect(self.port)

for port in (8243, 8245):
    m = Imap("127.0.0.1", port)
    m.login("demo", "anything")
    m.logout()
for port in (8210, 8212):
    p = Pop3("127.0.0.1", port)
    p.user("demo")
    p.pass_("anything")
    p.quit()
PY
sleep 0.5

log="$dir/dovecot/dovecot.log"
grep -E '(imap|pop3)-login: Info: Login' "$log"
fail=0
for proto in imap pop3; do
    on=$(grep -c "$proto-login: Info: Login: user=<demo>.*rip=127\.0\.0\.2" "$log" || true)
    off=$(grep -c "$proto-login: Info: Login: user=<demo>.*rip=127\.0\.0\.1" "$log" || true)
    echo "$proto: logins naming the client (127.0.0.2): $on, naming the proxy (127.0.0.1): $off"
    [ "$on" = 1 ] && [ "$off" = 1 ] || fail=1
done
[ $fail = 0 ] && echo "client info reaches Dovecot: OK" || { echo "client info check FAILED" >&2; exit 1; }
