#!/bin/sh
# Remove what scripts/install.sh installed: the virtual environment, the `dinomail` command, the
# systemd units and the documentation. The data stays: /etc/dinomail (settings, SECRET_KEY),
# /var/lib/dinomail (the SQLite database, DKIM keys), /var/vmail (the mail) and the users.
# Same variables as install.sh (PREFIX, VENV, DESTDIR). Stop the services first.
set -eu

PREFIX=${PREFIX:-/usr/local}
VENV=${VENV:-/opt/dinomail/venv}
DESTDIR=${DESTDIR:-}

[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run it as root" >&2; exit 1; }

for unit in dinomail.service dinomail-lookupd.service dinomail-adminapi.service; do
    rm -f "$DESTDIR/etc/systemd/system/$unit"
done
rm -f "$DESTDIR$PREFIX/bin/dinomail"
rm -rf "$DESTDIR$VENV" "$DESTDIR/usr/share/doc/dinomail"
rmdir "$DESTDIR$(dirname "$VENV")" 2>/dev/null || true

echo "DinoMail removed. Kept: $DESTDIR/etc/dinomail, $DESTDIR/var/lib/dinomail, $DESTDIR/var/vmail and the dinomail and vmail users."
