#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, if missing:
# clang for bindgen, nginx's build libraries, Perl TLS modules for the
# tests, valgrind for scripts/memcheck.sh, gdb (gcore) for t/secrets.t, sieve-connect
# for t/sieve_ssl.t. Needs root (or sudo) only when
# something is missing.
set -euo pipefail
need=(clang libclang-dev libpcre2-dev libssl-dev zlib1g-dev make gcc perl
      libio-socket-ssl-perl libnet-ssleay-perl openssl python3 curl valgrind gdb
      sieve-connect)
# and two whose services must never start here (apt-install-quiet.sh):
# promtool from Debian's prometheus (t/metrics.t), haproxy
# (scripts/check-scale-out.sh)
quiet_need=(prometheus haproxy)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
quiet=()
for p in "${quiet_need[@]}"; do
    installed "$p" || quiet+=("$p")
done
if [ ${#quiet[@]} -gt 0 ]; then
    echo "installing (services not started): ${quiet[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo "$(dirname "$0")/apt-install-quiet.sh" "${quiet[@]}"
fi
missing=()
for p in "${need[@]}"; do
    installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
