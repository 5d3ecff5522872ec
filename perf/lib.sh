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
