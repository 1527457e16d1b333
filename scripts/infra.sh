#!/usr/bin/env bash
# Make shopmesh's dependencies reachable and print `export` lines for them:
#
#   eval "$(scripts/infra.sh postgres redis kafka)"
#
# Each one is, in this order of preference: the one named by DATABASE_URL /
# REDIS_URL / KAFKA_BROKERS when it answers; the one on its standard loopback
# port; for PostgreSQL, Debian's stopped cluster, started; otherwise a private
# one under .work/ (installed first when needed), which is reused next time.
# Progress goes to stderr. Besides the URLs it exports SHOPMESH_INFRA_STARTED,
# the private ones this run started (so the caller can stop just those).
#
#   scripts/infra.sh stop [postgres] [redis] [kafka]
#
# stops private ones started under .work/ (default: all of them, and any
# service left running by an interrupted `make run`). Nothing else is touched.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Version installed when no tansu binary is present (its CLI flags are used below).
TANSU_VERSION=${TANSU_VERSION:-0.6.0}

started=()
emit() { printf 'export %s=%q\n' "$1" "$2"; }
redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }
port_file() { printf '%s/pids/%s.port' "$WORK" "$1"; }
saved_port() { local p; p=$(cat "$(port_file "$1")" 2>/dev/null) && [[ "$p" =~ ^[0-9]+$ ]] && printf '%s\n' "$p"; }

# free_port PREFERRED FALLBACK: print the first of the two nothing listens on.
free_port() {
  local p
  for p in "$@"; do port_open 127.0.0.1 "$p" || { printf '%s\n' "$p"; return 0; }; done
  die "ports $* are all taken"
}

# Daemons started here must not inherit our stdout (the caller's $(...) would
# never end) nor fd 9 (the lock below).
exec 9>"$WORK/infra.lock"
flock 9

# ============================================================== PostgreSQL ===
PG_DIR="$WORK/pg"
pg_ok() { PGCONNECT_TIMEOUT=3 psql -X -w -q -tA -d "$1" -c 'select 1' >/dev/null 2>&1; }

# run_pg CMD...: run a PostgreSQL server tool as the data folder's owner
# (initdb and pg_ctl refuse to run as root).
run_pg() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_bindir() {
  local d
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
  [[ -n "$d" && -x "$d/initdb" ]] || return 1
  printf '%s\n' "$d"
}

private_pg_pid() { pidfile_pid postgres "-D $(readlink -f "$PG_DIR")"; }

start_private_pg() {
  need_apt postgresql
  local bin port pid data log="$WORK/logs/postgres.log"
  bin=$(pg_bindir) || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  if [[ ! -s "$PG_DIR/PG_VERSION" ]]; then
    step "PostgreSQL: creating a private cluster in ${PG_DIR#"$SHOPMESH_ROOT/"}"
    if [[ $EUID -eq 0 && ! -e "$PG_DIR" ]]; then
      # The postgres user must reach the folder; under e.g. /root it cannot,
      # so the data then lives in /var/tmp and .work/pg points there.
      mkdir -p "$PG_DIR"; chown postgres: "$PG_DIR"
      if ! runuser -u postgres -- test -w "$PG_DIR"; then
        rmdir "$PG_DIR"
        local alt
        alt="/var/tmp/shopmesh-pg-$(printf '%s' "$SHOPMESH_ROOT" | cksum | cut -d' ' -f1)"
        mkdir -p "$alt"; chown postgres: "$alt"
        ln -s "$alt" "$PG_DIR"
        info "the postgres user cannot reach $WORK; data in $alt"
      fi
    fi
    mkdir -p "$PG_DIR"
    [[ $EUID -eq 0 ]] && chown postgres: "$PG_DIR/"
    chmod 700 "$PG_DIR/"
    run_pg "$bin/initdb" -D "$(readlink -f "$PG_DIR")" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >>"$log.init" 2>&1 \
      || { tail -n 20 "$log.init" >&2; die "initdb failed (log: $log.init)"; }
    # TCP on loopback only, no Unix socket (its path could be too long here).
    printf "\n# shopmesh private cluster\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n" \
      >>"$PG_DIR/postgresql.conf"
  fi
  data=$(readlink -f "$PG_DIR")
  if [[ "$data" != "$PG_DIR" ]]; then
    # Data outside .work (see above): the server logs there too.
    ln -sfn "$data/postgres.log" "$log"
    log="$data/postgres.log"
  fi
  port=$(free_port 5432 55432)
  step "PostgreSQL: starting the private cluster on 127.0.0.1:$port"
  touch "$log"
  [[ $EUID -eq 0 ]] && chown postgres: "$log"
  run_pg "$bin/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 60 start </dev/null >/dev/null 2>&1 9>&- \
    || { tail -n 20 "$log" >&2; die "PostgreSQL did not start (log: $log)"; }
  pid=$(head -n1 "$data/postmaster.pid")
  printf '%s\n' "$pid" >"$WORK/pids/postgres.pid"
  printf '%s\n' "$port" >"$(port_file postgres)"
  started+=(postgres)
  ok "PostgreSQL: private cluster on 127.0.0.1:$port (pid $pid, log .work/logs/postgres.log)"
}

