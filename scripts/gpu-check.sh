#!/usr/bin/env bash
# One-shot check on a machine with a GPU and no Rust (scripts/README.md, "gpu-check.sh").
#
#   scripts/gpu-check.sh pack [BUNDLE]        on the build machine: cargo builds the release
#                                             binary, the GPU test binaries and examples/host_path
#                                             and copies them, assets/mnist-subset and this
#                                             script into BUNDLE (default target/gpu-check)
#   BUNDLE/gpu-check.sh [--quick] [--data DIR] [--out DIR] [--adapter NAME]
#                                             on the GPU machine: the GPU tests, `bench --json`
#                                             into OUT (default BUNDLE/results), host_path,
#                                             the default 5-epoch training on DIR (default
#                                             BUNDLE/mnist), then the README row of the new record
#
# --quick (CI runs it on lavapipe): gpu_smoke and two model_gpu tests that use the copied
# binary and subset, the others only listed; `bench --quick`; host_path 5 steps; 1 epoch on
# 5,000 images. Each step has a time limit, cut to what is left of 9 minutes (20 with
# --quick, which software drivers run); a step that outruns it fails the run.
set -euo pipefail

TESTS=(gpu_smoke gpu_ops gpu_conv2d gpu_matmul gpu_matmul_fused gpu_pool_fusion layers model_gpu eval_batch autotune)

if [ "${1:-}" = pack ]; then
    repo=$(cd "$(dirname "$0")/.." && pwd)
    out=${2:-$repo/target/gpu-check}
    cd "$repo"
    args=()
    for t in "${TESTS[@]}"; do args+=(--test "$t"); done
    cargo build --release --bin wgsl-cnn --example host_path
    mkdir -p "$out/tests" "$out/assets"
    # Each test binary's path, from cargo's JSON messages (no jq needed).
    cargo test --release --no-run --message-format=json "${args[@]}" > "$out/build.json"
    for t in "${TESTS[@]}"; do
        exe=$(grep "\"name\":\"$t\"" "$out/build.json" | grep -F '"kind":["test"]' | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
        [ -n "$exe" ] || { echo "error: no test binary for $t in cargo's output" >&2; exit 1; }
        cp "$exe" "$out/tests/$t"
    done
    rm "$out/build.json"
    cp target/release/wgsl-cnn target/release/examples/host_path "$out/"
    cp scripts/gpu-check.sh "$out/"
    rm -rf "$out/assets/mnist-subset"
    cp -r assets/mnist-subset "$out/assets/"
    echo "packed into $out ($(du -sh "$out" | cut -f1)); copy it and the MNIST files to the GPU machine"
    exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
quick=false
data=$here/mnist
out=$here/results
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=true ;;
        --data) data=$2; shift ;;
        --out) out=$2; shift ;;
        --adapter) export WGPU_ADAPTER_NAME=$2; shift ;;
        *) echo "usage: $0 pack [BUNDLE] | $0 [--quick] [--data DIR] [--out DIR] [--adapter NAME]" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$here/wgsl-cnn" ] || { echo "error: $here/wgsl-cnn is missing: run '$0 pack' first and use the bundle's copy" >&2; exit 1; }
[ -d "$data" ] || { echo "error: MNIST directory $data is missing (--data DIR)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=$here/wgsl-cnn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A discrete GPU over a software adapter where both are there; a fresh tuner cache.
export WGPU_POWER_PREF=${WGPU_POWER_PREF:-high}
export WGSL_CNN_CACHE_DIR=$work/cache
export WGSL_CNN_ASSETS_SUBSET=$here/assets/mnist-subset WGSL_CNN_BIN=$bin
start=$SECONDS
budget=540
$quick && budget=1200

# step NAME LIMIT_S COMMAND...: runs it with a time limit (at most what is left of the
# budget) and prints its time.
step() {
    local name=$1 limit=$2 t=$SECONDS left=$((budget - (SECONDS - start)))
    shift 2
    [ "$left" -lt "$limit" ] && limit=$left
    [ "$limit" -gt 0 ] || { echo "FAILED: no time left for $name (budget ${budget} s)" >&2; exit 1; }
    echo "== $name (limit ${limit} s): $*"
    if ! timeout "$limit" "$@"; then
        echo "FAILED: $name after $((SECONDS - t)) s" >&2
        exit 1
    fi
    echo "== $name: $((SECONDS - t)) s"
}

if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
    echo "note: no libvulkan.so.1 (Debian/Ubuntu: apt-get install libvulkan1); wgpu can only try GL"
fi
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
step adapters 60 "$bin" adapters

for t in "${TESTS[@]}"; do
    if $quick && [ "$t" != gpu_smoke ] && [ "$t" != model_gpu ]; then
        step "$t (listed)" 30 "$here/tests/$t" --list
    elif $quick; then
        [ "$t" = model_gpu ] && filter=(--exact lenet5_step_tool_writes_the_same_file_on_both_backends gpu_training_learns_and_checkpoints_evaluate_the_same_on_the_reference) || filter=()
        step "$t" 120 "$here/tests/$t" "${filter[@]}"
    else
        step "$t" 150 "$here/tests/$t"
    fi
done

json=$work/bench.json
if $quick; then
    step bench 120 "$bin" bench --quick --json "$json"
else
    step bench 120 "$bin" bench --json "$json"
fi
adapter=$(grep -m1 '"adapter":' "$json" | cut -d'"' -f4)
backend=$(grep -m1 '"backend":' "$json" | cut -d'"' -f4)
slug=$(printf '%s-%s' "$adapter" "$backend" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
record=$out/$(date -u +%Y-%m-%d)-$slug$($quick && echo -quick).json
cp "$json" "$record"
echo "wrote $record"

if [ -x "$here/host_path" ]; then
    if $quick; then step host_path 60 "$here/host_path" 5; else step host_path 60 "$here/host_path"; fi
fi

if $quick; then
    step "train (1 epoch, 5000 images)" 240 "$bin" train --data-dir "$data" --epochs 1 --limit-train 5000 --save "$work/model.safetensors" --no-progress --no-plots
else
    step "train (5 epochs)" 240 "$bin" train --data-dir "$data" --save "$work/model.safetensors" --no-progress --no-plots --min-accuracy 98
fi

echo
echo "all steps passed in $((SECONDS - start)) s. The README row this record adds (README, \"Benchmark\"):"
"$bin" bench --table "$record" | tail -1
echo "Send $(basename "$record") (it goes into results/) with this output."
