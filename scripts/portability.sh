#!/usr/bin/env bash
# Puts every kernel's entry point through the compilers of each backend wgpu targets:
#   Vulkan  naga → SPIR-V 1.0, validated by spirv-val (Vulkan 1.0 rules; subgroup kernels
#           SPIR-V 1.3 under Vulkan 1.1 rules)
#   GL      naga → GLSL ES 3.10 and GLSL 4.30, compiled by glslangValidator
#   Metal   naga → MSL 2.0, 2.4, 3.0: translated only (no Metal compiler runs on Linux)
#   DX12    naga → HLSL SM 5.1 compiled by FXC, SM 6.0 by DXC (Microsoft's DLLs from the npm
#           package `webgpu`, under wine, driven by scripts/dx/hlslc.c as wgpu-hal calls them)
#   WebGPU  every pipeline created on Dawn (npm `webgpu`, Node), on its Vulkan backend
# Kernels that use subgroups (column 5 of kernels.tsv: "subgroups") skip GLSL, MSL 2.0 and
# FXC, whose wgpu backends never offer subgroups (src/gpu/translate.rs SUBGROUP_TARGETS).
# Needs: spirv-tools glslang-tools wine64 gcc-mingw-w64-x86-64 nodejs npm (see .ci/run), and
# a Vulkan driver for Dawn. Fails on the first stage with any failure; prints counts per
# stage and the time each took. Usage: scripts/portability.sh [out dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-target/portability}")
WEBGPU_NPM=${WEBGPU_NPM:-webgpu@0.6.2}
rm -rf "$out"
mkdir -p "$out"
t=$SECONDS
stage() { echo "== $1 ($((SECONDS - t)) s so far)"; }

stage "naga translation"
cargo run --release -q --example translate -- "$out/src"
n=$(wc -l < "$out/src/kernels.tsv")
[ "$n" -gt 0 ] || { echo "no kernels listed" >&2; exit 1; }
# kernels without subgroups (every target), and with them
core=$(awk -F'\t' '$5 == "core"' "$out/src/kernels.tsv" | wc -l)
sub=$(awk -F'\t' '$5 == "subgroups"' "$out/src/kernels.tsv" | wc -l)
[ $((core + sub)) = "$n" ] || { echo "kernels.tsv: column 5 is neither core nor subgroups" >&2; exit 1; }

# expect <what> <want> <got>: fail loudly unless every one passed.
expect() {
    echo "$1: $3 of $2"
    [ "$2" = "$3" ] || { echo "error: $1: $3 of $2 passed" >&2; exit 1; }
}

stage "SPIR-V: spirv-val"
ok=0
while IFS=$'\t' read -r file entry _ _ kind; do
    env=vulkan1.0
    [ "$kind" = subgroups ] && env=vulkan1.1
    f="$out/src/$file.$entry.spv"
    spirv-val --target-env $env "$f" && ok=$((ok + 1)) || echo "FAIL $f"
done < "$out/src/kernels.tsv"
expect "SPIR-V validated" "$n" "$ok"

stage "GLSL: glslangValidator"
ok=0
for f in "$out"/src/*.es310.comp "$out"/src/*.gl430.comp; do
    glslangValidator -S comp "$f" > "$out/glslang.log" 2>&1 && ok=$((ok + 1)) || { echo "FAIL $f"; cat "$out/glslang.log"; }
done
expect "GLSL compiled (ES 3.10 + 4.30)" "$((2 * core))" "$ok"

stage "MSL: translated only"
ok=$(find "$out/src" -name '*.metal' -size +0 | wc -l)
expect "MSL translated (2.0, 2.4, 3.0; no Metal compiler here)" "$((3 * core + 2 * sub))" "$ok"

stage "npm $WEBGPU_NPM (Dawn, FXC and DXC DLLs)"
npm install -s --no-save --no-audit --no-fund --prefix "$out/npm" "$WEBGPU_NPM" > /dev/null
dist="$out/npm/node_modules/webgpu/dist/win32-x64"

stage "DX12: FXC (SM 5.1) and DXC (SM 6.0) under wine"
mkdir -p "$out/dx"
cp "$dist/d3dcompiler_47.dll" "$dist/dxcompiler.dll" "$out/dx/"
x86_64-w64-mingw32-gcc -O2 -Wall -Werror -o "$out/dx/hlslc.exe" scripts/dx/hlslc.c
: > "$out/dx/jobs.txt"
# the 4th column: the entry point as naga named it in HLSL (what wgpu passes the compiler)
while IFS=$'\t' read -r file entry _ hlsl_entry kind; do
    [ "$kind" = subgroups ] || echo "fxc $out/src/$file.$entry.sm51.hlsl $hlsl_entry" >> "$out/dx/jobs.txt"
    echo "dxc $out/src/$file.$entry.sm60.hlsl $hlsl_entry" >> "$out/dx/jobs.txt"
done < "$out/src/kernels.tsv"
wine=/usr/lib/wine/wine64
[ -x "$wine" ] || wine=wine64
# no Mono or Gecko prompts: the compilers need neither
export WINEPREFIX="$out/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
(cd "$out/dx" && "$wine" ./hlslc.exe jobs.txt 2> wine.log | tee hlslc.log) || true
ok=$(grep -ac '^ok ' "$out/dx/hlslc.log" || true)
grep -aB8 '^FAIL' "$out/dx/hlslc.log" || true
expect "HLSL compiled (FXC + DXC)" "$((core + n))" "$ok"

stage "WebGPU: Dawn creates every pipeline"
node scripts/dawn/pipelines.mjs "$out/src" "$out/npm" > "$out/dawn.log" 2>&1 || { cat "$out/dawn.log"; exit 1; }
ok=$(grep -c '^ok dawn ' "$out/dawn.log" || true)
grep -a "^Dawn adapter\|^Dawn subgroups" "$out/dawn.log"
expect "Dawn pipelines" "$n" "$ok"

echo "== portability: $n entry points through every stage in $((SECONDS - t)) s"
