#!/usr/bin/env bash
# Builds the `ballot` image (default tag ballot:local, or $BALLOT_IMAGE) without pulling
# anything: static binaries from the host's toolchain, copied into a FROM scratch image.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${BALLOT_IMAGE:-ballot:local}"
target=x86_64-unknown-linux-gnu

# crt-static links glibc into the binaries, so they run in an empty image. An explicit
# --target keeps these flags away from build scripts and proc macros (and from the
# ordinary target/release build). RUSTFLAGS replaces .cargo/config.toml's flags, so its
# poly1305 cfg (the fast backend for CURVE's sealing, see there) is repeated here.
RUSTFLAGS='-C target-feature=+crt-static --cfg poly1305_force_soft' \
  cargo build --release --locked -q --target "$target" -p ballot-app

# A context of just the two binaries: the repository (target/ is gigabytes) never goes
# to the daemon.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
out_dir="${CARGO_TARGET_DIR:-target}/$target/release"
cp "$out_dir/ballot-node" "$out_dir/ballot" "$ctx/"
# The release profile keeps debug info (for profiling); the image does not need it (~50 MB
# a binary). Skipped where strip is missing.
if command -v strip >/dev/null; then strip --strip-debug "$ctx/ballot-node" "$ctx/ballot"; fi
# Quiet unless it fails (the legacy builder also warns that it is deprecated).
if ! out=$(docker build -t "$image" -f deploy/Dockerfile "$ctx" 2>&1); then
  echo "$out" >&2
  exit 1
fi
echo "built $image"
