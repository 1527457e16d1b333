#!/usr/bin/env bash
# `make bench`: load `GET /v1/products/{id}` through the gateway of a running
# local stack (`make run` in another terminal) and print latency percentiles.
#
#   BENCH_DURATION=30s BENCH_CONNECTIONS=32 make bench
#   GATEWAY_URL=http://127.0.0.1:8080 (default)
#
# Only loopback targets: this is a benchmark of our own server on this machine.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHOPMESH_ROOT"

url=${GATEWAY_URL:-http://127.0.0.1:8080}
case $url in
  http://127.* | http://localhost* | http://\[::1\]*) ;;
  *) die "GATEWAY_URL must be a loopback address, got $url" ;;
esac
duration=${BENCH_DURATION:-20s}
connections=${BENCH_CONNECTIONS:-32}

curl -fsS "$url/readyz" >/dev/null 2>&1 || curl -fsS "$url/healthz" >/dev/null \
  || die "no gateway at $url: start the platform with 'make run' first"

need_apt wrk

id=$(curl -fsS "$url/v1/products?page_size=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])')
step "GET /v1/products/$id — $connections connections for $duration"
wrk --latency -t 2 -d "$duration" -c "$connections" "$url/v1/products/$id"
