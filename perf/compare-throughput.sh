#!/usr/bin/env bash
# Single-flow iperf3 TCP throughput through the real `openconnect` client:
# ocserv-uring against ocserv, each over CSTP (TLS) only and over DTLS,
# with server CPU cost per GB. Everything runs inside two network namespaces
# this script creates (server 10.77.0.1 -- client 10.77.0.2 over a veth pair)
# and removes again on exit; no traffic leaves them.
#
#   sudo perf/compare-throughput.sh
#
# Environment knobs (all optional):
#   RUNS=3          rounds; each round measures every configuration once,
#                   interleaved, so background load hits all of them alike
#   DURATION=10     seconds per iperf3 run (one upload and one download per round)
#   CONFIGS="ocserv-cstp ocserv-uring ocserv-dtls ocserv-uring-dtls"
#                   which ones, in round order
#   OUT=perf/RESULTS.md   where the report goes: the script owns only the
#                   part between its two marker comments and replaces just
#                   that; without markers, the section is inserted before the
#                   file's first "## " heading (or appended); other text stays
#   KEEP_WORK=1     keep the scratch directory (logs, iperf3 JSON) afterwards
#   TSV_OUT=path    also copy the raw per-run table there (perf/compare-ocserv.sh
#                   reads it: cfg round dir bits/s bytes server_cpu_s ...)
#   OCSERV_URING=path     binary to test (default: target/release/ocserv-uring,
#                   built with `cargo build --release` if missing)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$REPO/perf/lib.sh"
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
CONFIGS=${CONFIGS:-"ocserv-cstp ocserv-uring ocserv-dtls ocserv-uring-dtls"}
OUT=${OUT:-$REPO/perf/RESULTS.md}
KEEP_WORK=${KEEP_WORK:-0}
OCSERV_URING=${OCSERV_URING:-$REPO/target/release/ocserv-uring}
OCSERV=${OCSERV:-/usr/sbin/ocserv}

NS_S=ocuperf-s-$$
NS_C=ocuperf-c-$$
VETH_S=ocps$$
VETH_C=ocpc$$
SRV_IP=10.77.0.1
CLI_IP=10.77.0.2
URING_NET=192.168.100.0/24
OCSERV_NET=192.168.98.0/24
VPN_USER=perfuser
BASE_MTU=1400
# Separate ports: a server-side TIME_WAIT left by ocserv on 10.77.0.1:443 makes
# ocserv-uring's bind fail with EADDRINUSE for 60 s (glommio's TcpListener::bind
# sets SO_REUSEPORT but not SO_REUSEADDR), and the rounds alternate servers.
OCSERV_PORT=443
URING_PORT=4443

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- checks
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, TUN devices): sudo $0"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer"

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (apt-get install -y $2)"); }
need openconnect openconnect
need iperf3 iperf3
need ip iproute2
need ss iproute2
need openssl openssl
need jq jq
need timeout coreutils
need pgrep procps
need awk gawk
[[ -x $OCSERV ]] || missing+=("$OCSERV (apt-get install -y ocserv)")
if ((${#missing[@]})); then
    log "missing tools:"
    for m in "${missing[@]}"; do log "  $m"; done
    die "install the packages above and run again"
fi
[[ -c /dev/net/tun ]] || die "/dev/net/tun missing (modprobe tun)"

if [[ ! -x $OCSERV_URING ]]; then
    log "building ocserv-uring (cargo build --release) ..."
    if command -v cargo >/dev/null 2>&1; then
        (cd "$REPO" && cargo build --release --bin ocserv-uring) >&2
    elif [[ -n ${SUDO_USER:-} ]]; then
        # sudo usually drops the user's PATH (~/.cargo/bin); build as that user.
        sudo -u "$SUDO_USER" -H bash -lc "cd '$REPO' && cargo build --release --bin ocserv-uring" >&2
    else
        die "cargo not found; build first: cargo build --release"
    fi
    [[ -x $OCSERV_URING ]] || die "build did not produce $OCSERV_URING"
fi

STALE=$(find "$REPO/src" "$REPO/shards" "$REPO/Cargo.toml" "$REPO/Cargo.lock" -type f \
    -newer "$OCSERV_URING" 2>/dev/null | head -n 1 || true)
[[ -z $STALE ]] || log "WARNING: $OCSERV_URING is older than $STALE; run cargo build --release for current numbers"

for c in $CONFIGS; do
    case $c in ocserv-uring|ocserv-uring-dtls|ocserv-cstp|ocserv-dtls) ;; *) die "unknown configuration '$c'";; esac
done

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/ocuperf.XXXXXX)
chmod 755 "$WORK"            # ocserv's unprivileged workers must reach its socket
SERVER_PID=""
CLIENT_PID=""
IPERF_PID=""
IPERF_CLIENT_PID=""
FAILED=1

