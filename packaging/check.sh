#!/usr/bin/env bash
# CI check of the packages (run as root; .ci/run runs it after the tests):
#
#   bash packaging/check.sh
#
# Builds both packages (packaging/build.sh), installs the .deb, checks what
# it installed (binary, conffile, unit, man page, doc), that the packaged
# configuration passes check-config, that the man page names every option,
# command, config section and key the binary and the reference know, and the
# unit with systemd-analyze verify (skipped only when systemd-analyze is not
# installed); then purges it and checks nothing is left. Last, it lists the
# .rpm and checks its paths, config flag and dependencies. The package is
# purged on any exit, so the machine is left as it was (but for the `rpm`
# tool, installed from Debian when missing, and the two cargo tools).
# Refuses to run where ocserv-uring is already installed or
# /etc/ocserv-uring exists, rather than touch them, unless a marker file
# shows they are what an interrupted run of this check left: then it purges
# them first.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
pkg=ocserv-uring
etc=/etc/ocserv-uring
bin=/usr/bin/ocserv-uring
occtl=/usr/sbin/occtl
conf=$etc/ocserv-uring.toml
unit_deb=/lib/systemd/system/ocserv-uring.service
man_deb=/usr/share/man/man8/ocserv-uring.8.gz
doc=/usr/share/doc/ocserv-uring/ocserv-uring.toml
checks=0

say() { echo "check.sh: $*"; }
ok() { checks=$((checks + 1)); echo "check.sh: ok: $*"; }
fail() { echo "check.sh: FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    fail "run as root (it installs and purges the .deb)"
fi
# dpkg knows the package (installed, or its conffiles left).
is_known() {
    local st
    st=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || return 1
    [ -n "$st" ] && [[ "$st" != *not-installed* ]]
}
# Present from just before `dpkg -i` until the purge is checked.
marker=/var/tmp/ocserv-uring-packaging-check.installed
if [ -e "$marker" ]; then
    say "an earlier run was interrupted: purging what it installed"
    if is_known; then timeout 300 dpkg --purge "$pkg" >/dev/null 2>&1 || fail "dpkg --purge $pkg"; fi
    rm -rf "$etc"
    rm -f "$marker"
fi
if is_known; then
    fail "$pkg is already installed here (dpkg); purge it first (dpkg --purge $pkg): this check installs and purges it"
fi
if [ -e "$etc" ]; then
    fail "$etc exists; this check would install into it and remove it"
fi

tmp=$(mktemp -d)
installed=no
cleanup() {
    local rc=$?
    if [ "$installed" = yes ]; then
        if is_known; then
            echo "check.sh: cleaning up: dpkg --purge $pkg" >&2
            timeout 300 dpkg --purge "$pkg" >/dev/null 2>&1 || echo "check.sh: dpkg --purge $pkg failed" >&2
        fi
        # It did not exist before this run: all in it is the check's.
        rm -rf "$etc"
        is_known || [ -e "$etc" ] || rm -f "$marker"
    fi
    rm -rf "$tmp"
    if [ "$rc" -ne 0 ]; then
        echo "check.sh: FAILED after $((SECONDS - start)) s" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------
say "building the packages (packaging/build.sh)"
timeout 3600 bash packaging/build.sh >"$tmp/build.out" || fail "packaging/build.sh failed"
deb=$(grep '\.deb$' "$tmp/build.out" | tail -1)
rpm_file=$(grep '\.rpm$' "$tmp/build.out" | tail -1)
[ -f "$deb" ] || fail "build.sh printed no .deb path"
[ -f "$rpm_file" ] || fail "build.sh printed no .rpm path"
ok "built $deb and $rpm_file"

# --- the binary's libraries against the declared dependencies --------------
# Only libc, libm, libgcc_s (and the loader): what Depends lists.
libs=$(ldd target/release/ocserv-uring | awk '{print $1}' | sed 's/\.so.*//' | sort -u | tr '\n' ' ')
for l in $libs; do
    case "$l" in
    linux-vdso | /lib64/ld-linux-x86-64 | ld-linux-* | /lib/ld-linux-* | libc | libm | libgcc_s) ;;
    *) fail "the binary links $l, which the packages do not depend on (Cargo.toml depends)" ;;
    esac
