# ocserv-uring %postun ($1: 0 = erase, 1 or more = upgrade). rpm has no
# purge: files the server or an administrator made in /etc/ocserv-uring
# (self-signed certificate and key, password file) stay, as does a changed
# configuration (as .rpmsave).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
