#!/bin/sh
# Install DinoMail on a mail server (Debian 12, run as root): its own virtual environment, the
# `dinomail` command, the system users, /etc/dinomail/dinomail.toml (written once, never
# overwritten), the systemd units and the state folders. Run it again to upgrade: settings and
# data are kept. `scripts/uninstall.sh` removes the program and keeps the data.
#
# Variables (environment):
#   PREFIX=/usr/local        the `dinomail` command goes to $PREFIX/bin
#   VENV=/opt/dinomail/venv  DinoMail's own Python virtual environment
#   DESTDIR=                 install everything under this folder instead of /, with every path
#                            written into the files pointing inside it (a throwaway root for
#                            tests and trials: it runs from there)
#   CREATE_USERS=yes         create the `dinomail` and `vmail` users and groups when missing
#                            (no: they must exist already, e.g. made by your own tooling)
#   MAIL_UID=5000 MAIL_GID=5000  ids of a new `vmail` user (an existing one keeps its own)
#   PYTHON=/usr/bin/python3  the Python the virtual environment is made from (Debian's: one
#                            under /root, as pyenv's, would be unreadable to the daemons)
#   PIP_OPTIONS=             extra options for pip (e.g. --no-index --find-links DIR offline)
set -eu
# The daemons' user must read the program whatever root's own umask is.
umask 022

PREFIX=${PREFIX:-/usr/local}
VENV=${VENV:-/opt/dinomail/venv}
DESTDIR=${DESTDIR:-}
CREATE_USERS=${CREATE_USERS:-yes}
MAIL_UID=${MAIL_UID:-5000}
MAIL_GID=${MAIL_GID:-5000}
PIP_OPTIONS=${PIP_OPTIONS:-}
PYTHON=${PYTHON:-/usr/bin/python3}
SOURCE=$(cd "$(dirname "$0")/.." && pwd)

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run it as root (it creates users and system folders)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "DinoMail needs Python 3.11 or newer (Debian 12: apt install python3)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
    || die "Python's venv module is missing: apt install python3-venv"

# --- users and groups ---------------------------------------------------------------------------
# dinomail runs the daemons; vmail owns the mail store (Dovecot's mail processes run as it).
if [ "$CREATE_USERS" = yes ]; then
    getent group dinomail >/dev/null || groupadd --system dinomail
    getent passwd dinomail >/dev/null || useradd --system --gid dinomail \
        --home-dir /var/lib/dinomail --no-create-home --shell /usr/sbin/nologin dinomail
    getent group vmail >/dev/null || groupadd --gid "$MAIL_GID" vmail
    getent passwd vmail >/dev/null || useradd --uid "$MAIL_UID" --gid vmail \
        --home-dir /var/vmail --no-create-home --shell /usr/sbin/nologin vmail
fi
for account in dinomail vmail; do
    getent passwd "$account" >/dev/null \
        || die "user $account is missing (CREATE_USERS=$CREATE_USERS): create it first"
done
MAIL_UID=$(id -u vmail)
MAIL_GID=$(id -g vmail)

# --- the program --------------------------------------------------------------------------------
say "Installing DinoMail into $DESTDIR$VENV ..."
[ -x "$DESTDIR$VENV/bin/python" ] || "$PYTHON" -m venv "$DESTDIR$VENV"
# shellcheck disable=SC2086  # PIP_OPTIONS is a list of options
"$DESTDIR$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_OPTIONS \
    "$SOURCE"

# The command on the PATH: this server's settings unless told otherwise.
install -d -m 0755 "$DESTDIR$PREFIX/bin"
cat > "$DESTDIR$PREFIX/bin/dinomail.new" <<EOF
#!/bin/sh
# DinoMail's command, installed by scripts/install.sh: this server's settings by default.
: "\${DINOMAIL_CONFIG:=$DESTDIR/etc/dinomail/dinomail.toml}"
export DINOMAIL_CONFIG
exec "$DESTDIR$VENV/bin/dinomail" "\$@"
EOF
chmod 0755 "$DESTDIR$PREFIX/bin/dinomail.new"
mv -f "$DESTDIR$PREFIX/bin/dinomail.new" "$DESTDIR$PREFIX/bin/dinomail"

# --- settings, written once -----------------------------------------------------------------------
install -d -m 0750 -o root -g dinomail "$DESTDIR/etc/dinomail"
CONFIG="$DESTDIR/etc/dinomail/dinomail.toml"
if [ -e "$CONFIG" ]; then
    say "Keeping $CONFIG as it is."
else
    SECRET_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')
    umask 027
    cat > "$CONFIG.new" <<EOF
# DinoMail's settings: README.md, "Configuration", lists them all. Written once by
# scripts/install.sh (never overwritten). After a change: systemctl restart dinomail, and
# run \`dinomail postfix-config --apply\` and \`dinomail dovecot-config\` again if it concerns
# listeners, sockets, mail ids or TLS.
SECRET_KEY = "$SECRET_KEY"
DATABASE_URL = "sqlite:///$DESTDIR/var/lib/dinomail/dinomail.sqlite3"
STATE_DIR = "$DESTDIR/var/lib/dinomail"
DKIM_KEY_DIR = "$DESTDIR/var/lib/dinomail/dkim"
MAIL_HOME = "$DESTDIR/var/vmail/%d/%n"
MAIL_UID = $MAIL_UID
MAIL_GID = $MAIL_GID
# Dovecot's mail processes reach the dict socket through this group (its mail_access_groups).
UNIX_SOCKET_GROUP = "dinomail"
UNIX_SOCKET_MODE = "0660"
EOF
    chown root:dinomail "$CONFIG.new"
    chmod 0640 "$CONFIG.new"
    mv "$CONFIG.new" "$CONFIG"
    umask 022
    say "Wrote $CONFIG (with a new SECRET_KEY)."
fi

# --- state and mail folders ---------------------------------------------------------------------
install -d -m 0750 -o dinomail -g dinomail "$DESTDIR/var/lib/dinomail"
install -d -m 0750 -o vmail -g vmail "$DESTDIR/var/vmail"

# --- systemd units ------------------------------------------------------------------------------
install -d -m 0755 "$DESTDIR/etc/systemd/system"
for unit in "$SOURCE"/systemd/*.service; do
    sed -e "s|/usr/local/bin/dinomail|$DESTDIR$PREFIX/bin/dinomail|g" \
        -e "s|/etc/dinomail/|$DESTDIR/etc/dinomail/|g" \
        -e "s|/var/lib/dinomail|$DESTDIR/var/lib/dinomail|g" \
        "$unit" > "$DESTDIR/etc/systemd/system/$(basename "$unit")"
    chmod 0644 "$DESTDIR/etc/systemd/system/$(basename "$unit")"
done
install -d -m 0755 "$DESTDIR/usr/share/doc/dinomail"
install -m 0644 "$SOURCE/README.md" "$DESTDIR/usr/share/doc/dinomail/README.md"
# The documented Postfix and Dovecot reference (what postfix-config and dovecot-config write).
rm -rf "$DESTDIR/usr/share/doc/dinomail/conf"
cp -R "$SOURCE/conf" "$DESTDIR/usr/share/doc/dinomail/conf"
chmod -R u=rwX,go=rX "$DESTDIR/usr/share/doc/dinomail/conf"

say "DinoMail $("$DESTDIR$VENV/bin/dinomail" --version | cut -d' ' -f2) installed."
say "Next: systemctl daemon-reload && systemctl enable --now dinomail (README: Install on a mail server)."
