#!/usr/bin/env bash
# Profile ocserv-uring under a chosen load: `perf record` with call graphs
# while ocu-loadgen drives it, then a flame graph (SVG) and the hottest
# symbols as text. Runs in two network namespaces it creates and deletes.
#
#   sudo perf/record.sh [LOAD]
#
# LOAD (default dtls):
#   dtls | cstp    ocu-loadgen throughput through SESSIONS tunnels, unpaced,
#                  or paced at MBIT Mbit/s per session when MBIT > 0
#   login          ocu-loadgen login, 32 connectors, DES-crypt user (the
#                  password hash left out of the picture)
#   idle           SESSIONS idle DTLS tunnels (DPD, timers, housekeeping)
# Knobs: SESSIONS=4 MBIT=0 DURATION=10 FREQ=499 OUT=perf/profiles
#        THREADS=2 (load generator runtimes: one per CPU spreads the sessions
#        over the shards, since a connection goes to the shard of its CPU)
#
# Output: $OUT/ocserv-uring-LOAD.svg (open in a browser: click to zoom) and
# $OUT/ocserv-uring-LOAD.txt (perf report, self time by symbol, >= 0.3 %). Needs perf
# (Debian: linux-perf) and inferno (cargo install inferno; installed into
# target/tools if cargo is at hand).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$REPO/perf/lib.sh"
LOAD=${1:-dtls}
SESSIONS=${SESSIONS:-4}
MBIT=${MBIT:-0}
DURATION=${DURATION:-10}
FREQ=${FREQ:-499}
THREADS=${THREADS:-2}
OUT=${OUT:-$REPO/perf/profiles}
URING=${OCSERV_URING:-$REPO/target/release/ocserv-uring}
LOADGEN=${OCU_LOADGEN:-$REPO/target/release/ocu-loadgen}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root: sudo $0 $LOAD"
case $LOAD in dtls | cstp | login | idle) ;; *) die "unknown load '$LOAD' (dtls, cstp, login, idle)" ;; esac
command -v perf >/dev/null || die "perf missing (apt-get install linux-perf)"
if ! command -v inferno-flamegraph >/dev/null; then
    export PATH=$REPO/target/tools/bin:$PATH
    if ! command -v inferno-flamegraph >/dev/null; then
        command -v cargo >/dev/null || die "inferno missing: cargo install inferno"
        log "installing inferno into target/tools (once)"
        cargo install --quiet --locked --root "$REPO/target/tools" inferno >&2 || die "cargo install inferno failed"
    fi
fi
if [[ ! -x $URING || ! -x $LOADGEN ]]; then
    (cd "$REPO" && cargo build --release -p ocserv-uring -p ocu-loadgen) >&2 || die "build failed"
fi

NS_S=ocurec-s-$$; NS_C=ocurec-c-$$
WORK=$(mktemp -d /tmp/ocurec.XXXXXX)
SERVER_PID=""; SINK_PID=""; LG_PID=""
cleanup() {
    trap - EXIT INT TERM
    for p in $LG_PID $SINK_PID $SERVER_PID; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for ns in $NS_C $NS_S; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add $NS_S; ip netns add $NS_C
ip link add recs$$ netns $NS_S type veth peer name recc$$ netns $NS_C
ip -n $NS_S addr add 10.81.0.1/24 dev recs$$
ip -n $NS_C addr add 10.81.0.2/24 dev recc$$
for ns in $NS_S $NS_C; do ip -n $ns link set lo up; done
ip -n $NS_S link set recs$$ up; ip -n $NS_C link set recc$$ up

make_cert "$WORK" 10.81.0.1 || die "openssl could not make a certificate"
echo "rec:*:$(perl -e 'print crypt("recpass", "rc")')" > "$WORK/ocpasswd"
uring_config "$WORK/uring.toml" 10.81.0.1 4443 4443 "rectun$$" 10.132.0.0/16
printf '[session]\nmax_clients = 0\n' >> "$WORK/uring.toml"
ip netns exec $NS_S "$URING" --config "$WORK/uring.toml" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
    [[ -n $(ip netns exec $NS_S ss -Hltn 'sport = :4443') ]] && break
    kill -0 $SERVER_PID 2>/dev/null || { cat "$WORK/server.log" >&2; die "server exited"; }
    sleep 0.1
done
ip netns exec $NS_S "$LOADGEN" sink --listen 10.81.0.1:9000 > "$WORK/sink.log" 2>&1 &
SINK_PID=$!

T=(--server https://10.81.0.1:4443/ --user rec --password recpass --servercert "$PIN" --threads "$THREADS")
run_for=$((DURATION + 4))
case $LOAD in
    dtls | cstp)
        flag=(); [[ $LOAD == dtls ]] && flag=(--dtls)
        ip netns exec $NS_C "$LOADGEN" throughput "${T[@]}" --sessions "$SESSIONS" --seconds $run_for \
            --rate-mbit "$MBIT" --sink 10.81.0.1:9000 "${flag[@]}" > "$WORK/load.out" 2>&1 & ;;
    login)
        ip netns exec $NS_C "$LOADGEN" login "${T[@]}" --concurrency 32 --count 100000000 > "$WORK/load.out" 2>&1 & ;;
    idle)
        ip netns exec $NS_C "$LOADGEN" idle "${T[@]}" --sessions "$SESSIONS" --hold $run_for --dtls > "$WORK/load.out" 2>&1 & ;;
esac
LG_PID=$!
sleep 2
kill -0 $LG_PID 2>/dev/null || { cat "$WORK/load.out" >&2; die "the load generator stopped early"; }

log "recording ocserv-uring (pid $SERVER_PID) for ${DURATION}s under '$LOAD' at ${FREQ} Hz"
perf record -q -F "$FREQ" --call-graph dwarf,16384 -p $SERVER_PID -o "$WORK/perf.data" -- sleep "$DURATION" 2>&1 |
    grep -v '^$' >&2 || true
[[ $LOAD == login ]] && kill -INT $LG_PID 2>/dev/null
wait $LG_PID 2>/dev/null || true
LG_PID=""
tail -n 25 "$WORK/load.out" >&2

mkdir -p "$OUT"
name=ocserv-uring-$LOAD
log "rendering $OUT/$name.svg"
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf > "$WORK/folded"
inferno-flamegraph --title "ocserv-uring, load '$LOAD' ($SESSIONS sessions, $(date -u +%F))" \
    < "$WORK/folded" > "$OUT/$name.svg"
cp "$WORK/folded" "$OUT/$name.folded"   # collapsed stacks: grep, or inferno-diff-folded two runs
perf report -i "$WORK/perf.data" --no-children --sort dso,symbol -g none --percent-limit 0.3 --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | sed 's/ *$//' > "$OUT/$name.txt"
log "done: $OUT/$name.svg, $OUT/$name.txt"
head -n 30 "$OUT/$name.txt" >&2
