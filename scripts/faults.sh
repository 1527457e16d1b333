#!/usr/bin/env bash
# `make faults`: faults under load, then the books are audited by code.
#
# Everything runs in a world of its own under .work/faults/, beside any
# `make run`: a private PostgreSQL, Redis under Sentinel (a master, a replica
# and three Sentinels on loopback, as the chart's production values run it), a
# private tansu broker with SQLite storage, and the platform (scripts/run.sh
# with RESTART=on-failure and port offset 500: the gateway on :8580). loadgen
# drives the shop mix (browse, search, cart, checkout) through the gateway
# while the faults below strike one after another. After each one a probe
# shopper (signed in, with an item in the cart) reads its orders until it gets
# an answer again: that is the "serves again after" column. Then the load
# stops and `loadgen audit` checks the services' databases until the books
# settle (every order terminal, money, stock, outboxes, events applied once;
# loadgen/src/audit.rs lists the invariants) or fails naming what is wrong.
#
#   scripts/faults.sh           every fault (make faults), about 6 minutes
#   scripts/faults.sh quick     the fast slice `make test` runs: SIGKILL svc-order,
#                               svc-payment and svc-inventory mid-checkout, restart
#                               the broker
#
# Faults (the quick slice is marked *):
#   * SIGKILL svc-order, * SIGKILL svc-payment, * SIGKILL svc-inventory: run.sh
#     starts them again after 1 s, as Kubernetes would
#   restart PostgreSQL (fast shutdown: every connection is cut)
#   restart the Redis master (SIGTERM, started again at once)
#   * restart the broker (its SQLite data is kept)
#   SIGKILL the Redis master: Sentinel fails over to the replica; the probe's
#   session and cart must survive; the old master comes back as a replica
#
#   PROFILE=release      release binaries (default: debug, what make test builds)
#   SKIP_BUILD=1         use the binaries already in target/<profile>/
#   FAULTS_RATE=24       mix arrivals per second
#   FAULTS_GAP=12        seconds of load between two faults
#   FAULTS_SETTLE=180s   how long the audit waits for the books to settle
#   FAULTS_KEEP=1        leave the world running afterwards, to look around
#   FAULTS="kill:order restart:kafka"   these faults instead (names as below:
#                        kill:order|payment|inventory, restart:postgres|redis-master|kafka,
#                        failover:redis)
#
# Results: .work/faults/results/<time>.md (and loadgen's JSON beside it).
set -euo pipefail
# The fault suite's own .work: its servers, data, logs and pid files.
SHOPMESH_WORK="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)/.work/faults"
export SHOPMESH_WORK
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHOPMESH_ROOT"

mode=${1:-all}
case $mode in all | quick) ;; *) die "usage: $0 [quick]" ;; esac
# Debug builds every target, as `make test` does: the same features, so the
# tests' build is reused instead of rebuilding dependencies for the binaries.
case "${PROFILE:-debug}" in
  release) build_flags=(--release --bins) profile_dir=release ;;
  debug | dev) build_flags=(--all-targets) profile_dir=debug ;;
  *) die "PROFILE must be debug or release, got '$PROFILE'" ;;
esac
BIN_DIR="${CARGO_TARGET_DIR:-$SHOPMESH_ROOT/target}/$profile_dir"
RATE=${FAULTS_RATE:-24}
GAP=${FAULTS_GAP:-12}
SETTLE=${FAULTS_SETTLE:-180s}
[[ "$RATE" =~ ^[0-9]+$ && "$GAP" =~ ^[0-9]+$ ]] || die "FAULTS_RATE and FAULTS_GAP must be whole numbers"

OFFSET=500
# gRPC ports from 20551, below the kernel's ephemeral range (32768 up): at
# 50551 a busy machine's outgoing connections sometimes held one ("Address
# already in use"). HTTP and metrics ports (8580, 9600…) are below it already.
export SHOPMESH_GRPC_BASE=20051
HTTP="http://127.0.0.1:$((8080 + OFFSET))"
PIDS="$WORK/pids/offset-$OFFSET"
# gRPC address of a service (order, payment…), as run.sh recorded it.
grpc_addr() { cat "$PIDS/svc-$1.addr"; }