ensure_postgres() {
  command -v psql >/dev/null || need_apt postgresql-client
  local url=postgres://postgres@127.0.0.1:5432/postgres port
  if [[ -n "${DATABASE_URL:-}" ]]; then
    if pg_ok "$DATABASE_URL"; then
      ok "PostgreSQL: DATABASE_URL ($(redact "$DATABASE_URL"))"; emit DATABASE_URL "$DATABASE_URL"; return
    fi
    warn "PostgreSQL: DATABASE_URL ($(redact "$DATABASE_URL")) does not answer; looking further"
  fi
  # Our own private cluster, started earlier (on 5432 or the fallback port).
  if private_pg_pid >/dev/null && port=$(saved_port postgres) \
    && pg_ok "postgres://postgres@127.0.0.1:$port/postgres"; then
    ok "PostgreSQL: private cluster on 127.0.0.1:$port (already running)"
    emit DATABASE_URL "postgres://postgres@127.0.0.1:$port/postgres"; return
  fi
  if pg_ok "$url"; then ok "PostgreSQL: 127.0.0.1:5432"; emit DATABASE_URL "$url"; return; fi

  local tries
  for tries in 1 2; do
    # Debian's own cluster, installed but stopped (e.g. no systemd): start it.
    if command -v pg_lsclusters >/dev/null; then
      local ver name port status rest
      while read -r ver name port status rest; do
        [[ "$name" == main && "$status" == down* ]] || continue
        step "PostgreSQL: starting Debian's stopped cluster $ver/main (port $port)"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null >&2 9>&- \
          || { warn "could not start cluster $ver/main"; continue; }
        url="postgres://postgres@127.0.0.1:$port/postgres"
        for _ in 1 2 3 4 5 6 7 8 9 10; do pg_ok "$url" && break; sleep 0.5; done
        if pg_ok "$url"; then ok "PostgreSQL: Debian cluster $ver/main on 127.0.0.1:$port"; emit DATABASE_URL "$url"; return; fi
        warn "cluster $ver/main runs but refuses passwordless TCP as postgres; using a private one"
      done < <(pg_lsclusters --no-header 2>/dev/null)
    fi
    # Installing the server package may create (and on some machines start)
    # Debian's cluster: look once more after it.
    [[ $tries == 1 ]] || break
    dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'install ok installed' && break
    need_apt postgresql
    url=postgres://postgres@127.0.0.1:5432/postgres
    if pg_ok "$url"; then ok "PostgreSQL: 127.0.0.1:5432"; emit DATABASE_URL "$url"; return; fi
  done

  start_private_pg
  emit DATABASE_URL "postgres://postgres@127.0.0.1:$(saved_port postgres)/postgres"
}

stop_postgres() {
  local pid
  pid=$(private_pg_pid) || { rm -f "$WORK/pids/postgres.pid" "$(port_file postgres)"; return 0; }
  step "PostgreSQL: stopping the private cluster (pid $pid)"
  kill -INT "$pid" 2>/dev/null || true # fast shutdown: ends open sessions
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then warn "PostgreSQL still up after 30s; SIGQUIT"; kill -QUIT "$pid" 2>/dev/null || true; fi
  rm -f "$WORK/pids/postgres.pid" "$(port_file postgres)"
}

