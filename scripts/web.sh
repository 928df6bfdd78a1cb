#!/usr/bin/env bash
# Builds the browser page (the library for wasm32 + WebGPU, and wasm-bindgen's glue into
# web/pkg/) and serves it with `wgsl-cnn serve` (arguments go to serve: --port, --host, …).
# `--build-only` builds and stops. Adds the wasm32 target and the wasm-bindgen CLI pinned to
# the wasm-bindgen in Cargo.lock when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=0
args=()
for a in "$@"; do
    if [ "$a" = --build-only ]; then build_only=1; else args+=("$a"); fi
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
# The CLI must be the exact version of the wasm-bindgen crate the build links.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "installing wasm-bindgen-cli $want (found: ${have:-none})"
    cargo install wasm-bindgen-cli --version "$want"
fi

# A cdylib only for this build: the native library stays an rlib.
cargo rustc --release --lib --target wasm32-unknown-unknown --crate-type cdylib
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/release/wgsl_cnn.wasm
bytes=$(stat -c %s web/pkg/wgsl_cnn_bg.wasm)
gz=$(gzip -9 -c web/pkg/wgsl_cnn_bg.wasm | wc -c)
echo "web/pkg/wgsl_cnn_bg.wasm: $bytes bytes ($gz gzip-compressed)"

if [ "$build_only" = 1 ]; then
    exit 0
fi
exec cargo run --release -- serve "${args[@]}"
