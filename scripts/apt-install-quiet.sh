#!/usr/bin/env bash
# Installs Debian packages without starting their services (an
# /usr/sbin/policy-rc.d that exits 101, removed again if we made it).
# Usage: scripts/apt-install-quiet.sh PACKAGE... | ./local.deb
set -euo pipefail
created=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created=1
fi
trap '[ $created = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
fi
apt-get install -y -qq "$@" >/dev/null
