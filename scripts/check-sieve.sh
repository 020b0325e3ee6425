#!/usr/bin/env bash
# ManageSieve end to end with a real server and a real client:
#   Dovecot's Pigeonhole (Debian's dovecot-managesieved) on 127.0.0.1:8191,
#   a private instance with a passwd-file user, never a system service
#   nginx with ngx-mail-rs: `protocol sieve` with `starttls on` on
#   127.0.0.1:8190, its auth server an http{} block on 127.0.0.1:8182
#   sieve-connect (Debian's package) through nginx: STARTTLS with a test
#   certificate, then upload, list, activate, download, delete
# Checks what sieve-connect printed and fetched, the script Dovecot stored
# and activated, Dovecot's log (the login nginx made for the user) and
# nginx's log; then a wrong password and a backend refusal.
# Usage: scripts/check-sieve.sh [--keep]   (--keep leaves the directory)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib/dovecot.sh"
. "$top/scripts/lib/nginx.sh"
keep=0
[ "${1:-}" = --keep ] && keep=1

if ! command -v dovecot >/dev/null 2>&1 || [ ! -e /usr/lib/dovecot/managesieve ] \
    || ! command -v sieve-connect >/dev/null 2>&1; then
    echo "installing Dovecot's ManageSieve server and sieve-connect from Debian's packages (not started as a service)"
    "$top/scripts/apt-install-quiet.sh" dovecot-managesieved sieve-connect openssl
fi

"$top/scripts/install-deps.sh"
"$top/scripts/build-nginx.sh" dynamic >/dev/null
NGINX_BUILD_DIR="$top/nginx-src/objs" cargo build --release --quiet --manifest-path "$top/Cargo.toml"

# Dovecot refuses to serve mail as root and needs every parent searchable
dir=$(mktemp -d /tmp/ngx-mail-rs-sieve.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/dovecot" "$dir/nginx/logs" "$dir/home/demo" "$dir/client"
chown -R 65534:65534 "$dir/home"

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$dir/nginx/localhost.key" -out "$dir/nginx/localhost.crt" 2>/dev/null

dovecot_conf "$dir" "$dir/home"
cat >> "$dir/dovecot/dovecot.conf" <<CONF
protocols = sieve
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
mail_location = maildir:~/Maildir
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
CONF
dovecot_service "$dir" managesieve sieve=8191

nginx_conf_head "$dir" > "$dir/nginx/nginx.conf"
cat >> "$dir/nginx/nginx.conf" <<CONF
mail {
    auth_http 127.0.0.1:8182/auth;

    server {
        listen 127.0.0.1:8190;
        protocol sieve;
        sieve_auth plain login;
        sieve_capabilities '"IMPLEMENTATION" "nginx in front of Pigeonhole"'
                           '"SIEVE" "fileinto reject envelope vacation"'
                           '"VERSION" "1.0"';
        starttls on;
        ssl_certificate localhost.crt;
        ssl_certificate_key localhost.key;
        proxy_pass_error_message on;
    }
}

http {
    access_log off;

    server {
        listen 127.0.0.1:8182;

        # user "demo" with password "demo" may log in, and is sent to
        # Dovecot with the backend's own password; "refused" is sent with
        # a wrong one, which Dovecot refuses
        location = /auth {
            set \$auth_status "Invalid login or password";
            set \$backend_pass backend-secret;
            if (\$http_auth_pass = demo) {
                set \$auth_status OK;
            }
            if (\$http_auth_user = refused) {
                set \$auth_status OK;
                set \$backend_pass wrong;
            }
            add_header Auth-Status \$auth_status;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port 8191;
            add_header Auth-User demo;
            add_header Auth-Pass \$backend_pass;
            # a refused client may try again after a second
            add_header Auth-Wait 1;
            return 204;
        }
    }
}
CONF

cleanup() {
    [ -n "${nginx_pid:-}" ] && kill "$nginx_pid" 2>/dev/null || true
    dovecot_stop "$dir"
    wait 2>/dev/null || true
    if [ $keep = 0 ]; then rm -rf "$dir"; else echo "left in $dir"; fi
}
trap cleanup EXIT

dovecot_start "$dir"
"$top/nginx-src/objs/nginx" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" &
nginx_pid=$!

for port in 8190 8191 8182; do
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
done

failed=0
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
    else
        echo "FAILED: $what" >&2
        failed=1
    fi
}

# sieve-connect with a password on descriptor 3; HOME keeps it from any
# configuration of the machine's user
connect() {
    local user=$1 pass=$2
    shift 2
    (cd "$dir/client" && HOME="$dir/client" timeout 60 sieve-connect --server 127.0.0.1 \
        --port 8190 --user "$user" --passwordfd 3 --notlsverify "$@" \
        3< <(printf '%s\n' "$pass"))
}

cat > "$dir/client/vacation.sieve" <<'SIEVE'
require ["fileinto", "vacation"];
# uploaded through nginx and ngx-mail-rs
if header :contains "subject" "[lists]" {
    fileinto "Lists";
    stop;
}
vacation :days 7 "Away until Monday.";
SIEVE

