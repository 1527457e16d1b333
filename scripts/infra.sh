#!/usr/bin/env bash
# Make shopmesh's dependencies reachable and print `export` lines for them:
#
#   eval "$(scripts/infra.sh postgres redis kafka)"
#
# Each one is, in this order of preference: the one named by DATABASE_URL /
# REDIS_URL / KAFKA_BROKERS when it answers; the one on its standard loopback
# port; for PostgreSQL, Debian's stopped cluster, started; otherwise a private
# one under .work/ (installed first when needed), which is reused next time.
# The private broker is tansu with SQLite storage (.work/tansu/tansu.db): its
# topics, records and consumer offsets survive a restart, as on Kafka.
# Progress goes to stderr. Besides the URLs it exports SHOPMESH_INFRA_STARTED,
# the private ones this run started (so the caller can stop just those).
#
#   eval "$(scripts/infra.sh sentinel)"
#
# instead of `redis`: a private Redis master, one replica and three Sentinels
# on loopback (master set `mymaster`, quick failover), REDIS_URL naming the
# Sentinels, for failover tests. Always private; a fresh set unless all five
# still run.
#
#   scripts/infra.sh stop [postgres] [redis] [sentinel] [kafka]
#
# stops private ones started under .work/ (default: all of them, and any
# service left running by an interrupted `make run`). Nothing else is touched.
#
#   scripts/infra.sh restart postgres|kafka|redis-1|redis-2
#
# stops a private one (if it still runs: a test may have killed it) and starts
# it again on the same port with the same data (redis-1/redis-2: a data node
# of the Sentinel set), for the fault suite.
#
#   SHOPMESH_PRIVATE_INFRA=1   always the private ones: ignore DATABASE_URL,
#                              REDIS_URL, KAFKA_BROKERS and the standard ports
#                              (the fault suite restarts them, so they must be ours)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Version installed when no tansu binary is present (its CLI flags are used below).
TANSU_VERSION=${TANSU_VERSION:-0.6.0}

started=()
keep_port="" # restart: the port the stopped one had, tried first by free_port
private_only() { [[ -n "${SHOPMESH_PRIVATE_INFRA:-}" ]]; }
emit() { printf 'export %s=%q\n' "$1" "$2"; }
redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }
port_file() { printf '%s/pids/%s.port' "$WORK" "$1"; }
saved_port() { local p; p=$(cat "$(port_file "$1")" 2>/dev/null) && [[ "$p" =~ ^[0-9]+$ ]] && printf '%s\n' "$p"; }

# free_port PREFERRED FALLBACK...: print the first port nothing listens on.
# The fallbacks lie below the kernel's ephemeral range (32768 up): a port in it
# can be the local end of an outgoing connection, which no probe sees and
# which makes the server's bind fail (a broker on 59092 did, in CI).
free_port() {
  local p
  for p in ${keep_port:-} "$@"; do port_open 127.0.0.1 "$p" || { printf '%s\n' "$p"; return 0; }; done
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
        alt="/var/tmp/shopmesh-pg-$(printf '%s' "$PG_DIR" | cksum | cut -d' ' -f1)"
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
  # The fault suite's private cluster keeps off the standard port.
  # shellcheck disable=SC2046 # the standard port, unless SHOPMESH_PRIVATE_INFRA
  port=$(free_port $(private_only || echo 5432) 25432 25433 25434)
  step "PostgreSQL: starting the private cluster on 127.0.0.1:$port"
  touch "$log"
  [[ $EUID -eq 0 ]] && chown postgres: "$log"
  run_pg "$bin/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 60 start </dev/null >/dev/null 2>&1 9>&- \
    || { tail -n 20 "$log" >&2; die "PostgreSQL did not start (log: $log)"; }
  pid=$(head -n1 "$data/postmaster.pid")
  printf '%s\n' "$pid" >"$WORK/pids/postgres.pid"
  printf '%s\n' "$port" >"$(port_file postgres)"
  started+=(postgres)
  ok "PostgreSQL: private cluster on 127.0.0.1:$port (pid $pid, log ${WORK#"$SHOPMESH_ROOT/"}/logs/postgres.log)"
}

