#!/usr/bin/env bash
# Debian packages the test suite drives for real: PostgreSQL, Postfix (with its pgsql maps, and
# lmdb maps for benchmarks/postfix_cost.py), Dovecot (IMAP, POP3, LMTP, Lua auth, Sieve and
# ManageSieve), Chromium for the pages, dnsmasq for the DNS checks, the sqlite3 shell for the
# documented online backup, MariaDB for the PostfixAdmin import.
# Installs only what is missing; needs root (apt). Safe to run again.
set -euo pipefail

PACKAGES=(
  postgresql
  postfix postfix-pgsql postfix-lmdb
  dovecot-core dovecot-imapd dovecot-lmtpd dovecot-auth-lua lua-socket lua-json lua-dkjson
  dovecot-sieve dovecot-managesieved dovecot-pop3d
  chromium chromium-driver
  dnsmasq-base
  sqlite3
  mariadb-server
  systemd
  python3-venv
)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run this script as root to install them)" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Postfix asks how to configure itself; the tests bring their own configuration.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
