#!/usr/bin/env bash
# `make load`: open-loop load with loadgen against a running local stack
# (`PROFILE=release make run` in another terminal; a debug stack measures the
# debug build). Steps through rates per target and writes the tables to
# .work/load/<timestamp>.md and everything to .work/load/<timestamp>.json:
#   1. grpc:get-product   ProductService/GetProduct straight to svc-product
#   2. rest:product       GET /v1/products/{id} through the gateway
#   3. mix                browse 60 / search 25 / cart 10 / checkout 5 through the gateway
# 1 and 2 are also run against loadgen's bare axum/tonic server (same machine,
# same plan) and reported as real/bare ratios. Peak RSS of every process in
# .work/pids/ is reported per step.
#
#   LOAD_DURATION=20s LOAD_WARMUP=5s                measured time and warm-up per step
#   LOAD_GRPC_STEPS=5000,10000,15000,20000,30000    arrivals/s (or FROM..TO/N)
#   LOAD_REST_STEPS=2000,5000,8000,11000,14000
#   LOAD_MIX_STEPS=250,500,1000,2000
#   LOAD_ARGS='--users 400 --arrivals poisson'       more loadgen options (loadgen help)
#   SHOPMESH_PORT_OFFSET=100                        a stack started with that offset
#
# Only loopback targets: a benchmark of our own servers on this machine.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHOPMESH_ROOT"

offset=${SHOPMESH_PORT_OFFSET:-0}
[[ "$offset" =~ ^[0-9]+$ ]] || die "SHOPMESH_PORT_OFFSET must be a number, got '$offset'"
url="http://127.0.0.1:$((8080 + offset))"
grpc="http://127.0.0.1:$((50053 + offset))"
pids="$WORK/pids"
((offset == 0)) || pids="$WORK/pids/offset-$offset"

curl -fsS -o /dev/null --max-time 5 "$url/readyz" \
  || die "no ready gateway at $url: start the platform with 'PROFILE=release make run' first"

step "cargo build --release -p loadgen"
cargo build --release -p loadgen
loadgen="${CARGO_TARGET_DIR:-$SHOPMESH_ROOT/target}/release/loadgen"

mkdir -p "$WORK/load"
out="$WORK/load/$(date -u +%Y%m%dT%H%M%SZ)"
# shellcheck disable=SC2206 # LOAD_ARGS is meant to split into options
extra=(${LOAD_ARGS:-})
step "loadgen: GetProduct, the gateway's product read and the mix, stepped (results: ${out#"$SHOPMESH_ROOT/"}.md)"
"$loadgen" run \
  --target "grpc:get-product@${LOAD_GRPC_STEPS:-5000,10000,15000,20000,30000}" \
  --target "rest:product@${LOAD_REST_STEPS:-2000,5000,8000,11000,14000}" \
  --target "mix@${LOAD_MIX_STEPS:-250,500,1000,2000}" \
  --duration "${LOAD_DURATION:-20s}" --warmup "${LOAD_WARMUP:-5s}" \
  --http-url "$url" --grpc-url "$grpc" --bare \
  --watch-pids-dir "$pids" \
  --json "$out.json" --markdown "$out.md" \
  "${extra[@]}"
ok "tables: ${out#"$SHOPMESH_ROOT/"}.md  everything: ${out#"$SHOPMESH_ROOT/"}.json"