RESULTS="$WORK/results"
mkdir -p "$RESULTS"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report="$RESULTS/$stamp.md"
failures=()
rows=()

# ------------------------------------------------------------ stopping ---
run_pid="" load_pid=""
cleanup() {
  local rc=$?
  trap '' INT TERM
  [[ -n "$load_pid" ]] && kill -TERM "$load_pid" 2>/dev/null
  if [[ -n "${FAULTS_KEEP:-}" ]]; then
    info "FAULTS_KEEP: the world is still running (gateway $HTTP); scripts/faults.sh stops it next time, or: SHOPMESH_WORK=$WORK scripts/infra.sh stop"
    exit "$rc"
  fi
  if [[ -n "$run_pid" ]] && kill -0 "$run_pid" 2>/dev/null; then
    kill -TERM "$run_pid" 2>/dev/null
    wait "$run_pid" 2>/dev/null || true
  fi
  "$SHOPMESH_ROOT/scripts/infra.sh" stop >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build ---
command -v curl >/dev/null || need_apt curl ca-certificates
command -v jq >/dev/null || need_apt jq
need_build_deps
if [[ -z "${SKIP_BUILD:-}" ]]; then
  step "cargo build --workspace ${build_flags[*]}"
  cargo build --workspace "${build_flags[@]}"
fi

# ---------------------------------------------------------------- world ---
# What an earlier run left: stopped, and a fresh broker log and databases.
"$SHOPMESH_ROOT/scripts/infra.sh" stop >/dev/null 2>&1 || true
rm -rf "$WORK/tansu"
step "a private PostgreSQL, Redis Sentinel set and broker under ${WORK#"$SHOPMESH_ROOT/"}"
infra=$(SHOPMESH_PRIVATE_INFRA=1 "$SHOPMESH_ROOT/scripts/infra.sh" postgres sentinel kafka)
eval "$infra"
psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'shop\_%\_$OFFSET'" |
  while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE \"$db\" WITH (FORCE)"; done

step "the platform (scripts/run.sh, RESTART=on-failure, gateway $HTTP; log ${WORK#"$SHOPMESH_ROOT/"}/logs/run.log)"
RESTART=on-failure SHOPMESH_PORT_OFFSET=$OFFSET SKIP_BUILD=1 HEALTH_TIMEOUT=300 \
  DATABASE_URL="$DATABASE_URL" REDIS_URL="$REDIS_URL" KAFKA_BROKERS="$KAFKA_BROKERS" \
  "$SHOPMESH_ROOT/scripts/run.sh" </dev/null >"$WORK/logs/run.log" 2>&1 &
run_pid=$!
deadline=$((SECONDS + 600))
until curl -fsS -o /dev/null --max-time 2 "$HTTP/readyz" 2>/dev/null; do
  kill -0 "$run_pid" 2>/dev/null || { tail -n 40 "$WORK/logs/run.log" >&2; die "the platform did not start"; }
  ((SECONDS < deadline)) || { tail -n 40 "$WORK/logs/run.log" >&2; die "the gateway was not ready within 600 s"; }
  sleep 1
done
ok "the platform is up"

# ----------------------------------------------------------- the probe ---
# call METHOD PATH [JSON]: the probe shopper's REST call; prints the body,
# fails on anything but 2xx.
token=""
call() {
  local args=(-fsS --max-time 5 -X "$1" "$HTTP$2" -H 'content-type: application/json')
  [[ -n "$token" ]] && args+=(-H "authorization: Bearer $token")
  [[ -n "${3:-}" ]] && args+=(--data "$3")
  curl "${args[@]}"
}
probe_email="faults-probe-$stamp@example.com"
answer=$(call POST /v1/auth:register \
  "{\"email\":\"$probe_email\",\"password\":\"correct horse battery\",\"displayName\":\"Fault Probe\"}") \
  || die "the probe shopper could not register"
token=$(jq -er .tokens.accessToken <<<"$answer") || die "no access token in: $answer"
product=$(call GET '/v1/products?page_size=50' | jq -er '[.products[] | select((.availableQuantity // "0" | tonumber) > 5)][0].id') \
  || die "no product to put in the probe's cart"
# The profile is created from an event: retry while it is on its way.
for _ in $(seq 1 60); do call POST /v1/carts/mine/items "{\"productId\":\"$product\",\"quantity\":1}" >/dev/null && break; sleep 0.5; done
cart_has_item() { call GET /v1/carts/mine | jq -e --arg p "$product" '[.lines[]? | select(.productId == $p)] | length == 1' >/dev/null; }
cart_has_item || die "the probe's cart does not hold its item"
serving() { call GET '/v1/orders?page_size=1' >/dev/null 2>&1; }
serving || die "the probe cannot list its orders"
ok "probe shopper signed in, one item in its cart"

# ------------------------------------------------------------ the load ---
faults=()
if [[ -n ${FAULTS:-} ]]; then
  read -r -a faults <<<"$FAULTS"
elif [[ $mode == quick ]]; then
  faults=(kill:order kill:payment kill:inventory restart:kafka)
else
  faults=(kill:order kill:payment kill:inventory restart:postgres restart:redis-master restart:kafka failover:redis)
fi
for fault in "${faults[@]}"; do
  case $fault in
    kill:order | kill:payment | kill:inventory | restart:postgres | restart:redis-master | restart:kafka | failover:redis) ;;
    *) die "unknown fault '$fault' in FAULTS" ;;
  esac