done
depends=$(dpkg-deb -f "$deb" Depends)
if command -v objdump >/dev/null; then
    need=$(objdump -T target/release/ocserv-uring | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)
    declared=$(echo "$depends" | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
    [ -n "$declared" ] || fail "Depends has no libc6 (>= VERSION): $depends"
    if [ "$(printf '%s\n%s\n' "$need" "$declared" | sort -V | tail -1)" != "$declared" ]; then
        fail "the binary needs glibc $need but the .deb depends on libc6 (>= $declared): raise it in Cargo.toml"
    fi
    ok "links only libc, libm and libgcc_s; needs glibc $need, Depends: $depends"
else
    ok "links only libc, libm and libgcc_s (objdump missing: glibc version not compared)"
fi

# --- install the .deb ---------------------------------------------------------
say "installing $deb"
installed=yes
touch "$marker"
timeout 300 dpkg -i "$deb" >"$tmp/install.out" 2>&1 || { cat "$tmp/install.out" >&2; fail "dpkg -i"; }
grep -q "ocserv-uring passwd -c /etc/ocserv-uring/ocpasswd" "$tmp/install.out" ||
    fail "postinst did not print how to add a user"
ok "dpkg -i (postinst prints how to add a user)"

for f in "$bin" "$conf" "$unit_deb" "$man_deb" "$doc"; do
    [ -f "$f" ] || fail "$f is not installed"
done
[ -x "$bin" ] || fail "$bin is not executable"
ok "installed $bin $conf $unit_deb $man_deb $doc"
# Captured first (with pipefail, `grep -q` leaving early fails the pipeline
# if the writer is still writing), and shown if it is not the usage.
help=$("$occtl" --help 2>&1) || help+=" (exit status $?)"
grep -q "Usage: occtl" <<<"$help" || fail "$occtl does not run ocserv-uring's occtl: $help"
ok "$occtl runs ocserv-uring's occtl"

conffiles=$(dpkg-query -W -f='${Conffiles}\n' "$pkg")
grep -q "^ $conf " <<<"$conffiles" || fail "$conf is not a conffile"
[ "$(stat -c %a "$etc")" = 750 ] || fail "$etc has mode $(stat -c %a "$etc"), expected 750"
ok "$conf is a conffile; $etc has mode 750"
if [ -d /run/systemd/system ]; then
    systemctl is-enabled --quiet ocserv-uring.service 2>/dev/null && fail "the service was enabled on install"
    systemctl is-active --quiet ocserv-uring.service && fail "the service was started on install"
    ok "the service is neither enabled nor started"
fi

# --- the installed binary -------------------------------------------------------
"$bin" check-config --config "$conf" >"$tmp/effective.toml" 2>"$tmp/check-config.err" ||
    { cat "$tmp/check-config.err" >&2; fail "check-config --config $conf"; }
grep -q '^generate_self_signed = true' "$tmp/effective.toml" ||
    fail "the packaged configuration does not generate a self-signed certificate, so a fresh install cannot start"
ok "ocserv-uring check-config --config $conf"
"$bin" --help >"$tmp/help" || fail "ocserv-uring --help"
version=$(dpkg-deb -f "$deb" Version)
"$bin" --version | grep -qx "ocserv-uring ${version%-*}" || fail "--version is not ${version%-*}: $("$bin" --version)"
ok "ocserv-uring --help, --version = ${version%-*}"
printf 'secret\n' | "$bin" passwd -c "$tmp/ocpasswd" -g vpn alice 2>/dev/null || fail "ocserv-uring passwd"
grep -q '^alice:vpn:\$' "$tmp/ocpasswd" || fail "passwd wrote no alice:vpn entry"
ok "ocserv-uring passwd writes an ocpasswd entry"

# --- the man page -----------------------------------------------------------------
if command -v man >/dev/null; then
    LC_ALL=C MANWIDTH=80 timeout 60 man --warnings -l "$man_deb" >"$tmp/man.txt" 2>"$tmp/man.err" ||
        { cat "$tmp/man.err" >&2; fail "man -l $man_deb"; }
    [ ! -s "$tmp/man.err" ] || { cat "$tmp/man.err" >&2; fail "man -l $man_deb: roff warnings"; }
    grep -q '^NAME' "$tmp/man.txt" || fail "man -l $man_deb rendered no NAME section"
    ok "man -l $man_deb renders without warnings"
else
    ok "$man_deb installed (man is missing: not rendered)"
fi

# Every option, command and config key must be in the man page. Compared with
# its source (escapes \- and \fX removed), since rendering hyphenates words.
zcat "$man_deb" | sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' >"$tmp/man.src"
missing=()
need_in_man() { grep -qwF -- "$1" "$tmp/man.src" || missing+=("$2 $1"); }
helps=("" passwd check-config ctl "ctl user-config" "ctl group-config")
for sub in "ctl user-config" "ctl group-config"; do
    for action in set show list delete; do helps+=("$sub $action"); done
done
for h in "${helps[@]}"; do
    # shellcheck disable=SC2086 # word splitting of the subcommand path is meant
    "$bin" $h --help >"$tmp/h" || fail "ocserv-uring $h --help"
    while read -r o; do
        need_in_man "$o" "option (of '$h --help')"
    done < <(grep -oE '(^|[ ,\[])--[a-z0-9][a-z0-9-]*' "$tmp/h" | grep -oE -- '--[a-z0-9-]+' | sort -u)
    while read -r o; do
        need_in_man "$o" "option (of '$h --help')"
    done < <(grep -oE '^ +-[a-zA-Z],' "$tmp/h" | tr -d ' ,' | sort -u)
    # Subcommands: the lines under "Commands:" up to the next blank line.
    while read -r c; do
        need_in_man "$c" "command (of '$h --help')"
    done < <(sed -n '/^Commands:$/,/^$/p' "$tmp/h" | awk 'NF && $1 != "Commands:" {print $1}')
done
# ctl's server commands: their leading lowercase words, e.g. "show ip ban points".
"$bin" ctl --help >"$tmp/h"
while IFS= read -r line; do
    words=$(echo "$line" | sed -E 's/  +.*//; s/ [A-Z]+$//')
    [ -n "$words" ] && need_in_man "$words" "ctl command"
done < <(sed -n '/^Commands sent to the server:$/,/^$/p' "$tmp/h" | sed '1d; /^$/d; s/^ *//')
while read -r sec; do
    need_in_man "$sec" "config section"
done < <(grep -oE '^\[[a-z_]+\]' "$doc")
while read -r k; do
    need_in_man "$k" "config key"
done < <(grep -oE '^#? ?[a-z][a-z0-9_]* = ' "$doc" | sed -E 's/^#? ?//; s/ = $//')
if [ "${#missing[@]}" -gt 0 ]; then
    printf 'check.sh:   missing from packaging/ocserv-uring.8: %s\n' "${missing[@]}" >&2
    fail "the man page is behind --help or config/ocserv-uring.toml (${#missing[@]} missing)"
fi
ok "the man page names every option, command, config section and key"

# --- the unit ----------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
    timeout 120 systemd-analyze verify "$unit_deb" >"$tmp/verify.out" 2>&1 ||
        { cat "$tmp/verify.out" >&2; fail "systemd-analyze verify $unit_deb"; }
    if grep -q "ocserv-uring" "$tmp/verify.out"; then
        cat "$tmp/verify.out" >&2
        fail "systemd-analyze verify $unit_deb warns about the unit"
    fi
    ok "systemd-analyze verify $unit_deb"
else
    say "skipped: systemd-analyze verify (systemd-analyze is not installed here)"
fi

# --- purge -------------------------------------------------------------------------
# Stand-ins for the certificate and key the server writes on first start:
# purge must remove them, and with them /etc/ocserv-uring.
touch "$etc/server-cert.pem" "$etc/server-key.pem"
timeout 300 dpkg --purge "$pkg" >"$tmp/purge.out" 2>&1 || { cat "$tmp/purge.out" >&2; fail "dpkg --purge $pkg"; }
for f in "$bin" "$occtl" "$unit_deb" "$man_deb" "$doc" "$etc"; do
    [ ! -e "$f" ] || fail "$f is left after dpkg --purge"
done
if is_known; then
    fail "dpkg still knows $pkg after the purge"
fi
if [ -n "$(find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
    -name '*ocserv-uring*' 2>/dev/null)" ]; then
    fail "deb-systemd-helper state of ocserv-uring.service is left after the purge"
fi
installed=no
rm -f "$marker"
ok "dpkg --purge leaves nothing ($bin, $etc, unit, man page, doc gone)"

# --- the .rpm --------------------------------------------------------------------------
if ! command -v rpm >/dev/null; then
    say "installing the rpm tool (Debian package rpm)"
    export DEBIAN_FRONTEND=noninteractive
    # apt-get update only when the install fails (an old or missing package list).
    if ! timeout 600 apt-get install -y -qq --no-install-recommends rpm >"$tmp/apt.out" 2>&1; then
        if ! { timeout 600 apt-get update -qq &&
            timeout 600 apt-get install -y -qq --no-install-recommends rpm; } >>"$tmp/apt.out" 2>&1; then
            cat "$tmp/apt.out" >&2
            fail "apt-get install rpm"
        fi
    fi
fi
rpm -qlp "$rpm_file" >"$tmp/rpm.list" 2>/dev/null || fail "rpm -qlp $rpm_file"
for f in /usr/bin/ocserv-uring /usr/sbin/occtl /etc/ocserv-uring/ocserv-uring.toml \
    /usr/lib/systemd/system/ocserv-uring.service /usr/share/man/man8/ocserv-uring.8 \
    /usr/share/doc/ocserv-uring/ocserv-uring.toml; do
    grep -qx "$f" "$tmp/rpm.list" || fail "$f is not in $rpm_file"
done
ok "rpm -qlp: binary, config, unit, man page, doc"
# The configuration is %config(noreplace): FILEFLAGS c (config) and n (noreplace).
flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_file" 2>/dev/null | awk -v f="$conf" '$2 == f {print $1}')
case "$flags" in *c*n* | *n*c*) ;; *) fail "$conf is not %config(noreplace) in the rpm (flags '$flags')" ;; esac
[ "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpm_file" 2>/dev/null)" = "$version" ] || fail "rpm version is not $version"
while read -r req; do
    case "$req" in
    /bin/sh | "config(ocserv-uring) = "* | rpmlib\(* | rtld\(* | ld-linux-*.so.* | libc.so.6* | libm.so.6* | libgcc_s.so.1*) ;;
    *) fail "unexpected rpm requirement: $req" ;;
    esac
done < <(rpm -qp --requires "$rpm_file" 2>/dev/null)
ok "rpm: config noreplace, version $version, requires only /bin/sh, libc, libm, libgcc_s"

say "all $checks checks passed in $((SECONDS - start)) s"
