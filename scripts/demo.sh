#!/usr/bin/env bash
# A POP3 and IMAP proxy you can talk to with real clients:
#   nginx with ngx-mail-rs on 127.0.0.1:8110 (POP3) and 127.0.0.1:8143 (IMAP)
#   the auth server: nginx's own http{} block on 127.0.0.1:8180
#   the backend: Dovecot (Debian's packages) on 127.0.0.1:8111 and :8144,
#   with a mailbox
#
# Usage: scripts/demo.sh           run until Ctrl-C
#        scripts/demo.sh --check   start, fetch the message with curl, stop
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
check=0
[ "${1:-}" = --check ] && check=1

if ! command -v dovecot >/dev/null 2>&1 || [ ! -e /usr/lib/dovecot/imap ] || [ ! -e /usr/lib/dovecot/pop3 ]; then
    echo "installing Dovecot (POP3, IMAP) from Debian's packages (not started as a service)"
    "$top/scripts/apt-install-quiet.sh" dovecot-pop3d dovecot-imapd curl
fi

"$top/scripts/install-deps.sh"
"$top/scripts/build-nginx.sh" dynamic >/dev/null
NGINX_BUILD_DIR="$top/nginx-src/objs" cargo build --release --quiet --manifest-path "$top/Cargo.toml"

# Dovecot refuses to serve mail as root and needs every parent searchable
dir=$(mktemp -d /tmp/ngx-mail-rs-demo.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/dovecot" "$dir/nginx/logs" "$dir/mail/demo/new" "$dir/mail/demo/cur" "$dir/mail/demo/tmp"

cat > "$dir/mail/demo/new/1.demo" <<'MSG'
From: ngx-mail-rs <demo@example.com>
To: demo@example.com
Subject: Hello through the Rust mail proxy

This message was read from Dovecot through nginx and ngx-mail-rs.
MSG
chown -R 65534:65534 "$dir/mail"

echo 'demo:{PLAIN}backend-secret' > "$dir/dovecot/passwd"
cat > "$dir/dovecot/dovecot.conf" <<CONF
base_dir = $dir/dovecot/run
state_dir = $dir/dovecot/state
log_path = $dir/dovecot/dovecot.log
listen = 127.0.0.1
protocols = pop3 imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = nobody
default_login_user = nobody
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = 8144
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = 8111
  }
  inet_listener pop3s {
    port = 0
  }
}
passdb {
  driver = passwd-file
  args = $dir/dovecot/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$dir/mail/%u
}
mail_location = maildir:$dir/mail/%u
CONF

user=""
[ "$(id -u)" = 0 ] && user="user root;"
cat > "$dir/nginx/nginx.conf" <<CONF
$user
daemon off;
error_log $dir/nginx/error.log info;
pid $dir/nginx/nginx.pid;
load_module $top/nginx-src/objs/ngx_mail_module.so;
load_module $top/target/release/libngx_mail_rs.so;

events {}

mail {
    auth_http 127.0.0.1:8180/auth;

    server {
        listen 127.0.0.1:8110;
        protocol pop3;
        pop3_auth plain;
    }

    server {
        listen 127.0.0.1:8143;
        protocol imap;
    }
}

http {
    access_log off;

    server {
        listen 127.0.0.1:8180;

        # The auth server: user "demo" with password "demo" may log in, and is
        # sent to Dovecot with the backend's own password.
        location = /auth {
            set \$auth_status "Invalid login or password";
            set \$credentials "\$http_auth_user:\$http_auth_pass";
            if (\$credentials = "demo:demo") {
                set \$auth_status OK;
            }
            add_header Auth-Status \$auth_status;
            add_header Auth-Server 127.0.0.1;
            set \$backend_port 8111;
            if (\$http_auth_protocol = imap) {
                set \$backend_port 8144;
            }
            add_header Auth-Port \$backend_port;
            add_header Auth-Pass backend-secret;
            add_header Auth-Wait 1;
            return 204;
        }
    }
}
CONF

cleanup() {
    [ -n "${nginx_pid:-}" ] && kill "$nginx_pid" 2>/dev/null || true
    doveadm -c "$dir/dovecot/dovecot.conf" stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    if [ $check = 1 ] && [ -z "${keep:-}" ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

dovecot -c "$dir/dovecot/dovecot.conf"
"$top/nginx-src/objs/nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" &
nginx_pid=$!

for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/8110) 2>/dev/null && break
    sleep 0.1
done

if [ $check = 1 ]; then
    pop3=$(curl -s --max-time 10 pop3://demo:demo@127.0.0.1:8110/1) || true
    imap=$(curl -s --max-time 10 'imap://demo:demo@127.0.0.1:8143/INBOX;UID=1') || true
    if grep -q "Hello through the Rust mail proxy" <<<"$pop3" \
        && grep -q "Hello through the Rust mail proxy" <<<"$imap"; then
        echo "demo check: the message was read through the proxy with POP3 and IMAP"
        exit 0
    fi
    echo "demo check failed; nginx said:" >&2
    tail -20 "$dir/nginx/error.log" >&2
    exit 1
fi

cat <<EOF

ngx-mail-rs demo is running (Ctrl-C stops it).

  Read the message:     curl pop3://demo:demo@127.0.0.1:8110/1
  The same over IMAP:   curl 'imap://demo:demo@127.0.0.1:8143/INBOX;UID=1'
  List the mailbox:     curl pop3://demo:demo@127.0.0.1:8110/
  Talk POP3 yourself:   nc -C 127.0.0.1 8110     (USER demo / PASS demo / LIST / RETR 1 / QUIT)
  Talk IMAP yourself:   nc -C 127.0.0.1 8143     (a LOGIN demo demo / b SELECT INBOX / c FETCH 1 BODY[] / d LOGOUT)
  A wrong password:     curl -v pop3://demo:wrong@127.0.0.1:8110/

  nginx log:   $dir/nginx/error.log
  Dovecot log: $dir/dovecot/dovecot.log
EOF
wait "$nginx_pid"
