#!/usr/bin/env bash
# Server memory per idle session: ocserv-uring's PSS before and while
# ocu-loadgen holds N idle DTLS sessions, in two network namespaces this
# script creates and removes. (The side-by-side with ocserv belongs to
# perf/compare-ocserv.sh, issue 4.)
#
#   sudo N=1000 perf/idle-memory.sh      # needs target/release/{ocserv-uring,ocu-loadgen}
set -u
R=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-1000}
W=$(mktemp -d /tmp/ocu-mem.XXXXXX)
cd "$W" 
S=memS$$; C=memC$$
cleanup() { pkill -P $$ 2>/dev/null; [[ -n ${SP:-} ]] && kill $SP 2>/dev/null; sleep 0.5; ip netns del $S 2>/dev/null; ip netns del $C 2>/dev/null; }
trap 'cleanup; rm -rf "$W"' EXIT
ip netns add $S; ip netns add $C
ip link add mems$$ netns $S type veth peer name memc$$ netns $C
ip -n $S addr add 10.98.0.1/24 dev mems$$; ip -n $S link set mems$$ up; ip -n $S link set lo up
ip -n $C addr add 10.98.0.2/24 dev memc$$; ip -n $C addr add 10.98.0.3/24 dev memc$$; ip -n $C link set memc$$ up; ip -n $C link set lo up
rm -f ocpasswd; echo test123 | $R/target/release/ocserv-uring passwd -c ocpasswd lg >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem -days 2 -subj /CN=mem 2>/dev/null
PIN=pin-sha256:$(openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)
pss() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0))); done; echo $t; }
tree() { echo $1; pgrep -P $1 | while read c; do tree $c; done; }
measure() { # name port
  sleep 2; local p0=$(pss $(tree $SP))
  ip netns exec $C $R/target/release/ocu-loadgen idle --server https://10.98.0.1:$2/ --user lg --password test123 --servercert $PIN \
     --sessions $N --hold 25 --dtls --source-ips 10.98.0.2,10.98.0.3 --json > $1.json 2> $1.err &
  local LG=$!
  sleep 15; local p1=$(pss $(tree $SP)); local procs=$(tree $SP | wc -l)
  wait $LG
  echo "$1: sessions $N, server processes $procs, PSS before ${p0} KiB, with sessions ${p1} KiB, per session $(( (p1 - p0) / N )) KiB"
  cat "$1.json"; echo
  kill $SP; wait $SP 2>/dev/null; SP=
}
cat > uring.toml <<T
[server]
listen = "10.98.0.1"
tcp_port = 4443
udp_port = 4443
workers = 0
[tls]
cert_file = "$W/cert.pem"
key_file = "$W/key.pem"
[auth]
passwd_file = "$W/ocpasswd"
[network]
device = "memtun"
ipv4_network = "192.168.96.0/20"
[session]
max_clients = 0
T
ip netns exec $S $R/target/release/ocserv-uring --config uring.toml > uring.log 2>&1 & SP=$!
measure ocserv-uring 4443