echo "=== sieve-connect through nginx (STARTTLS) to Dovecot"
cat > "$dir/client/commands" <<'CMDS'
put vacation.sieve holiday
list
activate holiday
list
get holiday downloaded.sieve
put vacation.sieve spare
delete spare
list
CMDS
out=$(connect demo demo --debug --exec "$dir/client/commands" 2>&1) || {
    echo "$out" >&2
    echo "FAILED: sieve-connect exited non-zero" >&2
    failed=1
}
echo "$out" | grep -E '^(>>>|<<<) ' | grep -v -E '^>>> [A-Za-z0-9+/=]{16,}\\r\\n$' | head -40
check "STARTTLS, then the capability block again and the resync NOOP answered" \
    grep -q 'OK (TAG "STARTTLS-RESYNC-CAPA") "completed"' <<<"$out"
check "the backend's OK reached the client" grep -q '<<< OK "Logged in."' <<<"$out"
check "listed active" grep -q '^"holiday" ACTIVE' <<<"$out"
check "downloaded what was uploaded" cmp -s "$dir/client/vacation.sieve" "$dir/client/downloaded.sieve"
check "Dovecot stored the script" cmp -s "$dir/client/vacation.sieve" "$dir/home/demo/sieve/holiday.sieve"
check "Dovecot activated it" test "$(readlink "$dir/home/demo/.dovecot.sieve")" = sieve/holiday.sieve
check "the deleted script is gone" test ! -e "$dir/home/demo/sieve/spare.sieve"
check "Dovecot logged nginx's PLAIN login for demo" \
    grep -q 'managesieve-login: Info: Login: user=<demo>, method=PLAIN, rip=127.0.0.1' "$dir/dovecot/dovecot.log"
check "nginx logged the login" grep -q 'client logged in' "$dir/nginx/error.log"

echo "=== a wrong password: refused by the auth server (Auth-Wait: the session stays)"
out=$(connect demo wrong --list 2>&1) && failed=1
echo "$out" | tail -2
check "sieve-connect told why" grep -q '^: "Invalid login or password"' <<<"$out"

echo "=== the auth server says OK, Dovecot refuses (proxy_pass_error_message on)"
out=$(connect refused demo --debug --list 2>&1) && failed=1
echo "$out" | grep -E '^(<<< NO|<<< BYE)|dropped' || true
check "Dovecot's NO reached the client" grep -q '^<<< NO "Authentication failed."' <<<"$out"
check "nginx logged it" grep -q 'upstream sent invalid response: "NO "Authentication failed.""' "$dir/nginx/error.log"

echo "=== the same lines to Dovecot and to nginx: first words of the replies agree"
dialogue() {
    python3 - "$1" <<'PY'
import re, socket, sys
# Dovecot ends a session at its third bad command: two per session at most
sessions = [
    [b'NOOP "sync-42"', b'noop', b'FOO', b'LISTSCRIPTS', b'LOGOUT'],
    [b'NOOP abc', b'NOOP "a\\qb"', b'CAPABILITY', b'LOGOUT'],
    [b'NOOP "caf\xe9"', b'NOOP {3+}\r\nx\ny', b'AUTHENTICATE "PLAIN"', b'"*"',
     b'LOGOUT'],
]

def logical_line(f):
    """One response line, the data of its literals included."""
    line = f.readline()
    while (m := re.search(rb"\{(\d+)\+?\}\r\n$", line)):
        line += f.read(int(m.group(1))) + f.readline()
    return line

for lines in sessions:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    f = s.makefile("rb")
    while not logical_line(f).startswith((b"OK", b"NO", b"BYE")):
        pass
    for line in lines:
        s.sendall(line + b"\r\n")
        reply = logical_line(f)
        # CAPABILITY: its block up to the OK, which is shown
        while line == b"CAPABILITY" and not reply.startswith(b"OK"):
            reply = logical_line(f)
        print(repr(line)[2:-1], "->", repr(reply)[2:-1])
    s.close()
PY
}
dovecot_says=$(dialogue 8191)
nginx_says=$(dialogue 8190)
paste -d '\n' <(sed 's/^/    dovecot: /' <<<"$dovecot_says") <(sed 's/^/    nginx:   /' <<<"$nginx_says")
first_words() { sed -E 's/^.* -> ([A-Z]+)( \(TAG [^)]*\))?.*/\1\2/' <<<"$1"; }
check "the same status (and TAG) for every line" test "$(first_words "$dovecot_says")" = "$(first_words "$nginx_says")"

echo "--- Dovecot's log"
grep -E 'managesieve' "$dir/dovecot/dovecot.log" | sed 's/^/    /' | tail -12
if grep -q -E '\[(alert|crit|emerg)\]' "$dir/nginx/error.log"; then
    echo "FAILED: nginx logged alerts" >&2
    grep -E '\[(alert|crit|emerg)\]' "$dir/nginx/error.log" >&2
    failed=1
fi
if [ $failed = 0 ]; then
    echo "sieve check: sieve-connect managed scripts on Dovecot's Pigeonhole through nginx and ngx-mail-rs"
    exit 0
fi
echo "sieve check failed; nginx said:" >&2
tail -20 "$dir/nginx/error.log" >&2
exit 1
