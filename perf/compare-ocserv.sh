#!/usr/bin/env bash
# ocserv-uring against ocserv 1.1.6, side by side, driven by the same load:
# logins/s and server CPU per login, memory per idle session, most sessions
# held, loadgen throughput and server CPU per GB over DTLS and CSTP, ping RTT
# through the tunnel under load, and (via perf/compare-throughput.sh)
# single-flow iperf3 through openconnect. Writes a table into perf/RESULTS.md.
#
# Everything runs in two network namespaces this script creates and deletes:
# server 10.79.0.1, client 10.79.0.2-9 (eight source addresses, so more than
# 64K sessions fit) over a veth pair. Needs root, ocserv, openconnect, iperf3.
#
#   sudo perf/compare-ocserv.sh
#
# Knobs (environment, all optional):
#   PARTS="login connect certlogin memory hold load tcpload ping clients iperf"   which measurements
#                                               (connect: DES logins whose CONNECT comes on a
#                                               new connection, as after a reconnect: on
#                                               ocserv-uring about half are handed between
#                                               shards; certlogin: both servers restarted
#                                               with certificate-only login, no password hash)
#   SERVERS="ocserv ocserv-uring"               which servers (both for ratios)
#   LOGINS=2000 LOGIN_CONCURRENCY=32            login part
#   LOGIN_THREADS=1                             load generator runtimes for logins (its client
#                                               side of each handshake costs about as much
#                                               CPU as ours, so more threads take CPU from
#                                               the server under test)
#   MEM_RUNS="1000:dtls 10000:cstp"             idle sessions per memory run (N:channel);
#                                               (DTLS costs the load generator, and ocserv,
#                                               a second descriptor per session)
#   HOLD_RUNS="100000:cstp 100000:dtls"         ocserv-uring's most-sessions runs (default:
#                                               that, or what the open-file limit allows)
#   LOAD_SESSIONS=4 LOAD_MBIT=100 LOAD_SECONDS=10   loadgen throughput (echo paced per session, then
#                                               unpaced upload only and download only)
#   LOAD_PACING=even                            paced sessions send evenly spaced packets from a
#                                               random phase (burst: 32 back to back, then a pause)
#   LOAD_THREADS=2                              load generator runtimes (one per CPU: the kernel
#                                               hands a connection to the shard of the CPU it came in on)
#   CLIENTS=40 CLIENT_MBIT=10 CLIENT_SECONDS=10  part "clients": real openconnect clients (DTLS;
#   CLIENT_DTLS=1                               CLIENT_DTLS=0: CSTP only), each with one paced UDP
#                                               iperf3 flow (-l 1200), half up, half down, and ping
#                                               through one more tunnel during the load
#   IPERF_RUNS=1                                rounds of compare-throughput.sh
#   OUT=perf/RESULTS.md  KEEP_WORK=1
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$REPO/perf/lib.sh"
PARTS=${PARTS:-"login connect certlogin memory hold load tcpload ping clients iperf"}
CLIENTS=${CLIENTS:-40}
CLIENT_MBIT=${CLIENT_MBIT:-10}
CLIENT_SECONDS=${CLIENT_SECONDS:-10}
CLIENT_DTLS=${CLIENT_DTLS:-1}
SERVERS=${SERVERS:-"ocserv ocserv-uring"}
LOGINS=${LOGINS:-2000}
LOGIN_CONCURRENCY=${LOGIN_CONCURRENCY:-32}
LOGIN_THREADS=${LOGIN_THREADS:-1}
MEM_RUNS=${MEM_RUNS:-"1000:dtls 10000:cstp"}
LOAD_SESSIONS=${LOAD_SESSIONS:-4}
LOAD_MBIT=${LOAD_MBIT:-100}
LOAD_SECONDS=${LOAD_SECONDS:-10}
LOAD_THREADS=${LOAD_THREADS:-2}
LOAD_PACING=${LOAD_PACING:-even}
IPERF_RUNS=${IPERF_RUNS:-1}
OUT=${OUT:-$REPO/perf/RESULTS.md}
KEEP_WORK=${KEEP_WORK:-0}
URING=${OCSERV_URING:-$REPO/target/release/ocserv-uring}
LOADGEN=${OCU_LOADGEN:-$REPO/target/release/ocu-loadgen}
OCSERV=${OCSERV:-/usr/sbin/ocserv}

NS_S=ocucmp-s-$$
NS_C=ocucmp-c-$$
SRV_IP=10.79.0.1
CLIENT_IPS=$(seq -s, -f "10.79.0.%g" 2 9)
SINK=$SRV_IP:9000

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root: sudo $0"
for t in openconnect iperf3 ip ss openssl jq perl ping; do
    command -v $t >/dev/null || die "missing $t (apt-get install openconnect iperf3 iproute2 openssl jq perl iputils-ping)"
done
[[ -x $OCSERV ]] || die "missing $OCSERV (apt-get install ocserv)"
if [[ ! -x $URING || ! -x $LOADGEN ]]; then
    log "building (cargo build --release -p ocserv-uring -p ocu-loadgen)"
    (cd "$REPO" && cargo build --release -p ocserv-uring -p ocu-loadgen) >&2 || die "build failed"
fi
# Both servers and the load generator hold a descriptor per TCP session and
# one more per DTLS session. Without CAP_SYS_RESOURCE the hard limit stays.
ulimit -Hn 1048576 2>/dev/null || log "open-file hard limit stays $(ulimit -Hn) (no CAP_SYS_RESOURCE)"
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
# The server needs a descriptor per session (DTLS shares the shard's socket),
# plus a few dozen.
min() { (($1 < $2)) && echo "$1" || echo "$2"; }
HOLD_RUNS=${HOLD_RUNS:-"$(min 100000 $((NOFILE - 200))):cstp $(min 100000 $((NOFILE - 200))):dtls"}

