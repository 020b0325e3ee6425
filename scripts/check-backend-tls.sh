#!/usr/bin/env bash
# TLS to the backends against a real Dovecot with `ssl = required` and a
# real Postfix that takes mail over TLS only: a private Dovecot (IMAP, POP3
# and ManageSieve, STARTTLS and implicit TLS) and a private Postfix
# (scripts/lib/postfix.sh: SMTPS, and STARTTLS with smtpd_tls_security_level
# = encrypt), their certificates signed by a private CA for the names
# dovecot.test and postfix.test, behind our proxy with proxy_ssl_verify on.
# Python logs in through each of proxy_starttls (IMAP, POP3, ManageSieve,
# SMTP) and proxy_ssl (IMAPS, POP3S, SMTPS) and runs a command or sends a
# message. Dovecot must log every login with TLS (not only "secured":
# Dovecot counts a loopback peer as secured and would take its password in
# plain text too, so that is no check); Postfix must log a TLS session, the
# login taken from XCLIENT and the delivery for each message. A server whose
# proxy_ssl_name is not the certificate's is refused by us, and a plain SMTP
# proxy by Postfix.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

if [ ! -e /usr/lib/dovecot/imap ] || [ ! -e /usr/lib/dovecot/pop3 ] \
    || [ ! -e /usr/lib/dovecot/managesieve ] || [ ! -e /usr/lib/postfix/sbin/smtpd ]; then
    "$top/scripts/apt-install-quiet.sh" dovecot-pop3d dovecot-imapd \
        dovecot-sieve dovecot-managesieved postfix
fi
. "$top/scripts/lib/ca.sh"
. "$top/scripts/lib/postfix.sh"
. "$top/scripts/lib/dovecot.sh"
. "$top/scripts/lib/nginx.sh"
[ -e "$top/target/release/libngx_mail_rs.so" ] || {
    echo "build the module first (scripts/test.sh or cargo build --release)" >&2
    exit 1
}

dir=$(mktemp -d /tmp/ngx-mail-rs-backend-tls.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/dovecot" "$dir/nginx/logs" "$dir/mail/demo/new" "$dir/mail/demo/cur" \
    "$dir/mail/demo/tmp"
chown -R 65534:65534 "$dir/mail"

# a private CA, and certificates for dovecot.test and postfix.test
ca_init "$dir/tls"
ca_cert "$dir/tls" dovecot.test
ca_cert "$dir/tls" postfix.test

dovecot_conf "$dir"
cat >> "$dir/dovecot/dovecot.conf" <<CONF
protocols = pop3 imap sieve
ssl = required
ssl_cert = <$dir/tls/dovecot.test.crt
ssl_key = <$dir/tls/dovecot.test.key
disable_plaintext_auth = yes
mail_location = maildir:$dir/mail/%u
CONF
dovecot_service "$dir" imap imap=8344 imaps=8345
dovecot_service "$dir" pop3 pop3=8311 pop3s=8314
dovecot_service "$dir" managesieve sieve=8391

# 8326: STARTTLS required, 8366: SMTPS
postfix_setup "$dir/postfix" "$dir/tls/postfix.test.crt" "$dir/tls/postfix.test.key" \
    8326 8366 "$dir/mail"

nginx_conf_head "$dir" > "$dir/nginx/nginx.conf"
cat >> "$dir/nginx/nginx.conf" <<CONF
mail {
    auth_http 127.0.0.1:8380/auth;
    proxy_ssl_verify               on;
    proxy_ssl_trusted_certificate  $dir/tls/ca.crt;
    proxy_ssl_name                 dovecot.test;
    proxy_ssl_server_name          on;

    server { listen 127.0.0.1:8343; protocol imap; proxy_starttls on;
             auth_http_header X-Backend 8344; }
    server { listen 127.0.0.1:8346; protocol imap; proxy_ssl on;
             auth_http_header X-Backend 8345; }
    server { listen 127.0.0.1:8310; protocol pop3; proxy_starttls on;
             auth_http_header X-Backend 8311; }
    server { listen 127.0.0.1:8313; protocol pop3; proxy_ssl on;
             auth_http_header X-Backend 8314; }
    server { listen 127.0.0.1:8390; protocol sieve; proxy_starttls on;
             auth_http_header X-Backend 8391; }
    server { listen 127.0.0.1:8325; protocol smtp; smtp_auth plain login;
             proxy_starttls on; proxy_ssl_name postfix.test;
             auth_http_header X-Backend 8326; }
    server { listen 127.0.0.1:8365; protocol smtp; smtp_auth plain login;
             proxy_ssl on; proxy_ssl_name postfix.test;
             auth_http_header X-Backend 8366; }
    # plain text to Postfix's STARTTLS-required port: refused by Postfix
    server { listen 127.0.0.1:8328; protocol smtp; smtp_auth plain login;
             auth_http_header X-Backend 8326; }
    # the wrong name: refused by verification
    server { listen 127.0.0.1:8348; protocol imap; proxy_ssl on;
             proxy_ssl_name other.test; auth_http_header X-Backend 8345; }
}
http {
    access_log off;
    server {
        listen 127.0.0.1:8380;
        location = /auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port \$http_x_backend;
            add_header Auth-Pass backend-secret;
            return 204;
        }
    }
}
CONF

