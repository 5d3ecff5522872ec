# ocserv-uring %preun ($1: 0 = erase, 1 or more = upgrade): on erase, stop
# and disable the service.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable --now ocserv-uring.service >/dev/null 2>&1 || :
fi
exit 0