# =================================================================== Redis ===
redis_ok() { [[ "$(timeout 3 redis-cli -u "$1" ping 2>/dev/null)" == PONG ]]; }

ensure_redis() {
  command -v redis-cli >/dev/null || need_apt redis-tools
  local url=redis://127.0.0.1:6379 port pid
  if [[ -n "${REDIS_URL:-}" ]]; then
    if redis_ok "$REDIS_URL"; then
      ok "Redis: REDIS_URL ($(redact "$REDIS_URL"))"; emit REDIS_URL "$REDIS_URL"; return
    fi
    warn "Redis: REDIS_URL ($(redact "$REDIS_URL")) does not answer; looking further"
  fi
  if pidfile_pid redis redis-server >/dev/null && port=$(saved_port redis) && redis_ok "redis://127.0.0.1:$port"; then
    ok "Redis: private server on 127.0.0.1:$port (already running)"
    emit REDIS_URL "redis://127.0.0.1:$port"; return
  fi
  if redis_ok "$url"; then ok "Redis: 127.0.0.1:6379"; emit REDIS_URL "$url"; return; fi

  command -v redis-server >/dev/null || need_apt redis-server
  port=$(free_port 6379 56379)
  step "Redis: starting a private server on 127.0.0.1:$port"
  mkdir -p "$WORK/redis"
  rm -f "$WORK/pids/redis.pid"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$WORK/redis" --appendonly yes \
    --pidfile "$WORK/pids/redis.pid" --logfile "$WORK/logs/redis.log" </dev/null >/dev/null 2>&1 9>&- \
    || die "redis-server did not start (log: $WORK/logs/redis.log)"
  for _ in $(seq 1 50); do redis_ok "redis://127.0.0.1:$port" && break; sleep 0.1; done
  redis_ok "redis://127.0.0.1:$port" || { tail -n 20 "$WORK/logs/redis.log" >&2; die "Redis did not answer on $port"; }
  for _ in $(seq 1 20); do pid=$(pidfile_pid redis redis-server) && break; sleep 0.1; done
  printf '%s\n' "$port" >"$(port_file redis)"
  started+=(redis)
  ok "Redis: private server on 127.0.0.1:$port (pid ${pid:-?}, data ${WORK#"$SHOPMESH_ROOT/"}/redis)"
  emit REDIS_URL "redis://127.0.0.1:$port"
}

stop_redis() {
  local pid
  pid=$(pidfile_pid redis redis-server) || { rm -f "$WORK/pids/redis.pid" "$(port_file redis)"; return 0; }
  step "Redis: stopping the private server (pid $pid)"
  stop_pid "$pid" 30
  rm -f "$WORK/pids/redis.pid" "$(port_file redis)"
}

# ========================================================= Kafka protocol ===
tansu_bin() {
  local b
  for b in "$(command -v tansu 2>/dev/null)" "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"; do
    [[ -n "$b" && -x "$b" ]] && { printf '%s\n' "$b"; return 0; }
  done
  return 1
}

