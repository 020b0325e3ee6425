#!/usr/bin/env bash
# The module with the nginx Debian ships (bookworm: 1.22.1), end to end:
#   1. install Debian's nginx, nginx-dev and libnginx-mod-mail (no services)
#   2. build the module for /usr/sbin/nginx and run t/ against it, with our
#      module loaded and with Debian's stock mail modules only
#   3. build libnginx-mod-mail-rs, install it with apt, check `nginx -t`
#      accepts a stock mail configuration through modules-enabled, and run
#      POP3 and IMAP sessions through the installed package
#   4. remove and purge it, checking the modules-enabled link each time
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
nginx=/usr/sbin/nginx

if [ ! -x $nginx ] || [ ! -d /usr/share/nginx/src ] || [ ! -e /usr/lib/nginx/modules/ngx_mail_module.so ]; then
    scripts/apt-install-quiet.sh nginx nginx-dev libnginx-mod-mail
fi
version=$($nginx -v 2>&1 | sed 's|.*/||')
echo "=== Debian's nginx $version"

so=$(scripts/build-for-system-nginx.sh $nginx | sed -n 's/^built for nginx [^:]*: //p')
user=""
[ "$(id -u)" = 0 ] && user="user root;"
mail_so="load_module /usr/lib/nginx/modules/ngx_mail_module.so;"

echo "=== t/ against Debian's nginx $version, ngx-mail-rs"
TEST_NGINX_BINARY=$nginx TEST_NGINX_GLOBALS="$user $mail_so load_module $so;" prove -j2 t/
echo "=== t/ against Debian's nginx $version, stock modules"
TEST_NGINX_BINARY=$nginx TEST_NGINX_GLOBALS="$user $mail_so" prove -j2 t/

deb=$(scripts/build-deb.sh $nginx | tail -1)
echo "=== installing $(basename "$deb")"
APT_UPDATED=${APT_UPDATED:-} scripts/apt-install-quiet.sh "$deb"
test -L /etc/nginx/modules-enabled/60-mod-mail-rs.conf

conf=$(mktemp -d)
trap 'rm -rf "$conf"' EXIT
cat > "$conf/nginx.conf" <<CONF
include /etc/nginx/modules-enabled/*.conf;
pid $conf/nginx.pid;
error_log $conf/error.log notice;
events {}
mail {
    auth_http 127.0.0.1:8080/auth;
    pop3_auth plain apop cram-md5;
    server { listen 127.0.0.1:1110; protocol pop3; }
    server { listen 127.0.0.1:1143; protocol imap; }
}
CONF
# Debian's snippets load modules/... from the default prefix: no -p here
$nginx -t -e "$conf/startup.log" -c "$conf/nginx.conf" 2>&1 | tee "$conf/t.out"
grep -q "ngx-mail-rs .*: serving pop3, imap" "$conf/error.log" "$conf/t.out" "$conf/startup.log"
echo "nginx -t: a stock mail configuration loads the packaged module"

echo "=== POP3 and IMAP sessions through the installed package"
# the tests run nginx with their own prefix, so load the installed files by path
TEST_NGINX_BINARY=$nginx \
TEST_NGINX_GLOBALS="$user $mail_so load_module /usr/lib/nginx/modules/ngx_mail_rs_module.so;" \
    prove t/pop3.t t/imap.t

apt-get remove -y -qq libnginx-mod-mail-rs >/dev/null
test -L /etc/nginx/modules-enabled/60-mod-mail-rs.conf.removed
test ! -e /etc/nginx/modules-enabled/60-mod-mail-rs.conf
apt-get purge -y -qq libnginx-mod-mail-rs >/dev/null
test ! -e /etc/nginx/modules-enabled/60-mod-mail-rs.conf.removed
echo "remove parks the modules-enabled link, purge deletes it"
