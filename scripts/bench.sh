#!/usr/bin/env bash
# `make bench`: load the gateway of a running local stack (`make run`, ideally
# `PROFILE=release make run`, in another terminal) and print latency percentiles:
#   1. GET /v1/products/{id}   public catalog read
#   2. GET /v1/me              signed-in read: token checked at the gateway and in
#                              svc-user, profile from the Redis cache
#   3. POST /v1/auth:login     Argon2id-bound
# The difference between 1 and 2 is roughly what token checking adds; the
# example `cargo run --release -p gateway --example token_check_bench` times the
# check alone.
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
step "1. GET /v1/products/$id — $connections connections for $duration"
wrk --latency -t 2 -d "$duration" -c "$connections" "$url/v1/products/$id"

BENCH_EMAIL="bench-$(date +%s)-$RANDOM@example.com"
BENCH_PASSWORD="bench passphrase $RANDOM$RANDOM"
export BENCH_EMAIL BENCH_PASSWORD
curl -fsS -X POST "$url/v1/auth:register" -H 'content-type: application/json' \
  -d "{\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\",\"displayName\":\"Bench\"}" >/dev/null \
  || die "cannot register the benchmark user"
token=$(curl -fsS -X POST "$url/v1/auth:login" -H 'content-type: application/json' \
  -d "{\"email\":\"$BENCH_EMAIL\",\"password\":\"$BENCH_PASSWORD\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
# The profile is created asynchronously by svc-auth: wait for it.
for _ in $(seq 50); do
  curl -fsS "$url/v1/me" -H "authorization: Bearer $token" >/dev/null 2>&1 && break
  sleep 0.2
done
step "2. GET /v1/me (bearer token, cached profile) — $connections connections for $duration"
wrk --latency -t 2 -d "$duration" -c "$connections" -H "authorization: Bearer $token" "$url/v1/me"

# 4 connections: svc-auth counts attempts in flight against the per-account limit
# (5), so more concurrent logins of one account would be refused with 429.
step "3. POST /v1/auth:login — 4 connections for $duration"
wrk --latency -t 2 -d "$duration" -c 4 -s "$SHOPMESH_ROOT/scripts/bench-login.lua" "$url/v1/auth:login"