# Stop one process we started (by PID), escalate to SIGKILL after a bounded wait.
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        # a zombie child counts as gone; wait reaps it below
        [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; then
        log "pid $pid did not exit after SIG$sig; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# All descendants of a PID (ocserv: sec-mod and the per-client workers).
descendants() {
    local kid
    for kid in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$kid"
        descendants "$kid"
    done
}

stop_session() {
    stop_pid "$IPERF_CLIENT_PID"; IPERF_CLIENT_PID=""
    stop_pid "$IPERF_PID"; IPERF_PID=""
    stop_pid "$CLIENT_PID"; CLIENT_PID=""
    if [[ -n $SERVER_PID ]]; then
        local kids
        kids=$(descendants "$SERVER_PID" | tr '\n' ' ')
        stop_pid "$SERVER_PID"
        # ocserv's main normally takes its children with it; make sure.
        for k in $kids; do
            kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null || true
        done
        SERVER_PID=""
        # ocserv-uring's listeners outlive the process by a few hundred ms
        # (io_uring tears its ring down asynchronously); don't let the next
        # start mistake a dying listener for a ready server.
        no_listener() { [[ -z $(ip netns exec "$NS_S" ss -Hltn "sport = :$SERVER_PORT" 2>/dev/null) ]]; }
        [[ -n ${SERVER_PORT:-} ]] && { wait_until 10 "port $SERVER_PORT to close" no_listener || true; }
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_session
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns del "$NS_S" 2>/dev/null || true
    if ((FAILED)) || [[ $KEEP_WORK == 1 ]]; then
        log "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds;
# COMMAND returning 2 means "will never succeed" (the process died).
wait_until() {
    local secs=$1 what=$2 deadline rc
    shift 2
    deadline=$((SECONDS + secs))
    while :; do
        rc=0
        "$@" || rc=$?
        ((rc == 0)) && return 0
        ((rc == 2)) && { log "gave up waiting for $what: the process exited"; return 1; }
        ((SECONDS < deadline)) || { log "timed out after ${secs}s waiting for $what"; return 1; }
        sleep 0.2
    done
}
alive() { kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# ---------------------------------------------------------------- namespaces
log "creating namespaces $NS_S / $NS_C"
ip netns add "$NS_S"
ip netns add "$NS_C"
ip link add "$VETH_S" type veth peer name "$VETH_C"
ip link set "$VETH_S" netns "$NS_S"
ip link set "$VETH_C" netns "$NS_C"
ip -n "$NS_S" addr add "$SRV_IP/24" dev "$VETH_S"
ip -n "$NS_C" addr add "$CLI_IP/24" dev "$VETH_C"
for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set "$VETH_S" up
ip -n "$NS_C" link set "$VETH_C" up
ip netns exec "$NS_C" ping -c 1 -W 3 "$SRV_IP" >/dev/null || die "veth link $CLI_IP -> $SRV_IP does not work"

# ---------------------------------------------------------------- shared files
log "certificate, user, client script in $WORK"
make_cert "$WORK" "$SRV_IP" || die "openssl could not make a certificate"
PASSWORD=$(openssl rand -hex 12)
printf '%s\n' "$PASSWORD" > "$WORK/password"
chmod 600 "$WORK/password"
# One ocpasswd file for both servers, written by ocserv-uring's own tool.
"$OCSERV_URING" passwd -c "$WORK/ocpasswd" "$VPN_USER" < "$WORK/password" >/dev/null

# Our own vpnc-script: configures only the tunnel device, never resolv.conf or
# the default route (Debian's vpnc-script would rewrite the host's DNS).
cat > "$WORK/vpnc-script" <<'EOF'
#!/bin/sh
case "$reason" in
connect)
    ip link set dev "$TUNDEV" up mtu "$INTERNAL_IP4_MTU"
    ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
    ip route replace "$INTERNAL_IP4_NETADDR/$INTERNAL_IP4_NETMASKLEN" dev "$TUNDEV"
    ;;
esac
exit 0
EOF
chmod 755 "$WORK/vpnc-script"

write_uring_config() { # $1 = configuration, $2 = UDP port (0: no DTLS)
    uring_config "$WORK/$1.toml" "$SRV_IP" "$URING_PORT" "$2" ocuperf-tun "$URING_NET" "$BASE_MTU"
    cat >> "$WORK/$1.toml" <<EOF
dns = ["${URING_NET%.0/*}.1"]
routes = []
[session]
dpd = 90
EOF
}

write_ocserv_config() { # $1 = cstp | dtls
    {
        cat <<EOF
auth = "plain[passwd=$WORK/ocpasswd]"
listen-host = $SRV_IP
tcp-port = $OCSERV_PORT
EOF
        [[ $1 == dtls ]] && echo "udp-port = $OCSERV_PORT"
        cat <<EOF
server-cert = $WORK/cert.pem
server-key = $WORK/key.pem
socket-file = $WORK/ocserv.sock
pid-file = $WORK/ocserv.pid
run-as-user = nobody
run-as-group = nogroup
isolate-workers = false
max-clients = 16
max-same-clients = 16
ipv4-network = $OCSERV_NET
dns = ${OCSERV_NET%.0/*}.1
mtu = $BASE_MTU
device = ocuperf-vpns
cookie-timeout = 300
keepalive = 32400
dpd = 90
mobile-dpd = 90
use-occtl = false
predictable-ips = true
tls-priorities = "NORMAL:%SERVER_PRECEDENCE"
auth-timeout = 240
EOF
    } > "$WORK/ocserv-$1.conf"
}

# ---------------------------------------------------------------- CPU accounting
CLK_TCK=$(getconf CLK_TCK)
# Sum of utime+stime (ticks) of the given PIDs. /proc/PID/stat already adds up
# all threads of a process (ocserv-uring's shard threads).
ticks_of() {
    local p sum=0 t
    for p in "$@"; do
        t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat" 2>/dev/null) || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}
server_pids() { echo "$SERVER_PID"; descendants "$SERVER_PID"; }

# ---------------------------------------------------------------- one session
TUN_ADDR=""       # server's address inside the tunnel
CLIENT_MTU=""
TLS_SUITE=""
DTLS_SUITE=""

start_server() { # $1 = configuration
    local cfg=$1 net listen_check
    SERVER_PORT=$OCSERV_PORT
    case $cfg in
        ocserv-uring|ocserv-uring-dtls)
            ip netns exec "$NS_S" "$OCSERV_URING" --config "$WORK/$cfg.toml" \
                > "$WORK/$cfg.server.log" 2>&1 &
            SERVER_PID=$!
            SERVER_PORT=$URING_PORT
            net=$URING_NET ;;
        ocserv-cstp|ocserv-dtls)
            ip netns exec "$NS_S" "$OCSERV" -f -c "$WORK/ocserv-${cfg#ocserv-}.conf" \
                > "$WORK/$cfg.server.log" 2>&1 &
            SERVER_PID=$!
            net=$OCSERV_NET ;;
    esac
    listen_check() {
        alive "$SERVER_PID" || return 2
        [[ -n $(ip netns exec "$NS_S" ss -Hltn "sport = :$SERVER_PORT") ]]
    }
    if ! wait_until 20 "$cfg to listen on $SRV_IP:$SERVER_PORT" listen_check; then
        tail -n 30 "$WORK/$cfg.server.log" >&2 || true
        return 1
    fi
    SERVER_NET=$net
}

connect_client() { # $1 = configuration
    local cfg=$1 extra=() tun_ready srv_addr
    [[ $cfg == ocserv-cstp ]] && extra=(--no-dtls)
    ip netns exec "$NS_C" openconnect "${extra[@]}" --user "$VPN_USER" --passwd-on-stdin \
        --servercert "$PIN" --script "$WORK/vpnc-script" --interface tun0 \
        "https://$SRV_IP:$SERVER_PORT/" < "$WORK/password" > "$WORK/$cfg.client.log" 2>&1 &
    CLIENT_PID=$!
    tun_ready() {
        alive "$CLIENT_PID" || return 2
        ip -n "$NS_C" -4 addr show dev tun0 2>/dev/null | grep -q 'inet '
    }
    if ! wait_until 30 "openconnect to configure tun0" tun_ready; then
        tail -n 30 "$WORK/$cfg.client.log" >&2 || true
        tail -n 30 "$WORK/$cfg.server.log" >&2 || true
        return 1
    fi
    if [[ $cfg == *-dtls ]]; then
        dtls_up() { grep -q 'DTLS connected' "$WORK/$cfg.client.log"; }
        wait_until 15 "the DTLS channel" dtls_up || { tail -n 20 "$WORK/$cfg.client.log" >&2; return 1; }
    fi
    # The server's side of the tunnel: its address inside the VPN network
    # (ocserv: on the per-user vpnsN device; ocserv-uring: on its TUN device).
    srv_addr() {
        TUN_ADDR=$(ip -n "$NS_S" -o -4 addr show | awk '{sub(/\/.*/, "", $4); print $4}' |
            grep -F "${SERVER_NET%.0/*}." | head -n 1)
        [[ -n $TUN_ADDR ]]
    }
    wait_until 10 "the server's tunnel address" srv_addr || return 1
    CLIENT_MTU=$(ip -n "$NS_C" -o link show dev tun0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    TLS_SUITE=$(sed -n 's/^Connected to HTTPS on .* with ciphersuite //p' "$WORK/$cfg.client.log" | head -n 1)
    DTLS_SUITE=$(sed -n 's/^Established DTLS connection.*Ciphersuite \(.*\)\.$/\1/p' "$WORK/$cfg.client.log" | head -n 1)
}

start_iperf_server() {
    ip netns exec "$NS_S" iperf3 -s -B "$TUN_ADDR" > "$WORK/iperf3-server.log" 2>&1 &
    IPERF_PID=$!
    iperf_listening() {
        alive "$IPERF_PID" || return 2
        [[ -n $(ip netns exec "$NS_S" ss -Hltn "sport = :5201") ]]
    }
    wait_until 10 "iperf3 -s on $TUN_ADDR" iperf_listening || { cat "$WORK/iperf3-server.log" >&2; return 1; }
}

# Packets the kernel dropped on the client's tun0 (TX: openconnect did not
# read them in time; RX: it wrote faster than the stack took them).
tun_drops() {
    ip netns exec "$NS_C" cat /sys/class/net/tun0/statistics/tx_dropped /sys/class/net/tun0/statistics/rx_dropped 2>/dev/null |
        awk '{s += $1} END {print s + 0}'
}

# Datagrams the client's kernel dropped because openconnect's UDP socket
# buffer was full (DTLS runs).
udp_drops() {
    ip netns exec "$NS_C" cat /proc/net/snmp | awk '$1 == "Udp:" && $2 ~ /^[0-9]+$/ {print $6}'
}

# run_iperf CFG ROUND DIR(up|down): one iperf3 run; appends a result line to
# $WORK/results.tsv: cfg round dir bits/s bytes server_cpu_s client_cpu_s retransmits mtu client_tun_drops client_udp_drops
run_iperf() {
    local cfg=$1 round=$2 dir=$3 json rflag=() pids s0 s1 c0 c1 d0 u0 drops udrops try bps bytes retr
    json="$WORK/$cfg.$round.$dir.json"
    [[ $dir == down ]] && rflag=(-R)
    for try in 1 2; do
        pids=$(server_pids | tr '\n' ' ')
        s0=$(ticks_of $pids); c0=$(ticks_of "$CLIENT_PID"); d0=$(tun_drops); u0=$(udp_drops)
        # in the background + wait, so that a signal reaches our trap at once
        ip netns exec "$NS_C" timeout $((DURATION + 30)) \
            iperf3 -c "$TUN_ADDR" -t "$DURATION" -J "${rflag[@]}" > "$json" 2>"$json.err" &
        IPERF_CLIENT_PID=$!
        if wait "$IPERF_CLIENT_PID"; then
            IPERF_CLIENT_PID=""
            # the worker set may change (it should not); count every PID seen
            pids=$(echo "$pids $(server_pids | tr '\n' ' ')" | tr ' ' '\n' | sort -u | tr '\n' ' ')
            s1=$(ticks_of $pids); c1=$(ticks_of "$CLIENT_PID")
            bps=$(jq -r '.end.sum_received.bits_per_second // empty' "$json")
            bytes=$(jq -r '.end.sum_received.bytes // empty' "$json")
            retr=$(jq -r '.end.sum_sent.retransmits // "-"' "$json")
            if [[ -n $bps && -n $bytes ]] && alive "$CLIENT_PID"; then
                drops=$(( $(tun_drops) - d0 )); udrops=$(( $(udp_drops) - u0 ))
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$dir" "$bps" "$bytes" \
                    "$(awk -v t=$((s1 - s0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}')" \
                    "$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}')" \
                    "$retr" "$CLIENT_MTU" "$drops" "$udrops" >> "$WORK/results.tsv"
                log "  $cfg round $round $dir: $(awk -v b="$bps" 'BEGIN{printf "%.3f", b/1e9}') Gbit/s," \
                    "server CPU $(awk -v t=$((s1 - s0)) -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}') s," \
                    "retransmits $retr, packets dropped by the client's tun0: $drops, by its full UDP socket: $udrops"
                return 0
            fi
        fi
        IPERF_CLIENT_PID=""
        log "  $cfg round $round $dir: iperf3 failed (try $try): $(jq -r '.error // empty' "$json" 2>/dev/null) $(tail -c 300 "$json.err")"
        alive "$CLIENT_PID" || { log "  openconnect exited"; tail -n 20 "$WORK/$cfg.client.log" >&2; return 1; }
        sleep 2
    done
    return 1
}

measure() { # $1 = configuration, $2 = round
    local cfg=$1 round=$2
    log "round $round/$RUNS: $cfg"
    start_server "$cfg" || die "$cfg did not start (logs in $WORK)"
    connect_client "$cfg" || die "openconnect could not connect to $cfg (logs in $WORK)"
    log "  connected: client $(ip -n "$NS_C" -o -4 addr show dev tun0 | awk '{print $4}'), server tunnel address $TUN_ADDR, mtu $CLIENT_MTU, $TLS_SUITE${DTLS_SUITE:+, DTLS $DTLS_SUITE}"
    printf '%s\t%s\t%s\t%s\n' "$cfg" "$CLIENT_MTU" "$TLS_SUITE" "${DTLS_SUITE:--}" >> "$WORK/sessions.tsv"
    start_iperf_server || die "iperf3 server did not start"
    sleep 1
    run_iperf "$cfg" "$round" up || die "iperf3 upload through $cfg failed (logs in $WORK)"
    sleep 1
    run_iperf "$cfg" "$round" down || die "iperf3 download through $cfg failed (logs in $WORK)"
    stop_session
    # let the namespace settle (ocserv removes its vpns device, TIME_WAITs etc.)
    sleep 1
}

# ---------------------------------------------------------------- main
write_ocserv_config cstp
write_ocserv_config dtls
write_uring_config ocserv-uring 0
write_uring_config ocserv-uring-dtls "$URING_PORT"
: > "$WORK/results.tsv"
: > "$WORK/sessions.tsv"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= RUNS; round++)); do
    for cfg in $CONFIGS; do
        measure "$cfg" "$round"
    done
