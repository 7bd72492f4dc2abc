#!/usr/bin/env bash
# One prepared run for a machine with a GPU, so the minutes it is available
# go to measuring: build, list the adapters (with the kernel tuning each
# gets), then for each model the kernel tests' exactness on the adapter,
# `wgkv bench` (prefill, decode at depth 0 and 4096, JSON) and the profile
# (per-kernel time and weight GB/s). Everything lands in $OUT (default
# ./gpu-out); merge it with the lavapipe figures afterwards:
#   wgkv bench --compare docs/bench-lavapipe-models.json gpu-out/bench-*.json
# usage: scripts/gpu-bench.sh [MODEL...]   (names from `wgkv models`, or paths;
#        default: the three named models, each skipped if not cached)
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
export WGKV_REQUIRE_GPU=1
log() { echo "== $*" | tee -a "$out/log.txt"; }

log "build"
cargo build --release --bin wgkv 2>&1 | tail -1 | tee -a "$out/log.txt" || exit 1
bin=target/release/wgkv
log "devices"
"$bin" devices | tee "$out/devices.txt"
"$bin" devices --json > "$out/devices.json"

log "kernel exactness on this adapter"
timeout 600 cargo test --release --test kernel_linear --test kernel_attention 2>&1 | grep -E "test result|FAILED|panicked" | tee "$out/kernel-tests.txt"

models=("$@")
[ ${#models[@]} -eq 0 ] && models=(smollm2-135m qwen2.5-coder-0.5b gemma-3-270m)
for m in "${models[@]}"; do
  tag=$(basename "$m" .gguf)
  if [ ! -e "$m" ] && ! "$bin" models | grep -q "^$m .* cached"; then
    log "skip $m (not cached and not a path)"
    continue
  fi
  log "bench $m"
  timeout 900 "$bin" --model "$m" bench -p 512 -n 128 --depth 0,4096 -r 3 --kv 'full;quest:budget=512' \
    --json "$out/bench-$tag.json" 2>&1 | tee "$out/bench-$tag.txt"
  log "profile $m"
  timeout 600 "$bin" --model "$m" bench -p 512 -n 1 --depth 0,4096 -r 1 --kv full --profile \
    2>&1 | tee "$out/profile-$tag.txt"
done
log "done: $out"