done
lead=15
duration=$((lead + ${#faults[@]} * GAP + 10))
loadgen="$BIN_DIR/loadgen"
step "loadgen: the mix at $RATE/s for ${duration}s, ${#faults[@]} faults ${GAP}s apart after ${lead}s"
"$loadgen" run --target mix --rate "$RATE" --duration "${duration}s" --warmup 0s \
  --http-url "$HTTP" --users 24 --products 500 --timeout 10s --order-timeout 120s \
  --watch-pids-dir "$PIDS" --json "$RESULTS/$stamp-load.json" --markdown "$RESULTS/$stamp-load.md" \
  >"$WORK/logs/loadgen.log" 2>&1 &
load_pid=$!
# loadgen signs its shoppers in before the first arrival.
for _ in $(seq 1 300); do
  grep -q "shoppers ready" "$WORK/logs/loadgen.log" 2>/dev/null && break
  kill -0 "$load_pid" 2>/dev/null || { cat "$WORK/logs/loadgen.log" >&2; die "loadgen stopped"; }
  sleep 1
done
sleep "$lead"

# ------------------------------------------------------------ the faults ---
now_ms() { date +%s%3N; }
seconds() { printf '%d.%d s' $(($1 / 1000)) $(($1 % 1000 / 100)); }
# serves_again WHAT T0 BACK: wait until the probe reads its orders again, and
# record the time from the fault (T0) and from when what was broken was back
# (BACK: the restarted process SERVING, the restart command done), in ms.
serves_again() {
  local what=$1 t0=$2 back=$3 now
  while ! serving; do
    if (($(now_ms) - t0 > 90000)); then
      failures+=("$what: the platform did not serve the probe again within 90 s")
      rows+=("| $what | $(seconds $((back - t0))) | no answer within 90 s | |")
      return
    fi
    sleep 0.1
  done
  now=$(now_ms)
  rows+=("| $what | $(seconds $((back - t0))) | $(seconds $((now - t0))) | $(seconds $((now > back ? now - back : 0))) |")
  ok "$what: back after $(seconds $((back - t0))), the probe served after $(seconds $((now - t0)))"
}

sentinel_port() { cat "$WORK/pids/sentinel/sentinel-1.port"; }
# master_node: redis-1 or redis-2, whichever Sentinel names the master now.
master_node() {
  local port node
  port=$(redis-cli -p "$(sentinel_port)" SENTINEL get-master-addr-by-name mymaster | tail -n1)
  for node in redis-1 redis-2; do
    [[ "$(cat "$WORK/pids/sentinel/$node.port")" == "$port" ]] && { printf '%s\n' "$node"; return; }
  done
  die "no node of the set is on the master's port $port"
}

for fault in "${faults[@]}"; do
  t0=$(now_ms)
  case $fault in
    kill:*)
      name="svc-${fault#kill:}"
      pid=$(cat "$PIDS/$name.pid")
      step "fault: SIGKILL $name (pid $pid)"
      kill -KILL "$pid"
      # run.sh starts it again; wait for that one to be SERVING, then the probe.
      until [[ "$(cat "$PIDS/$name.pid")" != "$pid" ]]; do sleep 0.1; done
      wait_for_grpc_health "$(grpc_addr "${fault#kill:}")" 60 || failures+=("$name was not SERVING within 60 s of its restart")
      serves_again "SIGKILL $name (run.sh restarts it after 1 s)" "$t0" "$(now_ms)"
      ;;
    restart:postgres)
      step "fault: restart PostgreSQL"
      "$SHOPMESH_ROOT/scripts/infra.sh" restart postgres >/dev/null
      serves_again "restart PostgreSQL (fast shutdown)" "$t0" "$(now_ms)"
      ;;
    restart:redis-master)
      node=$(master_node)
      step "fault: restart the Redis master ($node)"
      "$SHOPMESH_ROOT/scripts/infra.sh" restart "$node" >/dev/null
      serves_again "restart the Redis master" "$t0" "$(now_ms)"
      ;;
    restart:kafka)
      # SIGKILL, as a crash: tansu 0.6 shut down with SIGTERM during produce
      # requests comes back with its SQLite engine panicking on the first
      # idempotent produce (docs/faults.md); Kafka itself needs no such care.
      step "fault: SIGKILL the broker, start it again"
      kill -KILL "$(cat "$WORK/pids/tansu.pid")"
      "$SHOPMESH_ROOT/scripts/infra.sh" restart kafka >/dev/null
      serves_again "SIGKILL the broker, start it again" "$t0" "$(now_ms)"
      ;;
    failover:redis)
      node=$(master_node)
      pid=$(cat "$WORK/pids/sentinel/$node.pid")
      step "fault: SIGKILL the Redis master ($node, pid $pid): Sentinel fails over"
      kill -KILL "$pid"
      # Back: a Sentinel names another master.
      until [[ "$(master_node)" != "$node" ]] || (($(now_ms) - t0 > 60000)); do sleep 0.1; done
      serves_again "SIGKILL the Redis master (Sentinel fails over)" "$t0" "$(now_ms)"
      if cart_has_item; then
        ok "the probe's session and cart survived the failover (new master: $(master_node))"
      else
        failures+=("the probe's session or cart did not survive the Redis failover")
      fi
      "$SHOPMESH_ROOT/scripts/infra.sh" restart "$node" >/dev/null
      ;;
  esac
  sleep "$GAP"