done

# ---------------------------------------------------------------- report
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
log "writing $OUT"

# median of the numbers on stdin
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit}
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
col() { # cfg dir column-number -> values
    awk -F'\t' -v c="$1" -v d="$2" -v k="$3" '$1 == c && $3 == d {print $k}' "$WORK/results.tsv"
}
gbps() { col "$1" "$2" 4 | median | awk '{printf "%.3f", $1 / 1e9}'; }
# CPU seconds per GB (1e9 bytes) received, per run, then the median.
cpu_per_gb() { # cfg dir column(6 server, 7 client)
    awk -F'\t' -v c="$1" -v d="$2" -v k="$3" '$1 == c && $3 == d {print $k / ($5 / 1e9)}' "$WORK/results.tsv" |
        median | awk '{printf "%.2f", $1}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0) print "-"; else printf "%.2f", a / b}'; }
label() {
    case $1 in
        ocserv-uring) echo "ocserv-uring, CSTP only (TLS over TCP, udp_port = 0)" ;;
        ocserv-uring-dtls) echo "ocserv-uring, DTLS (PSK-NEGOTIATE)" ;;
        ocserv-cstp) echo "ocserv 1.1.6, CSTP only (no udp-port, openconnect --no-dtls)" ;;
        ocserv-dtls) echo "ocserv 1.1.6, DTLS (its default)" ;;
    esac
}
session_field() { awk -F'\t' -v c="$1" -v k="$2" '$1 == c {print $k; exit}' "$WORK/sessions.tsv"; }