# A cgroup of our own for the server's CPU time (v2, or v1's cpuacct).
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    CG_KIND=v2; CG=/sys/fs/cgroup/ocucmp-$$
elif [[ -d /sys/fs/cgroup/cpuacct ]]; then
    CG_KIND=v1; CG=/sys/fs/cgroup/cpuacct/ocucmp-$$
else
    die "no cgroup v2 and no cpuacct cgroup to account the servers' CPU time"
fi
mkdir "$CG" || die "cannot create the cgroup $CG"
CG_PROCS=$CG/cgroup.procs

WORK=$(mktemp -d /tmp/ocucmp.XXXXXX)
chmod 755 "$WORK"   # ocserv's workers run as nobody
SERVER=""; SERVER_PID=""; SINK_PID=""; CLIENT_PID=""; FAILED=1
cleanup() {
    trap - EXIT INT TERM
    stop_server
    [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null
    for ns in "$NS_C" "$NS_S"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    sleep 0.5; rmdir "$CG" 2>/dev/null
    if ((FAILED)) || [[ $KEEP_WORK == 1 ]]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# wait_for SECONDS WHAT CMD...: poll until CMD succeeds.
wait_for() {
    local end=$((SECONDS + $1)) what=$2
    shift 2
    until "$@"; do
        ((SECONDS < end)) || { log "timed out waiting for $what"; return 1; }
        sleep 0.2
    done
}

# ------------------------------------------------------------ namespaces
ip netns add "$NS_S" && ip netns add "$NS_C" || die "ip netns add"
ip link add cmps$$ netns "$NS_S" type veth peer name cmpc$$ netns "$NS_C"
ip -n "$NS_S" addr add $SRV_IP/24 dev cmps$$
for a in ${CLIENT_IPS//,/ }; do ip -n "$NS_C" addr add "$a/24" dev cmpc$$; done
for ns in "$NS_S" "$NS_C"; do ip -n "$ns" link set lo up; done
ip -n "$NS_S" link set cmps$$ up
ip -n "$NS_C" link set cmpc$$ up
# TCP-like load (part tcpload) goes to the sink's address and port, where
# nothing listens: drop it rather than have the kernel answer each with a
# reset (both servers alike).
ip netns exec "$NS_S" nft -f - <<'NFT' || die "nft: drop rule for the TCP-like load"
table inet ocucmp {
    chain input {
        type filter hook input priority 0;
        tcp dport 9000 drop
    }
}
NFT
# 64K source ports per client address instead of 28K.
ip netns exec "$NS_C" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
ip netns exec "$NS_C" ping -c1 -W3 $SRV_IP >/dev/null || die "veth does not work"

# ------------------------------------------------------------ shared files
make_cert "$WORK" "$SRV_IP" || die "openssl could not make a certificate"
PASSWORD=$(openssl rand -hex 8)
# hashuser: ocpasswd's SHA-256 crypt ($5$, 5000 rounds, what both servers'
# users have). cheapuser: traditional DES crypt(3), microseconds: the login
# with the password-hash cost taken out, for both servers alike.
echo "$PASSWORD" | "$URING" passwd -c "$WORK/ocpasswd" hashuser >/dev/null || die "passwd"
echo "cheapuser:*:$(perl -e 'print crypt($ARGV[0], "ch")' "$PASSWORD")" >> "$WORK/ocpasswd"
cat > "$WORK/vpnc-script" <<'EOF'
#!/bin/sh
[ "$reason" = connect ] || exit 0
ip link set dev "$TUNDEV" up mtu "$INTERNAL_IP4_MTU"
ip addr add "$INTERNAL_IP4_ADDRESS/32" dev "$TUNDEV"
ip route replace "$INTERNAL_IP4_NETADDR/$INTERNAL_IP4_NETMASKLEN" dev "$TUNDEV"
EOF
chmod 755 "$WORK/vpnc-script"

uring_config "$WORK/uring.toml" "$SRV_IP" 4443 4443 "cmpu$$" 10.128.0.0/14
printf '[session]\ndpd = 90\nmax_clients = 0\n' >> "$WORK/uring.toml"
cat > "$WORK/ocserv.conf" <<EOF
auth = "plain[passwd=$WORK/ocpasswd]"
listen-host = $SRV_IP
tcp-port = 443
udp-port = 443
server-cert = $WORK/cert.pem
server-key = $WORK/key.pem
socket-file = $WORK/ocserv.sock
pid-file = $WORK/ocserv.pid
run-as-user = nobody
run-as-group = nogroup
isolate-workers = false
max-clients = 0
max-same-clients = 0
max-ban-score = 0
ipv4-network = 10.160.0.0/15
mtu = 1400
device = cmpo
cookie-timeout = 300
keepalive = 32400
dpd = 90
mobile-dpd = 90
use-occtl = false
predictable-ips = true
tls-priorities = "NORMAL:%SERVER_PRECEDENCE"
auth-timeout = 240
EOF

# Certificate logins: a CA, a client certificate for "certuser" (the user
# is its CN; X.509 v3, which webpki requires), and both servers with
# certificate-only login.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/ca-key.pem" \
    -out "$WORK/ca.pem" -subj "/CN=compare CA" -days 7 2>/dev/null || die "openssl: CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/client-key.pem" \
    -out "$WORK/client.csr" -subj "/CN=certuser" 2>/dev/null &&
    printf 'basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = clientAuth\n' > "$WORK/client.ext" &&
    openssl x509 -req -in "$WORK/client.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" -CAcreateserial \
        -extfile "$WORK/client.ext" -out "$WORK/client.pem" -days 7 2>/dev/null || die "openssl: client certificate"
chmod 644 "$WORK/ca.pem"
sed -e 's|^auth = .*|auth = "certificate"\nca-cert = '"$WORK"'/ca.pem\ncert-user-oid = 2.5.4.3|' \
    "$WORK/ocserv.conf" > "$WORK/ocserv-cert.conf"
sed -e 's|^\[auth\]$|[auth]\nmethod = "certificate"\nca_file = "'"$WORK"'/ca.pem"|' \
    "$WORK/uring.toml" > "$WORK/uring-cert.toml"

# ------------------------------------------------------------ servers
port_of() { [[ $1 == ocserv ]] && echo 443 || echo 4443; }
listening() { [[ -n $(ip netns exec "$NS_S" ss -Hltn "sport = :$(port_of "$SERVER")") ]]; }
start_server() { # ocserv | ocserv-uring; CONF=-cert for certificate logins
    SERVER=$1
    # In the CPU cgroup first, so every process it forks is counted.
    if [[ $1 == ocserv ]]; then
        sh -c 'echo $$ > "$1"; shift; exec "$@"' - "$CG_PROCS" \
            ip netns exec "$NS_S" "$OCSERV" -f -c "$WORK/ocserv${CONF:-}.conf" >> "$WORK/ocserv.log" 2>&1 &
    else
        sh -c 'echo $$ > "$1"; shift; exec "$@"' - "$CG_PROCS" \
            ip netns exec "$NS_S" "$URING" --config "$WORK/uring${CONF:-}.toml" >> "$WORK/ocserv-uring.log" 2>&1 &
    fi
    SERVER_PID=$!
    wait_for 60 "$1 to listen" listening || { tail "$WORK/$1.log" >&2; die "$1 did not start"; }
    sleep 1
}
# Every server process in the namespace: ocserv's main, sec-mod and
# per-session workers; ocserv-uring's one process.
server_pids() {
    local files=() p
    for p in $(ip netns pids "$NS_S"); do files+=("/proc/$p/comm"); done
    ((${#files[@]})) || return 0
    awk 'FNR == 1 && /^ocserv/ {split(FILENAME, a, "/"); print a[3]}' "${files[@]}" 2>/dev/null
}
gone() { ! kill -0 "$1" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]; }
# ocserv's per-session TUN devices (cmpoN) and ocserv-uring's (cmpu...).
no_devices() { ! ip -n "$NS_S" -o link show 2>/dev/null | grep -q ': cmp[ou]'; }
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill "$SERVER_PID" 2>/dev/null
    wait_for 20 "$SERVER to exit" gone "$SERVER_PID" || true
    server_pids | xargs -r kill -9 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
    wait_for 30 "the port to close" eval '! listening' || true
    # Deleting 10K devices holds the RTNL lock for minutes; the next
    # server cannot create its own until then.
    wait_for 600 "the server's TUN devices to go" no_devices || true
}
CLK=$(getconf CLK_TCK)
# CPU seconds of the server so far, from its cgroup: that includes ocserv's
# per-session workers that already exited.
server_cpu() {
    if [[ $CG_KIND == v2 ]]; then
        awk '$1 == "usage_usec" {printf "%.3f", $2 / 1e6}' "$CG/cpu.stat"
    else
        awk '{printf "%.3f", $1 / 1e9}' "$CG/cpuacct.usage"
    fi
}
# Our own reaped children: the load generator's CPU seconds.
client_cpu() { awk -v k="$CLK" '{sub(/^.*\) /, ""); printf "%.2f", ($14 + $15) / k}' "/proc/$$/stat"; }
server_mem() { # -> "PSS_KiB RSS_KiB processes", one pass even over 10K workers
    local files=() p
    for p in $(server_pids); do files+=("/proc/$p/smaps_rollup"); done
    ((${#files[@]})) || { echo "0 0 0"; return; }
    awk '/^Pss:/ {p += $2} /^Rss:/ {r += $2} FNR == 1 {n++} END {print p + 0, r + 0, n + 0}' "${files[@]}" 2>/dev/null
}
calc() { awk "BEGIN {printf \"$1\", $2}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b}'; }
jget() { jq -r ".$2 // \"-\"" "$1" 2>/dev/null || echo -; }
T_ARGS() { echo "--server https://$SRV_IP:$(port_of "$SERVER")/ --user $1 --password $PASSWORD --servercert $PIN --json"; }
loadgen() { ip netns exec "$NS_C" "$LOADGEN" "$@"; }

declare -A R   # R[key.server] = figure
put() { R[$1.$SERVER]=$2; log "  $SERVER $1 = $2"; }
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

# ------------------------------------------------------------ login
# login_run USER [LOADGEN ARGS]: warm-up, then LOGINS logins; puts rate,
# successes, server and client CPU per login and latency under USER (or
# under $KEY when set).
login_run() {
    local user=$1 j c0 c1 l0 l1
    shift
    local key=${KEY:-$user}
    loadgen login $(T_ARGS $user) "$@" --concurrency 4 --count 40 > /dev/null 2>&1   # warm-up
    c0=$(server_cpu); l0=$(client_cpu); j=$WORK/login.$SERVER.$key.json
    loadgen login $(T_ARGS $user) "$@" --threads "$LOGIN_THREADS" --concurrency "$LOGIN_CONCURRENCY" --count "$LOGINS" > "$j" 2> "$j.err" ||
        log "  login run reported failures: $(jget "$j" errors)"
    c1=$(server_cpu); l1=$(client_cpu)
    put "login_rate.$key" "$(jget "$j" logins_per_s)"
    put "login_ok.$key" "$(jget "$j" ok)/$LOGINS"
    put "login_cpu_ms.$key" "$(calc %.3f "($c1 - $c0) * 1000 / $LOGINS")"
    put "login_client_cpu_ms.$key" "$(calc %.3f "($l1 - $l0) * 1000 / $LOGINS")"
    put "login_p50.$key" "$(jget "$j" latency_p50_ms)"
    put "login_p99.$key" "$(jget "$j" latency_p99_ms)"
}
part_login() {
    login_run hashuser
    login_run cheapuser
}
part_connect() {
    KEY=connect login_run cheapuser --connect --fresh-connection
}
# The server must run its certificate-only configuration (CONF=-cert).
part_certlogin() {
    login_run certuser --cert "$WORK/client.pem" --key "$WORK/client-key.pem"
}

# idle_run N CHANNEL(dtls|cstp) HOLD TAG: holds N idle sessions (from as many
# load generator processes as the open-file limit needs), measures server
# memory once they are all up; sets M_* for the caller.
idle_run() {
    local n=$1 ch=$2 hold=$3 tag=$4 per procs k base mem flag=() pids=() j
    j=$WORK/idle.$SERVER.$tag
    # descriptors per session in the load generator: TCP, plus UDP for DTLS
    [[ $ch == dtls ]] && { flag=(--dtls); per=$(((NOFILE - 500) / 2)); } || per=$((NOFILE - 500))
    procs=$(((n + per - 1) / per))
    # The previous run's connections linger in TIME_WAIT on the server side,
    # and new connects walk the same source ports: let them expire first, so
    # a run never measures the kernel's handling of reused 4-tuples.
    local tw i
    for ((i = 0; i < 90; i++)); do
        tw=$(ip netns exec "$NS_S" ss -Htan state time-wait | wc -l)
        ((tw < 100)) && break
        ((i == 0)) && log "  waiting for $tw server-side TIME_WAIT sockets to expire"
        sleep 1
    done
    base=$(server_mem)
    for ((k = 0; k < procs; k++)); do
        loadgen idle $(T_ARGS cheapuser) --sessions $(((n + k) / procs)) --hold "$hold" "${flag[@]}" \
            --source-ips "$CLIENT_IPS" --ramp-concurrency $((64 / procs)) > "$j.$k.json" 2> "$j.$k.err" &
        pids+=($!)
    done
    ramped() { # every generator finished its ramp (or exited)
        local k
        for ((k = 0; k < procs; k++)); do
            kill -0 "${pids[$k]}" 2>/dev/null || continue
            tail -n 1 "$j.$k.err" 2>/dev/null | awk -v n=$(((n + k) / procs)) '{for (i = 1; i < NF; i++) {if ($i == "ok") o = $(i + 1); if ($i == "failed") f = $(i + 1)}}
                END {exit !(o + f >= n)}' || return 1
        done
    }
    wait_for $((n / 20 + 300)) "$n sessions" ramped
    sleep 5
    mem=$(server_mem)
    wait "${pids[@]}"
    sum() { local k t=0 v; for ((k = 0; k < procs; k++)); do v=$(jget "$j.$k.json" "$1"); [[ $v =~ ^[0-9.]+$ ]] && t=$(calc %.0f "$t + $v"); done; echo $t; }
    M_EST=$(sum established); M_DTLS=$(sum dtls_up); M_DROP=$(sum dropped_while_held)
    M_RAMP=$(for ((k = 0; k < procs; k++)); do jget "$j.$k.json" ramp_seconds; done | sort -g | tail -n 1)
    M_PSS=$(echo "$base $mem" | awk -v e="$M_EST" '{if (e + 0 > 0) printf "%.1f", ($4 - $1) / e; else print "-"}')
    M_RSS=$(echo "$base $mem" | awk -v e="$M_EST" '{if (e + 0 > 0) printf "%.1f", ($5 - $2) / e; else print "-"}')
    M_TOTAL=$(echo "$mem" | awk '{printf "%.0f", $1 / 1024}')
    M_PROCS=$(echo "$mem" | awk '{print $3}')
    M_ERR=$(for ((k = 0; k < procs; k++)); do jget "$j.$k.json" errors; done | tr '\n' ' ' | cut -c1-200)
    log "  $SERVER idle $tag: $n $ch sessions asked, established $M_EST, dtls $M_DTLS, dropped $M_DROP, ramp ${M_RAMP}s, PSS ${M_TOTAL} MiB in $M_PROCS processes, $M_PSS KiB/session ${M_ERR:+errors: $M_ERR}"
}

# idle_runs PREFIX RUNS...: one fresh server and one idle_run per N:channel.
idle_runs() {
    local prefix=$1 run n ch
    shift
    for run in "$@"; do
        n=${run%:*}; ch=${run#*:}
        stop_server; start_server "$SERVER"
        idle_run "$n" "$ch" $((20 + n / 200)) "$prefix$n$ch"
        put "${prefix}_est.$run" "$M_EST/$n"; put "${prefix}_dtls.$run" "$M_DTLS"; put "${prefix}_dropped.$run" "$M_DROP"
        put "${prefix}_ramp.$run" "$M_RAMP"; put "${prefix}_pss.$run" "$M_PSS"; put "${prefix}_rss.$run" "$M_RSS"
        put "${prefix}_total.$run" "$M_TOTAL"
    done
}

# load_run CHANNEL(dtls|cstp) MBIT PATTERN(echo|up|down) -> figures
load_run() {
    local ch=$1 mbit=$2 pat=$3 flag=() j c0 c1 tx rx key
    [[ $ch == dtls ]] && flag=(--dtls)
    key=$ch.$mbit.$pat
    j=$WORK/load.$SERVER.$key.json
    c0=$(server_cpu)
    loadgen throughput $(T_ARGS cheapuser) --sessions "$LOAD_SESSIONS" --seconds "$LOAD_SECONDS" \
        --rate-mbit "$mbit" --pacing "$LOAD_PACING" --pattern "${pat/tcpup/tcp-up}" --sink "$SINK" --threads "$LOAD_THREADS" "${flag[@]}" > "$j" 2> "$j.err" ||
        log "  load run reported failures: $(jget "$j" errors)"
    c1=$(server_cpu)
    tx=$(jget "$j" tx_bytes); rx=$(jget "$j" rx_bytes)
    put "load_tx.$key" "$(jget "$j" tx_gbit_s)"
    put "load_rx.$key" "$(jget "$j" rx_gbit_s)"
    put "load_cpu_gb.$key" "$(calc %.2f "($c1 - $c0) / (($tx + $rx) / 1e9 + 1e-12)")"
}
part_load() {
    local ch
    for ch in dtls cstp; do
        load_run $ch "$LOAD_MBIT" echo
        load_run $ch 0 up
        load_run $ch 0 down
    done
}
# TCP segments, one stream per session, unpaced upload: what the server's
# GRO into the TUN merges.
part_tcpload() {
    local ch
    for ch in dtls cstp; do load_run $ch 0 tcpup; done
}

# openconnect over DTLS; ping the server's tunnel address idle, then while
# the paced loadgen runs through other sessions.
rtt() { # ping output -> "p50 p99"
    awk '/time=/ {sub(/.*time=/, ""); print $1 + 0}' |
        sort -g | awk '{v[NR] = $1} END {if (!NR) {print "- -"; exit} printf "%.3f %.3f\n", v[int((NR + 1) / 2)], v[int(NR * 0.99 + 0.999)]}'
}
part_ping() {
    local tun net o lg
    ip netns exec "$NS_C" openconnect --user cheapuser --passwd-on-stdin --servercert "$PIN" \
        --script "$WORK/vpnc-script" --interface cmpt0 "https://$SRV_IP:$(port_of "$SERVER")/" \
        <<< "$PASSWORD" > "$WORK/oc.$SERVER.log" 2>&1 &
    CLIENT_PID=$!
    wait_for 30 "openconnect" grep -qE 'DTLS (connected|established)' "$WORK/oc.$SERVER.log" || { tail "$WORK/oc.$SERVER.log" >&2; return 1; }
    [[ $SERVER == ocserv ]] && net=10.160. || net=10.128.
    tun=$(ip -n "$NS_S" -o -4 addr show | awk '{sub(/\/.*/, "", $4); print $4}' | grep -F "$net" | head -n 1)
    sleep 1
    o=$(ip netns exec "$NS_C" ping -c 100 -i 0.01 -W 2 "$tun" 2>/dev/null | rtt)
    put rtt_idle_p50 "${o% *}"; put rtt_idle_p99 "${o#* }"
    loadgen throughput $(T_ARGS cheapuser) --sessions "$LOAD_SESSIONS" --seconds 8 --rate-mbit "$LOAD_MBIT" \
        --pacing "$LOAD_PACING" --sink "$SINK" --threads "$LOAD_THREADS" --dtls > "$WORK/ping-load.$SERVER.json" 2>/dev/null &
    lg=$!
    sleep 3
    o=$(ip netns exec "$NS_C" ping -c 200 -i 0.02 -W 2 "$tun" 2>/dev/null | rtt)
    put rtt_load_p50 "${o% *}"; put rtt_load_p99 "${o#* }"
    wait $lg
    kill -INT "$CLIENT_PID" 2>/dev/null; wait "$CLIENT_PID" 2>/dev/null; CLIENT_PID=""
}

# CLIENTS openconnect clients in the client namespace, each pinned to its
# own tunnel by a policy rule on its address, each with one paced UDP
# iperf3 flow to the server namespace (odd ones upload, even ones
# download), and ping through one more tunnel while they run.
part_clients() {
    local i n=$((CLIENTS + 1)) flag=() c0 c1 addr tun net got o pids=() ipids=()
    ((CLIENT_DTLS)) || flag=(--no-dtls)
    for ((i = 1; i <= n; i++)); do
        # The clients and iperf3 stand for other machines: niced, so the
        # server under test gets the CPU it asks for, as it would there.
        ip netns exec "$NS_C" nice -n 19 openconnect "${flag[@]}" --user cheapuser --passwd-on-stdin --servercert "$PIN" \
            --script "$WORK/vpnc-script" --interface "cmpc$i" "https://$SRV_IP:$(port_of "$SERVER")/" \
            <<< "$PASSWORD" > "$WORK/oc$i.$SERVER.log" 2>&1 &
        pids+=($!)
    done
    for ((i = 1; i <= n; i++)); do
        if ((CLIENT_DTLS)); then
            wait_for 60 "openconnect $i" grep -qE 'DTLS (connected|established)' "$WORK/oc$i.$SERVER.log" || { tail "$WORK/oc$i.$SERVER.log" >&2; break; }
        else
            wait_for 60 "openconnect $i" grep -q 'Configured as' "$WORK/oc$i.$SERVER.log" || { tail "$WORK/oc$i.$SERVER.log" >&2; break; }
        fi
        wait_for 10 "cmpc$i up" ip -n "$NS_C" -4 addr show dev "cmpc$i" scope global
        addr=$(ip -n "$NS_C" -o -4 addr show dev "cmpc$i" | awk '{sub(/\/.*/, "", $4); print $4; exit}')
        ip -n "$NS_C" rule add from "$addr" table $((1000 + i)) 2>/dev/null
        ip -n "$NS_C" route replace default dev "cmpc$i" table $((1000 + i))
        eval "ADDR_$i=$addr"
    done
    [[ $SERVER == ocserv ]] && net=10.160. || net=10.128.
    tun=$(ip -n "$NS_S" -o -4 addr show | awk '{sub(/\/.*/, "", $4); print $4}' | grep -F "$net" | head -n 1)
    for ((i = 1; i < n; i++)); do
        ip netns exec "$NS_S" nice -n 19 iperf3 -s -1 -p $((5200 + i)) > /dev/null 2>&1 &
    done
    sleep 1
    c0=$(server_cpu)
    for ((i = 1; i < n; i++)); do
        local r=(); ((i % 2)) || r=(-R)
        eval "addr=\$ADDR_$i"
        ip netns exec "$NS_C" nice -n 19 timeout $((CLIENT_SECONDS + 20)) iperf3 -c "$tun" -p $((5200 + i)) -B "$addr" -u \
            -b "${CLIENT_MBIT}M" -l 1200 -t "$CLIENT_SECONDS" "${r[@]}" -J > "$WORK/iperf$i.$SERVER.json" 2>&1 &
        ipids+=($!)
    done
    sleep 2
    eval "addr=\$ADDR_$n"
    o=$(ip netns exec "$NS_C" nice -n 19 ping -I "$addr" -c $(((CLIENT_SECONDS - 4) * 50)) -i 0.02 -W 2 "$tun" 2>/dev/null | rtt)
    put clients_rtt_p50 "${o% *}"; put clients_rtt_p99 "${o#* }"
    wait "${ipids[@]}"
    c1=$(server_cpu)
    # Received bytes, as the receiving end counted them (iperf3's UDP "sum").
    got=0
    for ((i = 1; i < n; i++)); do
        b=$(jq -r '.end.sum.bytes // 0' "$WORK/iperf$i.$SERVER.json" 2>/dev/null || echo 0)
        l=$(jq -r '.end.sum.lost_percent // 100' "$WORK/iperf$i.$SERVER.json" 2>/dev/null || echo 100)
        got=$(calc %.0f "$got + $b * (100 - $l) / 100")
    done
    local sent
    sent=$(calc %.0f "$CLIENTS * $CLIENT_MBIT * 1e6 / 8 * $CLIENT_SECONDS")
    put clients_delivered "$(calc %.3f "$got / $sent")"
    put clients_cpu_gb "$(calc %.2f "($c1 - $c0) / ($got / 1e9 + 1e-12)")"
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    for ((i = 1; i <= n; i++)); do ip -n "$NS_C" rule del table $((1000 + i)) 2>/dev/null; done
    pkill -f "iperf3 -s -1 -p 52" 2>/dev/null
}

# ------------------------------------------------------------ run
ip netns exec "$NS_S" "$LOADGEN" sink --listen "$SINK" > "$WORK/sink.log" 2>&1 &
SINK_PID=$!
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Timed parts first for every server; the session-holding parts after,
# because tearing down ocserv's thousands of workers and TUN devices keeps
# the kernel busy for minutes (memory figures do not mind, timings would).
for s in $SERVERS; do
    log "== $s: timed parts"
    start_server "$s"
    has_part login && part_login
    has_part connect && part_connect
    has_part load && part_load
    has_part tcpload && part_tcpload
    has_part ping && part_ping
    has_part clients && part_clients
    stop_server
    if has_part certlogin; then
        CONF=-cert start_server "$s"
        part_certlogin
        stop_server
    fi
done
for s in $SERVERS; do
    log "== $s: sessions held"
    SERVER=$s
    has_part memory && idle_runs mem $MEM_RUNS
    [[ $s == ocserv-uring ]] && has_part hold && idle_runs hold $HOLD_RUNS
    stop_server
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
kill "$SINK_PID" 2>/dev/null; SINK_PID=""

if has_part iperf; then
    log "== iperf3 single flow (perf/compare-throughput.sh, RUNS=$IPERF_RUNS)"
    RUNS=$IPERF_RUNS TSV_OUT=$WORK/iperf.tsv OUT=$OUT OCSERV_URING=$URING "$REPO/perf/compare-throughput.sh" \
        > "$WORK/iperf.log" 2>&1 || log "compare-throughput.sh failed: $(tail -n 3 "$WORK/iperf.log")"
    med() { awk -F'\t' -v c="$1" -v d="$2" '$1 == c && $3 == d {print $4 / 1e9}' "$WORK/iperf.tsv" 2>/dev/null |
        sort -g | awk '{v[NR] = $1} END {if (NR) printf "%.3f", v[int((NR + 1) / 2)]; else print "-"}'; }
    for d in up down; do
        R[iperf_dtls_$d.ocserv]=$(med ocserv-dtls $d); R[iperf_dtls_$d.ocserv-uring]=$(med ocserv-uring-dtls $d)
        R[iperf_cstp_$d.ocserv]=$(med ocserv-cstp $d); R[iperf_cstp_$d.ocserv-uring]=$(med ocserv-uring $d)
    done
fi

# ------------------------------------------------------------ report
row() { # label key unit-note [target]
    local o=${R[$2.ocserv]:--} u=${R[$2.ocserv-uring]:--}
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$o" "$u" "$(ratio "$u" "$o")" "${3:-}"
}
BEGIN_MARK='<!-- perf/compare-ocserv.sh: begin (generated: a new run replaces everything up to the end marker) -->'
END_MARK='<!-- perf/compare-ocserv.sh: end -->'
{
    echo "$BEGIN_MARK"
    cat <<EOF
## ocserv-uring vs ocserv 1.1.6, side by side (perf/compare-ocserv.sh)

Both servers in the same server namespace, one after the other, with the same
certificate, password file and \`mtu = 1400\`, driven by \`ocu-loadgen\`
(perf/loadgen) from a client namespace with eight source addresses. Server
CPU is the CPU time of the server's cgroup (ocserv: main, sec-mod and every
per-session worker, also those that already exited); memory is PSS (and RSS)
summed over the server's processes. Ratio = ocserv-uring ÷ ocserv: below 1
is better for CPU, memory and latency, above 1 for rates. The load generator
and the servers share the $(nproc) CPUs, so rates are what this machine gives
both together.

| Figure | ocserv 1.1.6 | ocserv-uring | ratio | target (issue 4) |
| --- | ---: | ---: | ---: | --- |
EOF
    if has_part login; then
        row "Logins/s, \`\$5\$\` hash, $LOGIN_CONCURRENCY connectors" login_rate.hashuser
        row "Server CPU ms per login, \`\$5\$\` hash" login_cpu_ms.hashuser
        row "Logins/s, hash cost out (DES crypt)" login_rate.cheapuser "≥ 10×"
        row "Server CPU ms per login, hash cost out" login_cpu_ms.cheapuser "≤ 0.10"
        row "Login latency p50 / p99 ms, \`\$5\$\`" login_p50.hashuser
        row "  p99" login_p99.hashuser
        row "Logins that succeeded, \`\$5\$\` / DES" login_ok.hashuser
        row "  DES" login_ok.cheapuser
    fi
    if has_part connect; then
        row "Login + CONNECT on a new connection /s (DES)" login_rate.connect
        row "Server CPU ms per login + CONNECT" login_cpu_ms.connect
        row "Login + CONNECT latency p50 / p99 ms" login_p50.connect
        row "  p99" login_p99.connect
        row "Logins + CONNECTs that succeeded" login_ok.connect
    fi
    if has_part certlogin; then
        row "Logins/s, client certificate, no password" login_rate.certuser "≥ 10×"
        row "Server CPU ms per login, certificate" login_cpu_ms.certuser
        row "Login latency p50 / p99 ms, certificate" login_p50.certuser
        row "  p99" login_p99.certuser
        row "Logins that succeeded, certificate" login_ok.certuser
    fi
    if has_part memory; then
        for run in $MEM_RUNS; do
            row "PSS KiB per idle ${run#*:} session, ${run%:*} sessions" "mem_pss.$run" "≤ 49 (50 KB)"
            row "  RSS KiB per session" "mem_rss.$run"
            row "  sessions established" "mem_est.$run"
            row "  ramp seconds" "mem_ramp.$run"
        done
    fi
    if has_part hold; then
        for run in $HOLD_RUNS; do
            row "Most idle ${run#*:} sessions held (ocserv-uring only): established/asked" "hold_est.$run" "100 000"
            row "  DTLS up" "hold_dtls.$run"
            row "  dropped while held" "hold_dropped.$run"
            row "  PSS KiB per session" "hold_pss.$run"
            row "  server PSS MiB in total" "hold_total.$run"
            row "  ramp seconds" "hold_ramp.$run"
        done
    fi
    if has_part load; then
        for ch in dtls cstp; do
            CH=${ch^^}
            row "$CH, $LOAD_SESSIONS sessions × $LOAD_MBIT Mbit/s echoed: Gbit/s up (sent)" "load_tx.$ch.$LOAD_MBIT.echo"
            row "  Gbit/s down (echoed back)" "load_rx.$ch.$LOAD_MBIT.echo"
            row "  server CPU s per GB (up + down)" "load_cpu_gb.$ch.$LOAD_MBIT.echo" "≤ 0.33"
            row "$CH, $LOAD_SESSIONS sessions unpaced upload: Gbit/s" "load_tx.$ch.0.up"
            row "  server CPU s per GB" "load_cpu_gb.$ch.0.up" "≤ 0.33"
            row "$CH, $LOAD_SESSIONS sessions unpaced download: Gbit/s" "load_rx.$ch.0.down"
            row "  server CPU s per GB" "load_cpu_gb.$ch.0.down" "≤ 0.33"
        done
    fi
    if has_part tcpload; then
        for ch in dtls cstp; do
            row "${ch^^}, $LOAD_SESSIONS TCP-like streams unpaced upload: Gbit/s" "load_tx.$ch.0.tcpup"
            row "  server CPU s per GB" "load_cpu_gb.$ch.0.tcpup" "≤ 0.33"
        done
    fi
    if has_part iperf; then
        row "iperf3 single flow via openconnect, DTLS, Gbit/s up" iperf_dtls_up "≥ 1"
        row "  down" iperf_dtls_down "≥ 1"
        row "iperf3 single flow, CSTP only, up" iperf_cstp_up "≥ 1"
        row "  down" iperf_cstp_down "≥ 1"
    fi
    if has_part clients; then
        chan=DTLS; ((CLIENT_DTLS)) || chan=CSTP
        row "$CLIENTS openconnect clients ($chan) × $CLIENT_MBIT Mbit/s paced UDP iperf3 (half up, half down): share delivered" clients_delivered
        row "  server CPU s per GB delivered" clients_cpu_gb "≤ 0.33 (issue 19)"
        row "  ping RTT ms through another tunnel during the load, p50" clients_rtt_p50
        row "  p99" clients_rtt_p99
    fi
    if has_part ping; then
        row "Ping RTT ms via openconnect (DTLS), idle, p50" rtt_idle_p50
        row "  p99" rtt_idle_p99
        row "Ping RTT ms under the paced DTLS load, p50" rtt_load_p50
        row "  p99" rtt_load_p99
    fi
    cat <<EOF

How the figures are made:

- Logins: \`ocu-loadgen login --concurrency $LOGIN_CONCURRENCY --count $LOGINS\`
  (TLS 1.3 handshake, XML login, cookie; no CONNECT) after 40 warm-up logins.
  "Hash cost out" logs in a user whose ocpasswd entry is a traditional DES
  crypt(3) hash, which both servers accept and which costs microseconds.
  Certificate logins restart both servers with certificate-only login
  (ocserv \`auth = "certificate"\`, ocserv-uring \`[auth] method =
  "certificate"\`, the user from the CN) and add \`--cert --key\` to the
  load generator: no password hash at all, one client-certificate check.
- Login + CONNECT on a new connection: the DES user, \`--connect
  --fresh-connection\`: the cookie from the login is presented in a CONNECT
  on a second TLS connection (what every reconnect, and a GUI that logs in
  in another process, does), then a DISCONNECT. On ocserv-uring about half
  of these CONNECTs reach the shard that does not own the session and are
  handed to it; on ocserv each goes to sec-mod and main for its cookie.
- Memory: \`ocu-loadgen idle [--dtls] --sessions N --ramp-concurrency 64\`
  (split over several generator processes when one would run out of
  descriptors), PSS of all server processes 5 s after the last session came
  up, minus PSS before the ramp, divided by the sessions established.
- Most sessions held: the same, on ocserv-uring only, with as many sessions
  as asked; the open-file limit of this machine ($NOFILE per process, and no
  CAP_SYS_RESOURCE to raise it) caps one process at about that many TCP
  sessions, half as many with DTLS (one connected UDP socket per client).
- Load: \`ocu-loadgen throughput --sessions $LOAD_SESSIONS --seconds $LOAD_SECONDS --threads $LOAD_THREADS --pattern P\`
  with 1200-byte UDP payloads between the sessions and \`ocu-loadgen sink\`
  in the server namespace: \`echo\` paced at $LOAD_MBIT Mbit/s per session
  (the sink sends each packet back), then unpaced \`up\` (the sink drops
  them) and unpaced \`down\` (the sink sends to each session that asks, as
  fast as its one thread can). CPU per GB divides the server's CPU seconds
  by the bytes that crossed it, both ways.
- TCP-like load: the same with \`--pattern tcp-up\`: 1200-byte TCP segments,
  one stream per session with advancing sequence numbers, to the sink's
  address and port, where an nftables rule in the server namespace drops
  them (no listener, no resets): the packets a server's GRO into the TUN
  can merge.
- Ping: openconnect (DTLS) to each server, \`ping -i 0.01\` ×100 to the
  server's tunnel address idle, and \`ping -i 0.02\` ×200 while the paced
  DTLS load runs through other sessions.
- Clients: $CLIENTS real openconnect clients ($( ((CLIENT_DTLS)) && echo DTLS || echo "CSTP only")) in the
  client namespace, each pinned to its own tunnel by a policy rule on its
  address, each with one \`iperf3 -u -b ${CLIENT_MBIT}M -l 1200 -t $CLIENT_SECONDS\` flow
  (odd ones upload, even ones download, \`-R\`) to an iperf3 server in the
  server namespace: evenly paced packets, as real users send them. Share
  delivered: bytes the receiving ends counted, less iperf3's lost
  percentage, over bytes sent; CPU per GB: the server's CPU seconds over
  the run by GB delivered. Ping: one more client's tunnel, \`-i 0.02\`,
  while the flows run.
- iperf3: perf/compare-throughput.sh (its own section below has the details),
  median of $IPERF_RUNS round(s).

Reproduce: \`sudo PARTS="$PARTS" LOGINS=$LOGINS MEM_RUNS="$MEM_RUNS" HOLD_RUNS="$HOLD_RUNS" perf/compare-ocserv.sh\`

Machine: $(date -u +%Y-%m-%d), $(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo),
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r);
ocserv $(dpkg-query -W -f '${Version}' ocserv 2>/dev/null), openconnect $(dpkg-query -W -f '${Version}' openconnect 2>/dev/null),
ocserv-uring $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet HEAD -- src shards perf/loadgen Cargo.toml Cargo.lock 2>/dev/null || echo "+changes");
open-file limit $NOFILE per process; load average $LOAD_START before, $LOAD_END after.
EOF
    echo "$END_MARK"
} > "$WORK/section.md"

if [[ -f $OUT ]] && grep -qF "$BEGIN_MARK" "$OUT"; then
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v f="$WORK/section.md" '
        $0 == b {while ((getline l < f) > 0) print l; skip = 1; next}
        $0 == e {skip = 0; next}
        !skip' "$OUT" > "$OUT.tmp"
else
    # first run: right after the title, before every other section
    awk -v f="$WORK/section.md" '
        !done && /^<!-- |^## / {while ((getline l < f) > 0) print l; print ""; done = 1}
        {print}
        END {if (!done) {print ""; while ((getline l < f) > 0) print l}}' "$OUT" > "$OUT.tmp"
fi
mv "$OUT.tmp" "$OUT"
FAILED=0
cat "$WORK/section.md" >&2
