# Shared by the perf/ scripts (sourced, not run).

# make_cert DIR CN: an ECDSA P-256 certificate and key in DIR/cert.pem and
# DIR/key.pem (key readable by ocserv's unprivileged workers); sets PIN to
# the pin-sha256 that openconnect --servercert and ocu-loadgen take.
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1/key.pem" \
        -out "$1/cert.pem" -subj "/CN=$2" -days 7 2>/dev/null || return 1
    chmod 644 "$1/key.pem"
    PIN=pin-sha256:$(openssl x509 -in "$1/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der |
        openssl dgst -sha256 -binary | base64)
}

# uring_config FILE LISTEN TCP_PORT UDP_PORT DEVICE NETWORK [MTU]: an ocserv-uring
# configuration with the settings every comparison shares (one shard per
# CPU, the certificate and ocpasswd next to FILE, mtu 1400 unless given, no
# bans or login limits, as the ocserv configurations have none).
# BATCH_WAIT_US in the environment sets [server] batch_wait_us (default 500).
# It ends inside [network], so a caller may append more [network] keys,
# then its own [session]. TUN_OFFLOAD=false in the environment turns the
# TUN offloads off (to measure what they bring).
uring_config() {
    local dir
    dir=$(dirname "$1")
    cat > "$1" <<CONF
[server]
listen = "$2"
tcp_port = $3
udp_port = $4
workers = 0
batch_wait_us = ${BATCH_WAIT_US:-500}
[tls]
cert_file = "$dir/cert.pem"
key_file = "$dir/key.pem"
generate_self_signed = false
[auth]
passwd_file = "$dir/ocpasswd"
[security]
# As the ocserv it is compared with (max-ban-score = 0): the load generator
# opens hundreds of sessions at once from a few addresses.
max_ban_score = 0
max_logins_per_address = 0
max_logins_per_shard = 0
[network]
device = "$5"
ipv4_network = "$6"
mtu = ${7:-1400}
tun_offload = ${TUN_OFFLOAD:-true}
CONF
}
