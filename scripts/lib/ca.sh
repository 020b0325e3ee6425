# Sourced by demo.sh and check-backend-tls.sh: a private CA and server
# certificates it signs, so the proxy can verify its backends
# (proxy_ssl_verify, proxy_ssl_trusted_certificate) without touching the
# system's trust store.

# ca_init DIR: DIR/ca.crt and DIR/ca.key, valid for three days
ca_init() {
    mkdir -p "$1"
    openssl req -x509 -new -nodes -newkey rsa:2048 -subj /CN=ngx-mail-rs-test-ca/ \
        -keyout "$1/ca.key" -out "$1/ca.crt" -days 3 2>/dev/null
    chmod 644 "$1/ca.crt"
}

# ca_cert DIR NAME: DIR/NAME.crt and DIR/NAME.key for the host name NAME
# (in the subject and as subjectAltName), signed by DIR's CA. The key is
# world-readable: the servers using it run as other users than root, and
# it protects nothing but a test.
ca_cert() {
    local dir=$1 name=$2
    openssl req -new -nodes -newkey rsa:2048 -subj "/CN=$name/" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    printf 'subjectAltName = DNS:%s\n' "$name" > "$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 3 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    chmod 644 "$dir/$name.crt" "$dir/$name.key"
}
