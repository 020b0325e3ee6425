#!/usr/bin/env bash
# A POP3, IMAP and SMTP proxy you can talk to with real clients:
#   nginx with ngx-mail-rs on 127.0.0.1:8110 (POP3), :8143 (IMAP), :8025 (SMTP)
#   the auth server: nginx's own http{} block on 127.0.0.1:8180
#   the backends, both reached over TLS and verified against a CA the demo
#   generates (proxy_ssl_verify):
#     Dovecot (ssl = required): IMAP with STARTTLS on :8144 (proxy_starttls),
#       POP3S on :8995 (proxy_ssl), a mailbox for demo@example.com
#     Postfix: SMTPS on :8465 (proxy_ssl, XCLIENT), delivering
#       demo@example.com into that mailbox
#
# Usage: scripts/demo.sh           run until Ctrl-C
#        scripts/demo.sh --check   start, send a message with curl through the
#                                  proxy and read it back, stop
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
check=0
[ "${1:-}" = --check ] && check=1

if [ ! -e /usr/lib/dovecot/imap ] || [ ! -e /usr/lib/dovecot/pop3 ] \
    || [ ! -e /usr/lib/postfix/sbin/smtpd ] || ! command -v curl >/dev/null 2>&1 \
    || ! command -v openssl >/dev/null 2>&1; then
    echo "installing Dovecot and Postfix from Debian's packages (not started as services)"
    "$top/scripts/apt-install-quiet.sh" dovecot-pop3d dovecot-imapd postfix curl openssl ca-certificates
fi
. "$top/scripts/lib/ca.sh"
. "$top/scripts/lib/postfix.sh"
. "$top/scripts/lib/dovecot.sh"
. "$top/scripts/lib/nginx.sh"

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

# the demo's own CA: the proxy trusts it alone for its backends
ca_init "$dir/tls"
ca_cert "$dir/tls" dovecot.test
ca_cert "$dir/tls" postfix.test

dovecot_conf "$dir"
cat >> "$dir/dovecot/dovecot.conf" <<CONF
protocols = pop3 imap
ssl = required
ssl_cert = <$dir/tls/dovecot.test.crt
ssl_key = <$dir/tls/dovecot.test.key
disable_plaintext_auth = yes
mail_location = maildir:$dir/mail/%u
CONF
dovecot_service "$dir" imap imap=8144 imaps=0
dovecot_service "$dir" pop3 pop3=0 pop3s=8995

# SMTPS on 8465 for the demo; 8587 (STARTTLS required) is there to try
postfix_setup "$dir/postfix" "$dir/tls/postfix.test.crt" "$dir/tls/postfix.test.key" \
    8587 8465 "$dir/mail"

nginx_conf_head "$dir" > "$dir/nginx/nginx.conf"
cat >> "$dir/nginx/nginx.conf" <<CONF
mail {
    auth_http 127.0.0.1:8180/auth;

    # every backend over TLS, its certificate checked against the demo's CA
    proxy_ssl_verify               on;
    proxy_ssl_trusted_certificate  $dir/tls/ca.crt;
    proxy_ssl_server_name          on;

    server {
        listen 127.0.0.1:8110;
        protocol pop3;
        pop3_auth plain;
        proxy_ssl on;                   # POP3S to Dovecot
        proxy_ssl_name dovecot.test;
    }

    server {
        listen 127.0.0.1:8143;
        protocol imap;
        proxy_starttls on;              # IMAP upgraded with STARTTLS
        proxy_ssl_name dovecot.test;
    }

    server {
        listen 127.0.0.1:8025;
        protocol smtp;
        smtp_auth plain login;
        xclient on;                     # Postfix learns the client and login
        proxy_ssl on;                   # SMTPS to Postfix
        proxy_ssl_name postfix.test;
    }
}

