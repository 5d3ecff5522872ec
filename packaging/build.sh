#!/usr/bin/env bash
# Builds the Debian and RPM packages of ocserv-uring into target/packages/:
#
#   bash packaging/build.sh
#
# Installs the packaging tools (pinned versions, `cargo install --locked`)
# when they are missing or at another version, builds the release binary,
# then makes ocserv-uring_VERSION-1_ARCH.deb (cargo-deb) and
# ocserv-uring-VERSION-1.ARCH.rpm (cargo-generate-rpm), both with a stripped
# binary. Safe to run again: it replaces the previous packages. The metadata
# is in Cargo.toml ([package.metadata.deb], [package.metadata.generate-rpm]);
# the files are in packaging/. The last two lines printed are the packages'
# paths.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

say() { echo "build.sh: $*" >&2; }

# cargo SUBCOMMAND --version prints "cargo-deb 3.8.0" / "cargo-generate-rpm 0.21.1".
ensure_tool() {
    local crate=$1 version=$2 sub=${1#cargo-}
    local have
    have=$(cargo "$sub" --version 2>/dev/null | awk '{print $2}') || have=
    if [ "$have" != "$version" ]; then
        say "installing $crate $version${have:+ (found $have)}"
        cargo install --locked --quiet --version "=$version" "$crate"
    fi
}
ensure_tool cargo-deb "$CARGO_DEB_VERSION"
ensure_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

# The version from Cargo.toml: `cargo pkgid` prints ...#ocserv-uring@0.1.0.
version=$(cargo pkgid -p ocserv-uring | sed 's/.*[@#]//')
deb_arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
rpm_arch=$(uname -m)
out=$root/target/packages
deb=$out/ocserv-uring_${version}-1_${deb_arch}.deb
rpm=$out/ocserv-uring-${version}-1.${rpm_arch}.rpm

say "building the release binary"
cargo build --release --locked -p ocserv-uring --bin ocserv-uring

mkdir -p "$out"
rm -f "$out"/ocserv-uring_*.deb "$out"/ocserv-uring-*.rpm

say "building $deb"
# --strip: the release profile keeps debug info (54 MB); the package does not.
cargo deb --no-build --strip --quiet -p ocserv-uring -o "$deb" >/dev/null

say "building $rpm"
# cargo-generate-rpm takes the binary as it is: give it a stripped copy. Its
# --target-dir maps the asset target/release/ocserv-uring to stage/release/.
stage=$out/rpm-stage
rm -rf "$stage"
mkdir -p "$stage/release"
strip --strip-unneeded -o "$stage/release/ocserv-uring" target/release/ocserv-uring
cargo generate-rpm --target-dir "$stage" --auto-req builtin -o "$rpm"
rm -rf "$stage"

test -s "$deb" && test -s "$rpm"
echo "$deb"
echo "$rpm"
