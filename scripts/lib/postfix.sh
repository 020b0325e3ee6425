# Sourced by demo.sh and check-backend-tls.sh: a private Postfix instance
# (its own config, queue and log directory; no system service) that takes
# mail for example.com only over TLS and delivers it into Maildirs that
# Dovecot serves.
#
# postfix_setup DIR CERT KEY STARTTLS_PORT SMTPS_PORT MAILROOT
#   127.0.0.1:STARTTLS_PORT  smtpd, STARTTLS required (smtpd_tls_security_level = encrypt)
#   127.0.0.1:SMTPS_PORT     smtpd, implicit TLS (smtpd_tls_wrappermode = yes)
#   demo@example.com         delivered to MAILROOT/demo/ (Maildir, uid/gid 65534)
#   log                      DIR/postfix.log (TLS sessions logged: smtpd_tls_loglevel = 1)
# postfix_start DIR / postfix_stop DIR
#
# Runs as root: Postfix drops to mail_owner (postfix) and needs its queue
# owned right, which post-install create-missing sees to.

postfix_setup() {
    local dir=$1 cert=$2 key=$3 starttls=$4 smtps=$5 mailroot=$6
    mkdir -p "$dir/queue" "$dir/data"
    chown postfix "$dir/data"
    echo "demo@example.com demo/" > "$dir/vmailbox"
    cat > "$dir/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
# postfix(1) says nothing on a non-tty stderr; everything goes here, and
# only to a file under a prefix listed here
maillog_file = $dir/postfix.log
maillog_file_prefixes = $dir
myhostname = postfix.test
mydomain = test
myorigin = \$myhostname
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
relay_domains =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# our proxy tells who the client was
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_cert_file = $cert
smtpd_tls_key_file = $key
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
virtual_mailbox_domains = example.com
virtual_mailbox_base = $mailroot
virtual_mailbox_maps = texthash:$dir/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
biff = no
CONF
    # no chroot: the queue is not under /var/spool/postfix
    cat > "$dir/master.cf" <<CONF
127.0.0.1:$starttls inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
127.0.0.1:$smtps inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF
    postfix -c "$dir" post-install create-missing >/dev/null 2>&1 \
        || postfix -c "$dir" set-permissions >/dev/null 2>&1 || true
    postfix -c "$dir" check
}

postfix_start() {
    postfix -c "$1" start 2>>"$1/start.log"
}

postfix_stop() {
    postfix -c "$1" stop >/dev/null 2>&1 || true
}

# postfix_wait_port DIR PORT: until master listens on PORT (5 s); master
# opens all its listeners at once, so one port is enough
postfix_wait_port() {
    local _
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "Postfix ($1) does not listen on $2; its log:" >&2
    tail -20 "$1/postfix.log" "$1/start.log" >&2 2>/dev/null || true
    return 1
}
