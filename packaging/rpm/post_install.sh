# ocserv-uring %post ($1: 1 = install, 2 or more = upgrade). The service is
# neither enabled nor started: it needs a password file first.
chmod 0750 /etc/ocserv-uring
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    # On upgrade, restart a running server on the new binary.
    if [ "$1" -ge 2 ]; then
        systemctl try-restart ocserv-uring.service >/dev/null 2>&1 || :
    fi
fi
if [ ! -e /etc/ocserv-uring/ocpasswd ]; then
    echo "ocserv-uring: the service is not enabled or started. First add a user:"
    echo "    ocserv-uring passwd -c /etc/ocserv-uring/ocpasswd USER"
    echo "then review /etc/ocserv-uring/ocserv-uring.toml and run:"
    echo "    systemctl enable --now ocserv-uring"
fi
exit 0