declare -A UP DOWN SUP SDOWN CUP CDOWN RUP RDOWN
for cfg in $CONFIGS; do
    UP[$cfg]=$(gbps "$cfg" up); DOWN[$cfg]=$(gbps "$cfg" down)
    SUP[$cfg]=$(cpu_per_gb "$cfg" up 6); SDOWN[$cfg]=$(cpu_per_gb "$cfg" down 6)
    CUP[$cfg]=$(cpu_per_gb "$cfg" up 7); CDOWN[$cfg]=$(cpu_per_gb "$cfg" down 7)
    RUP[$cfg]=$(col "$cfg" up 8 | median | awk '{printf "%.0f", $1}')
    RDOWN[$cfg]=$(col "$cfg" down 8 | median | awk '{printf "%.0f", $1}')
done
has() { [[ " $CONFIGS " == *" $1 "* ]]; }
# The ocserv-uring configuration that uses the same data channel.
peer_of() { case $1 in ocserv-cstp) echo ocserv-uring ;; ocserv-dtls) echo ocserv-uring-dtls ;; esac; }
# ocserv configurations measured together with their ocserv-uring peer.
pairs() { local c; for c in $CONFIGS; do [[ $c == ocserv-cstp || $c == ocserv-dtls ]] && has "$(peer_of "$c")" && echo "$c"; done; }