cleanup() {
    [ -e "$dir/nginx/nginx.pid" ] && kill "$(cat "$dir/nginx/nginx.pid")" 2>/dev/null || true
    dovecot_stop "$dir"
    postfix_stop "$dir/postfix"
}
trap cleanup EXIT

dovecot_start "$dir"
postfix_start "$dir/postfix"
"$top/nginx-src/objs/nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" &
python3 - <<'PY'
import socket, time
for port in (8343, 8346, 8310, 8313, 8390, 8325, 8365, 8328, 8344, 8345, 8311, 8314,
             8391, 8326):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.1)
PY

fail=0
python3 - <<'PY' || fail=1
import base64, imaplib, poplib, smtplib, socket, sys

ok = True
def check(name, good, detail=""):
    global ok
    print(("ok     " if good else "FAILED ") + name + (": " + detail if detail else ""))
    ok = ok and good

for port, how in ((8343, "proxy_starttls"), (8346, "proxy_ssl")):
    m = imaplib.IMAP4("127.0.0.1", port)
    typ, _ = m.login("demo", "anything")
    typ2, data = m.select("INBOX")
    check(f"imap {how}", typ == "OK" and typ2 == "OK", repr(data))
    m.logout()

for port, how in ((8310, "proxy_starttls"), (8313, "proxy_ssl")):
    p = poplib.POP3("127.0.0.1", port)
    p.user("demo")
    reply = p.pass_("anything")
    check(f"pop3 {how}", reply.startswith(b"+OK"), repr(p.stat()))
    p.quit()

def sieve_response(f):
    lines = []
    while True:
        line = f.readline()
        lines.append(line)
        if not line or line[:2].upper() in (b"OK", b"NO") or line[:3].upper() == b"BYE":
            return lines

s = socket.create_connection(("127.0.0.1", 8390), 5)
f = s.makefile("rb")
sieve_response(f)
token = base64.b64encode(b"\0demo\0anything").decode()
s.sendall(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
auth = sieve_response(f)
s.sendall(b"LISTSCRIPTS\r\n")
listing = sieve_response(f)
check("managesieve proxy_starttls", auth[-1].startswith(b"OK") and listing[-1].startswith(b"OK"),
      repr(auth[-1]))
s.close()

for port, how in ((8325, "proxy_starttls"), (8365, "proxy_ssl")):
    c = smtplib.SMTP("127.0.0.1", port, timeout=10)
    c.login("demo", "anything")
    refused = c.sendmail("demo@example.com", ["demo@example.com"],
                         f"Subject: backend TLS check, smtp {how}\r\n\r\nhello\r\n")
    check(f"smtp {how}", refused == {}, repr(refused))
    c.quit()

try:
    c = smtplib.SMTP("127.0.0.1", 8328, timeout=10)
    c.login("demo", "anything")
    c.sendmail("demo@example.com", ["demo@example.com"], "Subject: plain\r\n\r\nx\r\n")
    check("plain text refused by Postfix", False, "sent")
except (smtplib.SMTPException, OSError) as e:
    check("plain text refused by Postfix", True, str(e))

for port, why in ((8348, "wrong name refused by us"),):
    m = imaplib.IMAP4("127.0.0.1", port)
    try:
        m.login("demo", "anything")
        check(why, False, "logged in")
    except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError) as e:
        check(why, True, str(e))
sys.exit(0 if ok else 1)
PY
sleep 0.5

log="$dir/dovecot/dovecot.log"
grep -E '(imap|pop3|managesieve)-login: Info: (Login|Disconnected|Aborted)' "$log" || true
for proto in imap pop3 managesieve; do
    want=2
    [ $proto = managesieve ] && want=1
    tls=$(grep -c "$proto-login: Info: Login: user=<demo>.*, TLS" "$log" || true)
    echo "$proto: logins over TLS: $tls (want $want)"
    [ "$tls" = "$want" ] || fail=1
done
plog="$dir/postfix/postfix.log"
for _ in $(seq 50); do
    [ "$(grep -c 'status=sent (delivered to maildir)' "$plog" || true)" -ge 2 ] && break
    sleep 0.1
done
grep -E 'TLS connection established from|sasl_method=XCLIENT|status=sent|disconnect from|Must issue a STARTTLS' "$plog" \
    | grep -v postfix-script || true
for what in 'TLS connection established from' 'sasl_method=XCLIENT, sasl_username=demo' \
    'status=sent (delivered to maildir)'; do
    n=$(grep -c "$what" "$plog" || true)
    echo "smtp: \"$what\": $n (want 2)"
    [ "$n" = 2 ] || fail=1
done
n=$(grep -c 'disconnect from .* starttls=1 ' "$plog" || true)
echo "smtp: sessions upgraded with STARTTLS: $n (want 1)"
[ "$n" = 1 ] || fail=1
grep -E 'upstream SSL certificate does not match "other.test"' "$dir/nginx/error.log" \
    || { echo "no verification error for other.test" >&2; fail=1; }
[ $fail = 0 ] && echo "TLS to Dovecot (ssl = required) and Postfix (TLS required): OK" \
    || { echo "backend TLS check FAILED (logs in $dir)" >&2; trap - EXIT; cleanup; exit 1; }