brokers_ok() { # first host:port of a comma-separated list answers
  local first=${1%%,*}
  first=${first#*://}
  [[ "$first" == *:* ]] || return 1
  port_open "${first%:*}" "${first##*:}"
}

ensure_kafka() {
  local port pid bin log="$WORK/logs/tansu.log"
  if [[ -n "${KAFKA_BROKERS:-}" ]]; then
    if brokers_ok "$KAFKA_BROKERS"; then ok "Kafka: KAFKA_BROKERS ($KAFKA_BROKERS)"; emit KAFKA_BROKERS "$KAFKA_BROKERS"; return; fi
    warn "Kafka: KAFKA_BROKERS ($KAFKA_BROKERS) does not answer; looking further"
  fi
  if pidfile_pid tansu tansu >/dev/null && port=$(saved_port tansu) && port_open 127.0.0.1 "$port"; then
    ok "Kafka: private tansu broker on 127.0.0.1:$port (already running)"
    emit KAFKA_BROKERS "127.0.0.1:$port"; return
  fi
  if port_open 127.0.0.1 9092; then ok "Kafka: 127.0.0.1:9092"; emit KAFKA_BROKERS 127.0.0.1:9092; return; fi

  if ! bin=$(tansu_bin); then
    step "Kafka: installing the tansu broker (cargo install tansu $TANSU_VERSION; about 13 minutes on a cold machine)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore </dev/null >&2 9>&- \
      || die "cargo install tansu failed"
    bin=$(tansu_bin) || die "tansu is not on PATH after cargo install"
  fi
  port=$(free_port 9092 59092)
  step "Kafka: starting a private tansu broker on 127.0.0.1:$port (in-memory storage)"
  {
    printf '\n--- %s: %s broker --listener-url tcp://127.0.0.1:%s --advertised-listener-url tcp://127.0.0.1:%s --storage-engine memory://tansu/\n' \
      "$(date -Is)" "$bin" "$port" "$port"
  } >>"$log"
  # Own session, so a Ctrl-C meant for `make run` does not reach it directly;
  # cwd / so tansu's .env lookup finds nothing of ours.
  (cd / && exec setsid "$bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ </dev/null >>"$log" 2>&1 9>&-) &
  pid=$!
  printf '%s\n' "$pid" >"$WORK/pids/tansu.pid"
  printf '%s\n' "$port" >"$(port_file tansu)"
  wait_for_port 127.0.0.1 "$port" 60 "$pid" || { tail -n 20 "$log" >&2; die "tansu did not start (log: $log)"; }
  started+=(kafka)
  ok "Kafka: private tansu broker on 127.0.0.1:$port (pid $pid, log ${log#"$SHOPMESH_ROOT/"})"
  emit KAFKA_BROKERS "127.0.0.1:$port"
}

stop_kafka() {
  local pid
  pid=$(pidfile_pid tansu tansu) || { rm -f "$WORK/pids/tansu.pid" "$(port_file tansu)"; return 0; }
  step "Kafka: stopping the private tansu broker (pid $pid)"
  stop_pid "$pid" 20
  rm -f "$WORK/pids/tansu.pid" "$(port_file tansu)"
}

# Services and gateway left behind by an interrupted `make run`: SIGTERM to
# all, up to 20 s to drain, then SIGKILL.
stop_services() {
  local f rel name pid pids=() deadline
  for f in "$WORK"/pids/gateway.pid "$WORK"/pids/svc-*.pid "$WORK"/pids/offset-*/*.pid; do
    [[ -f "$f" ]] || continue
    rel=${f#"$WORK/pids/"}
    rel=${rel%.pid}
    name=${rel##*/}
    if pid=$(pidfile_pid "$rel" "$name"); then
      step "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$f"
  done
  deadline=$((SECONDS + 20))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then warn "pid $pid still running after 20 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# ==================================================================== main ===
if [[ "${1:-}" == stop ]]; then
  shift
  (($#)) || set -- services kafka redis postgres
  for what in "$@"; do
    case $what in
      services) stop_services ;;
      postgres | redis | kafka) "stop_$what" ;;
      *) die "unknown: $what (want postgres, redis, kafka or services)" ;;
    esac
  done
  exit 0
fi

# On failure, stop what this run started, so nothing is left half set up.
on_exit() {
  local rc=$?
  if ((rc != 0 && ${#started[@]})); then
    warn "stopping what this run started: ${started[*]}"
    for what in "${started[@]}"; do "stop_$what" || true; done
  fi
}
trap on_exit EXIT

(($#)) || die "usage: $0 [postgres] [redis] [kafka]   |   $0 stop [postgres] [redis] [kafka] [services]"
for what in "$@"; do
  case $what in postgres | redis | kafka) ;; *) die "unknown: $what (want postgres, redis or kafka)" ;; esac
done
for what in "$@"; do "ensure_$what"; done
emit SHOPMESH_INFRA_STARTED "${started[*]}"