ensure_postgres() {
  command -v psql >/dev/null || need_apt postgresql-client
  local url=postgres://postgres@127.0.0.1:5432/postgres port
  if [[ -n "${DATABASE_URL:-}" ]] && ! private_only; then
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
  if private_only; then
    start_private_pg
    emit DATABASE_URL "postgres://postgres@127.0.0.1:$(saved_port postgres)/postgres"; return
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
# redis_ok URL: Redis at URL answers PING. For a Sentinel URL (fred's form,
# redis-sentinel://[auth@]host:port?sentinelServiceName=NAME&node=…, e.g. from
# `scripts/infra.sh sentinel`): the master its first Sentinel names.
redis_ok() {
  local url=$1 rest auth="" sentinel ip port
  if [[ "$url" == redis-sentinel://* ]]; then
    rest=${url#redis-sentinel://}
    [[ "$rest" == *@* ]] && { auth="${rest%%@*}@"; rest=${rest#*@}; }
    sentinel=${rest%%[/?]*}
    [[ "$url" =~ [?\&]sentinelServiceName=([^\&]+) && "$sentinel" == *:* ]] || return 1
    read -r ip port < <(redis_at "${sentinel##*:}" -h "${sentinel%:*}" \
      SENTINEL get-master-addr-by-name "${BASH_REMATCH[1]}" | tr '\n' ' ')
    [[ -n "${port:-}" ]] || return 1
    url="redis://$auth$ip:$port"
  fi
  [[ "$(timeout 3 redis-cli -u "$url" ping 2>/dev/null)" == PONG ]]
}
# redis_at PORT ARGS...: redis-cli on 127.0.0.1:PORT (a later -h wins).
redis_at() { timeout 3 redis-cli -h 127.0.0.1 -p "$1" "${@:2}" 2>/dev/null; }

ensure_redis() {
  command -v redis-cli >/dev/null || need_apt redis-tools
  local url=redis://127.0.0.1:6379 port pid
  if [[ -n "${REDIS_URL:-}" ]] && ! private_only; then
    if redis_ok "$REDIS_URL"; then
      ok "Redis: REDIS_URL ($(redact "$REDIS_URL"))"; emit REDIS_URL "$REDIS_URL"; return
    fi
    warn "Redis: REDIS_URL ($(redact "$REDIS_URL")) does not answer; looking further"
  fi
  if pidfile_pid redis redis-server >/dev/null && port=$(saved_port redis) && redis_ok "redis://127.0.0.1:$port"; then
    ok "Redis: private server on 127.0.0.1:$port (already running)"
    emit REDIS_URL "redis://127.0.0.1:$port"; return
  fi
  if ! private_only && redis_ok "$url"; then ok "Redis: 127.0.0.1:6379"; emit REDIS_URL "$url"; return; fi

  command -v redis-server >/dev/null || need_apt redis-server
  # shellcheck disable=SC2046 # the standard port, unless SHOPMESH_PRIVATE_INFRA
  port=$(free_port $(private_only || echo 6379) 26379 26380 26381)
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

# ========================================================== Redis Sentinel ===
# Redis as the chart's production values run it (helm/shopmesh/values-production.yaml:
# Sentinel, master set `mymaster`), on loopback for failover tests: a master,
# one replica and three Sentinels (quorum 2), each under .work/sentinel/<node>/
# with its config file, so a test can restart a node it killed. redis-1 starts
# as the master and redis-2 as its replica; after a failover, ask a Sentinel.
SENTINEL_DIR="$WORK/sentinel"
SENTINEL_MASTER_SET=mymaster
SENTINEL_NODES=(redis-1 redis-2 sentinel-1 sentinel-2 sentinel-3)
# Quick failover for tests (Sentinel's defaults are 30 s and 3 min): the master
# is down after 1 s without an answer; a failover that stalls is retried
# after 2 × 3 s.
SENTINEL_DOWN_AFTER_MS=1000
SENTINEL_FAILOVER_TIMEOUT_MS=3000

# free_ports COUNT FROM: COUNT ports from FROM up that nothing listens on, on
# one line. Below the kernel's ephemeral range (32768 up), so no outgoing
# connection takes the port of a node a test has killed and restarts.
free_ports() {
  local want=$1 port=$2 found=()
  while ((${#found[@]} < want)); do
    ((port < 32768)) || die "no $want free ports between $2 and 32767"
    port_open 127.0.0.1 "$port" || found+=("$port")
    port=$((port + 1))
  done
  printf '%s\n' "${found[*]}"
}

# sentinel_node_pid NODE: the pid of NODE of the set, when it runs.
sentinel_node_pid() {
  local port
  port=$(saved_port "sentinel/$1") || return 1
  pidfile_pid "sentinel/$1" "127.0.0.1:$port"
}

# sentinels_agree: the three Sentinels name the same master, each sees the
# other two (`ckquorum`: a failover can be authorised) and one replica; prints
# the master's port.
sentinels_agree() {
  local node port addr master="" fields
  for node in sentinel-1 sentinel-2 sentinel-3; do
    port=$(saved_port "sentinel/$node") || return 1
    addr=$(redis_at "$port" SENTINEL get-master-addr-by-name "$SENTINEL_MASTER_SET" | tr '\n' ' ')
    [[ "$addr" =~ ^127\.0\.0\.1\ ([0-9]+)\ $ ]] || return 1
    [[ -z "$master" || "$master" == "${BASH_REMATCH[1]}" ]] || return 1
    master=${BASH_REMATCH[1]}
    [[ "$(redis_at "$port" SENTINEL ckquorum "$SENTINEL_MASTER_SET")" == "OK 3 usable"* ]] || return 1
    fields=" $(redis_at "$port" SENTINEL master "$SENTINEL_MASTER_SET" | tr '\n' ' ')"
    [[ "$fields" == *" flags master "* && "$fields" == *" num-slaves 1 "* ]] || return 1
  done
  printf '%s\n' "$master"
}

sentinel_url() {
  local s1 s2 s3
  s1=$(saved_port sentinel/sentinel-1) && s2=$(saved_port sentinel/sentinel-2) \
    && s3=$(saved_port sentinel/sentinel-3) || return 1
  # fred's form (Config::from_url): the first Sentinel as the host, the others as `node`.
  printf 'redis-sentinel://127.0.0.1:%s?sentinelServiceName=%s&node=127.0.0.1:%s&node=127.0.0.1:%s\n' \
    "$s1" "$SENTINEL_MASTER_SET" "$s2" "$s3"
}

# start_sentinel_node NODE PORT [CONFIG LINE...]: writes NODE's config and starts
# it (a Sentinel when NODE is sentinel-*), until it answers PING.
start_sentinel_node() {
  local node=$1 port=$2 dir="$SENTINEL_DIR/$1" conf bin=redis-server
  shift 2
  [[ "$node" == sentinel-* ]] && bin=redis-sentinel
  mkdir -p "$dir"
  conf="$dir/$node.conf"
  {
    printf 'bind 127.0.0.1\nport %s\ndaemonize yes\n' "$port"
    printf 'pidfile "%s"\nlogfile "%s"\ndir "%s"\n' \
      "$WORK/pids/sentinel/$node.pid" "$WORK/logs/sentinel/$node.log" "$dir"
    printf '%s\n' "$@"
  } >"$conf"
  "$bin" "$conf" </dev/null >/dev/null 2>&1 9>&- || die "$node did not start (log: $WORK/logs/sentinel/$node.log)"
  for _ in $(seq 1 50); do redis_ok "redis://127.0.0.1:$port" && return 0; sleep 0.1; done
  tail -n 20 "$WORK/logs/sentinel/$node.log" >&2
  die "$node did not answer on 127.0.0.1:$port"
}

ensure_sentinel() {
  command -v redis-cli >/dev/null || need_apt redis-tools
  local node url master list ports=() i
  local running=1
  for node in "${SENTINEL_NODES[@]}"; do sentinel_node_pid "$node" >/dev/null || running=""; done
  if [[ -n "$running" ]] && master=$(sentinels_agree) && url=$(sentinel_url); then
    ok "Redis Sentinel: private set already running (master 127.0.0.1:$master)"
    emit REDIS_URL "$url"; return
  fi
  stop_sentinel # what is left of an earlier set

  command -v redis-server >/dev/null || need_apt redis-server
  command -v redis-sentinel >/dev/null || need_apt redis-sentinel
  list=$(free_ports ${#SENTINEL_NODES[@]} 16380)
  read -r -a ports <<<"$list"
  step "Redis Sentinel: starting a private master, replica and three Sentinels on 127.0.0.1:${ports[0]}-${ports[4]}"
  # Fresh: a Sentinel rewrites its config with what it learnt (replicas,
  # other Sentinels, epochs), which must not leak into a new set.
  rm -rf "$SENTINEL_DIR"
  mkdir -p "$WORK/pids/sentinel" "$WORK/logs/sentinel"
  for i in "${!SENTINEL_NODES[@]}"; do
    printf '%s\n' "${ports[$i]}" >"$(port_file "sentinel/${SENTINEL_NODES[$i]}")"
  done
  started+=(sentinel) # from here on, a failure stops what was started

  # No 5 s wait for more replicas before a full sync; an append-only file, so
  # a killed node restarted by a test comes back with its data.
  local persistence=("appendonly yes" "repl-diskless-sync-delay 0")
  start_sentinel_node redis-1 "${ports[0]}" "${persistence[@]}"
  start_sentinel_node redis-2 "${ports[1]}" "${persistence[@]}" "replicaof 127.0.0.1 ${ports[0]}"
  for _ in $(seq 1 100); do
    [[ "$(redis_at "${ports[1]}" INFO replication)" == *"master_link_status:up"* ]] && break
    sleep 0.2
  done
  [[ "$(redis_at "${ports[1]}" INFO replication)" == *"master_link_status:up"* ]] \
    || die "redis-2 did not sync with redis-1 within 20 s (logs: $WORK/logs/sentinel/)"
  for i in 2 3 4; do
    start_sentinel_node "${SENTINEL_NODES[$i]}" "${ports[$i]}" \
      "sentinel monitor $SENTINEL_MASTER_SET 127.0.0.1 ${ports[0]} 2" \
      "sentinel down-after-milliseconds $SENTINEL_MASTER_SET $SENTINEL_DOWN_AFTER_MS" \
      "sentinel failover-timeout $SENTINEL_MASTER_SET $SENTINEL_FAILOVER_TIMEOUT_MS" \
      "sentinel parallel-syncs $SENTINEL_MASTER_SET 1"
  done
  # Sentinels find each other through the master's hello channel (every 2 s).
  for _ in $(seq 1 150); do master=$(sentinels_agree) && break; sleep 0.2; done
  master=$(sentinels_agree) || die "the Sentinels did not agree on a master within 30 s (logs: $WORK/logs/sentinel/)"
  url=$(sentinel_url)
  ok "Redis Sentinel: master 127.0.0.1:$master, replica 127.0.0.1:${ports[1]}, Sentinels 127.0.0.1:${ports[2]},${ports[3]},${ports[4]} (data ${SENTINEL_DIR#"$SHOPMESH_ROOT/"}, logs ${WORK#"$SHOPMESH_ROOT/"}/logs/sentinel/)"
  emit REDIS_URL "$url"
}

# restart_sentinel_node NODE: SIGTERM a data node of the Sentinel set (when it
# runs) and start it again from its config, which Sentinel keeps up to date (a
# former master comes back as a replica of the new one).
restart_sentinel_node() {
  local node=$1 pid port conf="$SENTINEL_DIR/$1/$1.conf"
  port=$(saved_port "sentinel/$node") && [[ -f "$conf" ]] || die "no Sentinel set under $WORK"
  if pid=$(sentinel_node_pid "$node"); then
    step "Redis Sentinel: stopping $node (pid $pid)"
    stop_pid "$pid" 30
  fi
  step "Redis Sentinel: starting $node on 127.0.0.1:$port"
  redis-server "$conf" </dev/null >/dev/null 2>&1 9>&- || die "$node did not start (log: $WORK/logs/sentinel/$node.log)"
  for _ in $(seq 1 50); do redis_ok "redis://127.0.0.1:$port" && return 0; sleep 0.1; done
  die "$node did not answer on 127.0.0.1:$port"
}

stop_sentinel() {
  local node pid
  # Sentinels first, so stopping the master starts no failover.
  for node in sentinel-1 sentinel-2 sentinel-3 redis-2 redis-1; do
    if pid=$(sentinel_node_pid "$node"); then
      step "Redis Sentinel: stopping $node (pid $pid)"
      stop_pid "$pid" 30
    fi
    rm -f "$WORK/pids/sentinel/$node.pid" "$(port_file "sentinel/$node")"
  done
}

# ========================================================= Kafka protocol ===
# tansu_sqlite BIN: BIN was built with the SQLite storage engine (`tansu
# --help` ends with e.g. "Storage engines: dynostore, libsql").
tansu_sqlite() {
  local help
  help=$(cd / && "$1" --help 2>&1) || return 1
  grep -qE '^Storage engines:.*\blibsql\b' <<<"$help"
}

# tansu_bin: a tansu with the SQLite engine, `tansu` on PATH or cargo's;
# installs (or reinstalls, e.g. an older build without it) when there is none.
tansu_bin() {
  local b cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu" without=""
  for b in "$(command -v tansu 2>/dev/null)" "$cargo_bin"; do
    [[ -n "$b" && -x "$b" ]] || continue
    tansu_sqlite "$b" && { printf '%s\n' "$b"; return 0; }
    without=$b
  done
  if [[ -n "$without" ]]; then
    step "Kafka: $without has no SQLite storage engine; reinstalling tansu $TANSU_VERSION with it (15 minutes or more; 85 on a 2-core machine busy with builds)"
  else
    step "Kafka: installing the tansu broker (cargo install tansu $TANSU_VERSION: 15 minutes or more; 85 on a 2-core machine busy with builds)"
  fi
  # dynostore: the memory:// and s3:// engines; libsql: sqlite://.
  cargo install tansu --version "$TANSU_VERSION" --locked --force --features dynostore,libsql </dev/null >&2 9>&- \
    || die "cargo install tansu failed"
  tansu_sqlite "$cargo_bin" || die "$cargo_bin has no SQLite storage engine after cargo install"
  printf '%s\n' "$cargo_bin"
}

brokers_ok() { # first host:port of a comma-separated list answers
  local first=${1%%,*}
  first=${first#*://}
  [[ "$first" == *:* ]] || return 1
  port_open "${first%:*}" "${first##*:}"
}

ensure_kafka() {
  local port pid
  if [[ -n "${KAFKA_BROKERS:-}" ]] && ! private_only; then
    if brokers_ok "$KAFKA_BROKERS"; then ok "Kafka: KAFKA_BROKERS ($KAFKA_BROKERS)"; emit KAFKA_BROKERS "$KAFKA_BROKERS"; return; fi
    warn "Kafka: KAFKA_BROKERS ($KAFKA_BROKERS) does not answer; looking further"
  fi
  if pid=$(pidfile_pid tansu tansu) && port=$(saved_port tansu) && port_open 127.0.0.1 "$port"; then
    if pid_alive "$pid" sqlite://; then
      ok "Kafka: private tansu broker on 127.0.0.1:$port (already running)"
    else # started by an older infra.sh
      warn "Kafka: private tansu broker on 127.0.0.1:$port (already running, in-memory storage; \`scripts/infra.sh stop kafka\` to restart it with SQLite)"
    fi
    emit KAFKA_BROKERS "127.0.0.1:$port"; return
  fi
  if ! private_only && port_open 127.0.0.1 9092; then ok "Kafka: 127.0.0.1:9092"; emit KAFKA_BROKERS 127.0.0.1:9092; return; fi
  start_kafka
  emit KAFKA_BROKERS "127.0.0.1:$(saved_port tansu)"
}

start_kafka() {
  local port pid bin data="$WORK/tansu" log="$WORK/logs/tansu.log"
  bin=$(tansu_bin)
  # shellcheck disable=SC2046 # the standard port, unless SHOPMESH_PRIVATE_INFRA
  port=$(free_port $(private_only || echo 9092) 29092 29093 29094)
  step "Kafka: starting a private tansu broker on 127.0.0.1:$port (SQLite storage in ${data#"$SHOPMESH_ROOT/"})"
  mkdir -p "$data"
  # tansu reads a .env from its working directory or the nearest parent that
  # has one (e.g. a developer's in the repo): this empty one ends the search.
  [[ -e "$data/.env" ]] || printf '# stops tansu looking for a .env further up\n' >"$data/.env"
  {
    printf '\n--- %s: (cd %s && %s broker --listener-url tcp://127.0.0.1:%s --advertised-listener-url tcp://127.0.0.1:%s --storage-engine sqlite://tansu.db)\n' \
      "$(date -Is)" "$data" "$bin" "$port" "$port"
  } >>"$log"
  # Own session, so a Ctrl-C meant for `make run` does not reach it directly.
  # The database path of a sqlite:// URL is relative to the working directory.
  (cd "$data" && exec setsid "$bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine sqlite://tansu.db </dev/null >>"$log" 2>&1 9>&-) &
  pid=$!
  printf '%s\n' "$pid" >"$WORK/pids/tansu.pid"
  printf '%s\n' "$port" >"$(port_file tansu)"
  wait_for_port 127.0.0.1 "$port" 60 "$pid" || { tail -n 20 "$log" >&2; die "tansu did not start (log: $log)"; }
  started+=(kafka)
  ok "Kafka: private tansu broker on 127.0.0.1:$port (pid $pid, data ${data#"$SHOPMESH_ROOT/"}/tansu.db, log ${log#"$SHOPMESH_ROOT/"})"
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
  (($#)) || set -- services kafka sentinel redis postgres
  for what in "$@"; do
    case $what in
      services) stop_services ;;
      postgres | redis | sentinel | kafka) "stop_$what" ;;
      *) die "unknown: $what (want postgres, redis, sentinel, kafka or services)" ;;
    esac
  done
  exit 0
fi

if [[ "${1:-}" == restart ]]; then
  (($# == 2)) || die "usage: $0 restart postgres|kafka|redis-1|redis-2"
  case $2 in
    postgres)
      keep_port=$(saved_port postgres) || die "no private PostgreSQL was started under $WORK"
      stop_postgres
      start_private_pg
      ;;
    kafka)
      keep_port=$(saved_port tansu) || die "no private tansu was started under $WORK"
      stop_kafka
      start_kafka
      ;;
    redis-1 | redis-2)
      restart_sentinel_node "$2"
      ;;
    *) die "usage: $0 restart postgres|kafka|redis-1|redis-2" ;;
  esac
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

usage="usage: $0 [postgres] [redis|sentinel] [kafka]   |   $0 stop [postgres] [redis] [sentinel] [kafka] [services]"
(($#)) || die "$usage"
for what in "$@"; do
  case $what in postgres | redis | sentinel | kafka) ;; *) die "unknown: $what; $usage" ;; esac
done
[[ " $* " == *" redis "*" sentinel "* || " $* " == *" sentinel "*" redis "* ]] \
  && die "redis and sentinel both set REDIS_URL: pick one"
for what in "$@"; do "ensure_$what"; done
emit SHOPMESH_INFRA_STARTED "${started[*]}"