done

step "waiting for loadgen to finish"
wait "$load_pid" || failures+=("loadgen failed (log: ${WORK#"$SHOPMESH_ROOT/"}/logs/loadgen.log)")
load_pid=""
cat "$RESULTS/$stamp-load.md" 2>/dev/null || tail -n 20 "$WORK/logs/loadgen.log"

# ------------------------------------------------------------- the books ---
step "loadgen audit: the books must settle within $SETTLE"
audit_rc=0
"$loadgen" audit --database-url "$DATABASE_URL" --db-suffix "_$OFFSET" --settle "$SETTLE" \
  --json "$RESULTS/$stamp-audit.json" | tee "$WORK/logs/audit.log" || audit_rc=$?
((audit_rc == 0)) || failures+=("the audit found the books out of balance (see above)")

{
  printf '# Fault suite (%s), %s\n\n' "$mode" "$stamp"
  printf 'Mix at %s arrivals/s through the gateway, faults %s s apart, %s build.\n\n' "$RATE" "$GAP" "${PROFILE:-debug}"
  printf '| fault | back after | probe served after | … once back |\n|---|---|---|---|\n'
  printf '%s\n' "${rows[@]}"
  printf '\n## Load\n\n'
  cat "$RESULTS/$stamp-load.md" 2>/dev/null || true
  printf '\n## Audit\n\n```\n'
  cat "$WORK/logs/audit.log"
  printf '```\n'
  if ((${#failures[@]})); then printf '\n## Failures\n\n'; printf -- '- %s\n' "${failures[@]}"; fi
} >"$report"

if ((${#failures[@]})); then
  for f in "${failures[@]}"; do err "$f"; done
  die "fault suite ($mode) FAILED; report: ${report#"$SHOPMESH_ROOT/"}"
fi
ok "fault suite ($mode) passed; report: ${report#"$SHOPMESH_ROOT/"}"