# Every median where an ocserv configuration does better than ocserv-uring.
ocserv_ahead() {
    local cfg u
    for cfg in $(pairs); do
        u=$(peer_of "$cfg")
        awk -v l="$(label "$cfg")" \
            -v uu="${UP[$u]}" -v ou="${UP[$cfg]}" -v ud="${DOWN[$u]}" -v od="${DOWN[$cfg]}" \
            -v usu="${SUP[$u]}" -v osu="${SUP[$cfg]}" -v usd="${SDOWN[$u]}" -v osd="${SDOWN[$cfg]}" \
            -v uru="${RUP[$u]}" -v oru="${RUP[$cfg]}" -v urd="${RDOWN[$u]}" -v ord="${RDOWN[$cfg]}" '
            function say(what, o, u) {printf "- %s: %s (%s against ocserv-uring'"'"'s %s)\n", l, what, o, u}
            BEGIN {
                if (ou > uu) say("faster upload, Gbit/s", ou, uu)
                if (od > ud) say("faster download, Gbit/s", od, ud)
                if (osu < usu) say("less server CPU per GB uploaded, s/GB", osu, usu)
                if (osd < usd) say("less server CPU per GB downloaded, s/GB", osd, usd)
                if (oru < uru) say("fewer TCP retransmits in upload runs", oru, uru)
                if (ord < urd) say("fewer TCP retransmits in download runs", ord, urd)
            }'
    done
}
# Share of the machine (all CPUs x run time) that server + openconnect used.
busy_range() {
    awk -F'\t' -v d="$DURATION" -v n="$(nproc)" '
        {b = ($6 + $7) / (d * n) * 100; if (NR == 1 || b < lo) lo = b; if (NR == 1 || b > hi) hi = b}
        END {printf "%.0f–%.0f %%", lo, hi}' "$WORK/results.tsv"
}

