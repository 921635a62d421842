#!/bin/sh
# Build the microvm guest agent (hako-agent) as a static binary and print its path.
# musl when the target is installed (rustup target add x86_64-unknown-linux-musl), else glibc with
# crt-static. Optimized by default (the agent's speed is part of every boot); --debug for a debug
# build. The backend finds the result by itself
# (target/<triple>/<profile>/hako-agent); $HAKO_AGENT overrides.
set -eu
cd "$(dirname "$0")/../../.."
profile=release
flag=--release
if [ "${1:-}" = "--debug" ]; then profile=debug; flag=""; fi
target_dir="${CARGO_TARGET_DIR:-target}"
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    triple=x86_64-unknown-linux-musl
    cargo build -q -p hako-agent --target "$triple" $flag
else
    triple=x86_64-unknown-linux-gnu
    RUSTFLAGS="-C target-feature=+crt-static" cargo build -q -p hako-agent --target "$triple" $flag
fi
echo "$(cd "$target_dir" && pwd)/$triple/$profile/hako-agent"
