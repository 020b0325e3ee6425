# Sourced by demo.sh and the check-*.sh scripts that run a real Dovecot: a
# private instance (its own config, run, state and log directory under
# DIR/dovecot; no system service) with one user, demo, password
# backend-secret, logins run as nobody.
#
# dovecot_conf DIR [HOMES]
#   writes DIR/dovecot/dovecot.conf with what every script shares: the
#   paths, listen = 127.0.0.1, PLAIN and LOGIN, the passwd file, and each
#   user's home under HOMES/%u (default DIR/mail, uid/gid 65534). The
#   caller appends protocols, ssl and mail_location, and its listeners
#   with dovecot_service.
# dovecot_start DIR / dovecot_stop DIR
#
# Dovecot refuses to serve mail as root and needs every parent of DIR
# searchable (chmod 755).

dovecot_conf() {
    local dir=$1 homes=${2:-$1/mail}
    mkdir -p "$dir/dovecot"
    echo 'demo:{PLAIN}backend-secret' > "$dir/dovecot/passwd"
    cat > "$dir/dovecot/dovecot.conf" <<CONF
base_dir = $dir/dovecot/run
state_dir = $dir/dovecot/state
log_path = $dir/dovecot/dovecot.log
listen = 127.0.0.1
auth_mechanisms = plain login
default_internal_user = nobody
default_login_user = nobody
passdb {
  driver = passwd-file
  args = $dir/dovecot/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$homes/%u
}
CONF
}

dovecot_start() {
    dovecot -c "$1/dovecot/dovecot.conf"
}

dovecot_stop() {
    doveadm -c "$1/dovecot/dovecot.conf" stop >/dev/null 2>&1 || true
}

# dovecot_service DIR SERVICE NAME=PORT...: appends SERVICE-login (imap,
# pop3, managesieve) with its listeners NAME on 127.0.0.1:PORT; port 0
# turns one of Dovecot's default listeners off
dovecot_service() {
    local dir=$1 service=$2 listener
    shift 2
    {
        echo "service $service-login {"
        for listener in "$@"; do
            printf '  inet_listener %s {\n    address = 127.0.0.1\n    port = %s\n  }\n' \
                "${listener%%=*}" "${listener#*=}"
        done
        echo "}"
    } >> "$dir/dovecot/dovecot.conf"
}