GIT_COMMIT=$(git -c safe.directory='*' -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -c safe.directory='*' -C "$REPO" --no-optional-locks status --porcelain --untracked-files=no -- src shards Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    GIT_NOTE=" (working tree had uncommitted changes under src/, shards/ or Cargo.* at measurement time; the binary was built from it)"
else
    GIT_NOTE=""
fi
[[ -z $STALE ]] || GIT_NOTE="$GIT_NOTE (WARNING: the binary was older than ${STALE#"$REPO"/})"
BIN_TIME=$(date -u -r "$OCSERV_URING" '+%Y-%m-%d %H:%M UTC')
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
OC_VERSION=$(openconnect --version 2>&1 | head -n 1)
OCSERV_VERSION=$("$OCSERV" --version 2>&1 | head -n 1)
OCSERV_PKG=$(dpkg-query -W -f='${Version}' ocserv 2>/dev/null || echo "?")
OC_PKG=$(dpkg-query -W -f='${Version}' openconnect 2>/dev/null || echo "?")
IPERF_VERSION=$(iperf3 --version 2>&1 | head -n 1)

BEGIN_MARK='<!-- perf/compare-throughput.sh: begin (generated: a new run replaces everything up to the end marker) -->'
END_MARK='<!-- perf/compare-throughput.sh: end -->'
{
    echo "$BEGIN_MARK"
    cat <<EOF
## Throughput: ocserv-uring vs ocserv 1.1.6 (release build, perf/compare-throughput.sh)

Single-flow TCP throughput (iperf3, one stream) through a real \`openconnect\`
client, for ocserv-uring and for Debian's ocserv on the same two network
namespaces (server \`$SRV_IP\` and client \`$CLI_IP\` over a veth pair;
ocserv listens on port $OCSERV_PORT, ocserv-uring on $URING_PORT).
Both servers use the same ECDSA P-256 certificate, the same ocpasswd file and
\`mtu = $BASE_MTU\`. Upload = client → server (\`iperf3 -c\`), download =
server → client (\`iperf3 -c -R\`); iperf3 runs in the server namespace bound
to the server's own tunnel address, so the traffic crosses the VPN and nothing
else. Each round measures every configuration once, interleaved, and the table
shows the median of $RUNS rounds of ${DURATION} s each.

Server CPU is utime+stime from \`/proc/PID/stat\` of every server process
(ocserv: main, sec-mod and the client's worker; ocserv-uring: its one process,
all shard threads), taken before and after each iperf3 run, divided by the
gigabytes (10^9 bytes) the receiver got. Lower is better.

| Configuration | Upload Gbit/s | Download Gbit/s | Server CPU s/GB up | Server CPU s/GB down | TCP retransmits up / down | ocserv-uring on the same channel ÷ this: upload / download throughput |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
    for cfg in $CONFIGS; do
        u=$(peer_of "$cfg")
        if [[ -z $u ]] || ! has "$u"; then
            r="—"
        else
            r="$(ratio "${UP[$u]}" "${UP[$cfg]}")× / $(ratio "${DOWN[$u]}" "${DOWN[$cfg]}")×"
        fi
        echo "| $(label "$cfg") | ${UP[$cfg]} | ${DOWN[$cfg]} | ${SUP[$cfg]} | ${SDOWN[$cfg]} | ${RUP[$cfg]} / ${RDOWN[$cfg]} | $r |"
    done
    if [[ -n $(pairs) ]]; then
        echo
        echo "Where ocserv did better than ocserv-uring on the same channel in this run (medians):"
        echo
        ahead=$(ocserv_ahead)
        echo "${ahead:-- nowhere: ocserv-uring had the higher throughput, the lower server CPU per GB and the fewer retransmits in every column}"
    fi
    if [[ -n $(pairs) ]]; then
        echo
        echo "Ratios ocserv-uring ÷ ocserv on the same channel (throughput: above 1 means ocserv-uring is faster;"
        echo "CPU per GB: below 1 means ocserv-uring spends less server CPU per byte):"
        echo
        echo "| Compared with | Upload throughput | Download throughput | Server CPU/GB up | Server CPU/GB down |"
        echo "| --- | ---: | ---: | ---: | ---: |"
        for cfg in $(pairs); do
            u=$(peer_of "$cfg")
            echo "| $(label "$cfg") | $(ratio "${UP[$u]}" "${UP[$cfg]}") | $(ratio "${DOWN[$u]}" "${DOWN[$cfg]}") | $(ratio "${SUP[$u]}" "${SUP[$cfg]}") | $(ratio "${SDOWN[$u]}" "${SDOWN[$cfg]}") |"
        done
    fi
    cat <<EOF

Client side (the same openconnect in every row), for reading the numbers:

| Configuration | Client tunnel MTU | TLS cipher suite | DTLS cipher suite | openconnect CPU s/GB up | openconnect CPU s/GB down |
| --- | ---: | --- | --- | ---: | ---: |
EOF
    for cfg in $CONFIGS; do
        echo "| $cfg | $(session_field "$cfg" 2) | $(session_field "$cfg" 3) | $(session_field "$cfg" 4) | ${CUP[$cfg]} | ${CDOWN[$cfg]} |"
    done
    cat <<EOF

All runs (Gbit/s as received; server and openconnect CPU in seconds during the
run; TCP retransmits as iperf3's sender reports them; packets the kernel
dropped from the client's tun0, and from openconnect's full UDP socket, during the run):

| Configuration | Round | Direction | Gbit/s | GB | Server CPU s | openconnect CPU s | Retransmits | Client tun0 drops | Client UDP drops |
| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
EOF
    awk -F'\t' '{printf "| %s | %s | %s | %.3f | %.2f | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4 / 1e9, $5 / 1e9, $6, $7, $8, $10, $11}' \
        "$WORK/results.tsv"
    cat <<EOF

### Notes

- Each server runs twice: CSTP only (DTLS off on the server, and
  \`--no-dtls\` for ocserv's client) and with DTLS (openconnect's default
  PSK-NEGOTIATE). Ratios pair configurations that use the same channel.
- Both servers get \`mtu = $BASE_MTU\` and derive the client's tunnel MTU
  the same way (1372 over CSTP only, 1334 with DTLS; see the client table).
- Upload retransmits are losses on the client, not in the server: in
  upload runs they match, nearly one for one, the packets the kernel
  dropped from the client's tun0 queue because openconnect did not read
  them in time (last column above). The faster a server takes the
  client's data, the sooner openconnect becomes the bottleneck. Over
  DTLS the download retransmits match the datagrams the client's kernel
  dropped because openconnect's UDP socket buffer was full (last column):
  the client again, not the server.
EOF
    cat <<EOF
- Everything (both iperf3 ends, openconnect, the server) shares this machine's
  $(nproc) CPUs: server and openconnect together used $(busy_range) of all
  CPU time during the runs, so the machine itself is the limit and a server
  that needs less CPU per byte leaves more to the client and gets more
  throughput. Server CPU per GB is the steadier comparison; throughput is
  what one flow gets on this machine. Other work may share the machine too
  (1/5/15-minute load average, this benchmark included: $LOAD_START before
  the measurements, $LOAD_END after), so compare rows with each other, not
  with other machines.
- ocserv runs with \`isolate-workers = false\` and
  \`tls-priorities = "NORMAL:%SERVER_PRECEDENCE"\`; ocserv-uring with
  \`workers = 0\` (one shard per CPU). Full configurations are written by the
  script.

### How to reproduce

\`\`\`
sudo perf/compare-throughput.sh
\`\`\`

(knobs: \`RUNS\`, \`DURATION\`, \`CONFIGS\`, \`OUT\`,
\`KEEP_WORK\`; see the script's header.) This run: \`RUNS=$RUNS DURATION=$DURATION\`.

### Environment

- Date: $(date -u)
- Kernel: $(uname -r)
- CPUs: $(nproc) × $CPU_MODEL
- Memory: $MEM
- openconnect: $OC_VERSION (Debian $OC_PKG)
- ocserv: $OCSERV_VERSION (Debian $OCSERV_PKG)
- ocserv-uring: git commit $GIT_COMMIT$GIT_NOTE; release binary built $BIN_TIME
- iperf3: $IPERF_VERSION
EOF
    echo "$END_MARK"
} > "$WORK/section.md"

if [[ -f $OUT ]] && grep -qF "$BEGIN_MARK" "$OUT" && grep -qF "$END_MARK" "$OUT"; then
    # replace our previous section, keep everything around it
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v f="$WORK/section.md" '
        $0 == b {while ((getline l < f) > 0) print l; skip = 1; next}
        $0 == e {skip = 0; next}
        !skip' "$OUT" > "$OUT.tmp"
elif [[ -f $OUT ]]; then
    # first run against a hand-written file: put the section before its
    # first "## " heading, or at the end if it has none
    awk -v f="$WORK/section.md" '
        !done && /^## / {while ((getline l < f) > 0) print l; print ""; done = 1}
        {print}
        END {if (!done) {print ""; while ((getline l < f) > 0) print l}}' "$OUT" > "$OUT.tmp"
else
    { echo "# ocserv-uring — measured figures"; echo; cat "$WORK/section.md"; } > "$OUT.tmp"
fi
mv "$OUT.tmp" "$OUT"

[[ -z ${TSV_OUT:-} ]] || cp "$WORK/results.tsv" "$TSV_OUT"
FAILED=0
log "done; results in $OUT"
cat "$WORK/section.md" >&2