http {
    access_log off;

    server {
        listen 127.0.0.1:8180;

        # The auth server: user "demo" with password "demo" may log in, and is
        # sent to Dovecot with the backend's own password, or to Postfix.
        location = /auth {
            set \$auth_status "Invalid login or password";
            set \$credentials "\$http_auth_user:\$http_auth_pass";
            if (\$credentials = "demo:demo") {
                set \$auth_status OK;
            }
            add_header Auth-Status \$auth_status;
            add_header Auth-Server 127.0.0.1;
            set \$backend_port 8995;
            if (\$http_auth_protocol = imap) {
                set \$backend_port 8144;
            }
            if (\$http_auth_protocol = smtp) {
                set \$backend_port 8465;
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
    dovecot_stop "$dir"
    postfix_stop "$dir/postfix"
    wait 2>/dev/null || true
    if [ $check = 1 ] && [ -z "${keep:-}" ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

dovecot_start "$dir"
# index the mailbox now, so the first message is UID 1 and the first one
# sent through the proxy UID 2
doveadm -c "$dir/dovecot/dovecot.conf" mailbox status -u demo messages INBOX >/dev/null
postfix_start "$dir/postfix"
"$top/nginx-src/objs/nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" &
nginx_pid=$!

for port in 8110 8143 8025 8144 8995; do
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done
# the STARTTLS port: a probe of the SMTPS one would log a failed handshake
postfix_wait_port "$dir/postfix" 8587

logs() {
    echo "--- nginx:" >&2
    tail -20 "$dir/nginx/error.log" >&2
    echo "--- Dovecot:" >&2
    tail -10 "$dir/dovecot/dovecot.log" >&2
    echo "--- Postfix:" >&2
    tail -15 "$dir/postfix/postfix.log" >&2
}

if [ $check = 1 ]; then
    fail() {
        echo "demo check failed: $1" >&2
        logs
        exit 1
    }
    pop3=$(curl -sS --max-time 10 pop3://demo:demo@127.0.0.1:8110/1) || true
    grep -q "Hello through the Rust mail proxy" <<<"$pop3" || fail "POP3 did not read message 1"
    imap=$(curl -sS --max-time 10 'imap://demo:demo@127.0.0.1:8143/INBOX;UID=1') || true
    grep -q "Hello through the Rust mail proxy" <<<"$imap" || fail "IMAP did not read UID 1"

    token="demo-$$-$RANDOM"
    printf 'From: demo@example.com\r\nTo: demo@example.com\r\nSubject: %s\r\n\r\nSent with curl through the proxy to Postfix.\r\n' \
        "$token" > "$dir/msg.txt"
    curl -sS --max-time 10 smtp://127.0.0.1:8025 --user demo:demo \
        --mail-from demo@example.com --mail-rcpt demo@example.com -T "$dir/msg.txt" \
        || fail "curl smtp:// through the proxy"
    # Postfix delivers in the background: poll up to 10 s
    for _ in $(seq 50); do
        back=$(curl -s --max-time 10 'imap://demo:demo@127.0.0.1:8143/INBOX;UID=2') || true
        grep -q "$token" <<<"$back" && break
        sleep 0.2
    done
    grep -q "$token" <<<"$back" || fail "the message sent with SMTP was not read back with IMAP"
    grep -q 'Anonymous TLS connection established from' "$dir/postfix/postfix.log" \
        || fail "Postfix logged no TLS session"
    grep -q 'sasl_method=XCLIENT, sasl_username=demo' "$dir/postfix/postfix.log" \
        || fail "Postfix did not take the login from XCLIENT"
    echo "demo check: POP3 (proxy_ssl) and IMAP (proxy_starttls) read the message from Dovecot;"
    echo "demo check: SMTP (proxy_ssl, XCLIENT) sent \"$token\" to Postfix, read back over IMAP as UID 2"
    exit 0
fi

cat <<EOF

ngx-mail-rs demo is running (Ctrl-C stops it).

  Read the message:     curl pop3://demo:demo@127.0.0.1:8110/1
  The same over IMAP:   curl 'imap://demo:demo@127.0.0.1:8143/INBOX;UID=1'
  Send one (Postfix):   printf 'Subject: hi\r\n\r\nhello\r\n' > /tmp/msg.txt
                        curl smtp://127.0.0.1:8025 --user demo:demo --mail-from demo@example.com \\
                             --mail-rcpt demo@example.com -T /tmp/msg.txt
  Read it back:         curl 'imap://demo:demo@127.0.0.1:8143/INBOX;UID=2'
  List the mailbox:     curl pop3://demo:demo@127.0.0.1:8110/
  Talk POP3 yourself:   nc -C 127.0.0.1 8110     (USER demo / PASS demo / LIST / RETR 1 / QUIT)
  Talk IMAP yourself:   nc -C 127.0.0.1 8143     (a LOGIN demo demo / b SELECT INBOX / c FETCH 1 BODY[] / d LOGOUT)
  A wrong password:     curl -v pop3://demo:wrong@127.0.0.1:8110/

  The proxy reaches Dovecot and Postfix over TLS only, verified against the
  demo's CA ($dir/tls/ca.crt).

  nginx log:   $dir/nginx/error.log
  Dovecot log: $dir/dovecot/dovecot.log
  Postfix log: $dir/postfix/postfix.log
EOF
wait "$nginx_pid"
