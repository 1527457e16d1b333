#!/usr/bin/env bash
# Prove the backup and the restore procedure of docs/deploy.md on a real PostgreSQL:
# the exact scripts the chart ships (helm/shopmesh/files/backup.sh and restore.sh, run
# by the backup CronJob and the restore Job) back up three databases, a "disaster"
# changes them, the restore brings every row back and keeps the damaged copies aside.
# Also: a backup whose checksums fail restores nothing, and retention prunes old backups.
#
#   scripts/db-backup-restore-test.sh
#
# PostgreSQL comes from scripts/infra.sh (DATABASE_URL when it answers, the local server,
# or a private one under .work). The test works in databases named rt<pid>_* and drops
# them at the end; nothing else on the server is touched.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SHOPMESH_ROOT"

FILES="$SHOPMESH_ROOT/helm/shopmesh/files"
prefix="rt$$"
dbs="${prefix}_order ${prefix}_payment ${prefix}_user"
tmp=$(mktemp -d)
checks=0

unset SHOPMESH_INFRA_STARTED
eval "$("$SHOPMESH_ROOT/scripts/infra.sh" postgres)"
admin_url=$DATABASE_URL

cleanup() {
  local rc=$?
  for db in $(psql -X -w -At -d "$admin_url" -c "select datname from pg_database where datname like '${prefix}\_%'" 2>/dev/null); do
    psql -X -w -q -d "$admin_url" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
  if [[ -n "${SHOPMESH_INFRA_STARTED:-}" && -z "${SHOPMESH_KEEP_INFRA:-}" ]]; then
    # shellcheck disable=SC2086 # a space-separated list of names
    "$SHOPMESH_ROOT/scripts/infra.sh" stop $SHOPMESH_INFRA_STARTED >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT

# libpq variables from the admin URL, as the CronJob gets them from the chart.
[[ "$admin_url" =~ ^postgres(ql)?://([^:@/]+)(:([^@]*))?@([^:/]+):([0-9]+)/ ]] \
  || die "cannot read user, host and port from DATABASE_URL"
export PGUSER="${BASH_REMATCH[2]}" PGPASSWORD="${BASH_REMATCH[4]}" PGHOST="${BASH_REMATCH[5]}" PGPORT="${BASH_REMATCH[6]}"
export PGSSLMODE=prefer PGCONNECT_TIMEOUT=5

q() { psql -X -w -At -v ON_ERROR_STOP=1 -d "$@"; }
pass() { checks=$((checks + 1)); ok "$*"; }
fail() { err "$*"; exit 1; }

# A fingerprint of everything in a database that a restore must bring back.
fingerprint() {
  q "$1" <<'SQL'
select md5(string_agg(row, '|' order by row)) from (
  select format('%s.%s', table_name, column_name || ':' || data_type) as row
    from information_schema.columns where table_schema = 'public'
  union all select 'orders:' || o::text from orders o
  union all select 'lines:' || l::text from order_lines l
  union all select 'seq:' || last_value::text from orders_id_seq
  union all select 'idx:' || indexname from pg_indexes where schemaname = 'public'
) t
SQL
}

step "seeding ${dbs}"
for db in $dbs; do
  q "$admin_url" -c "CREATE DATABASE \"$db\"" >/dev/null
  q "$db" >/dev/null <<'SQL'
create table orders (
  id bigserial primary key,
  customer text not null,
  total_minor bigint not null check (total_minor >= 0),
  placed_at timestamptz not null default '2025-01-02 03:04:05+00',
  note jsonb
);
create table order_lines (
  order_id bigint not null references orders(id) on delete cascade,
  sku text not null,
  quantity int not null,
  primary key (order_id, sku)
);
create index orders_customer on orders (customer);
insert into orders (customer, total_minor, note)
  select 'customer-' || g, g * 1999, jsonb_build_object('gift', g % 2 = 0, 'text', 'Grüße ✓ ' || g)
  from generate_series(1, 500) g;
insert into order_lines select id, 'SKU-' || (id % 17), (id % 5) + 1 from orders;
SQL
done
declare -A before
for db in $dbs; do before[$db]=$(fingerprint "$db"); done
pass "seeded 3 databases (500 orders, 500 lines each)"

export BACKUP_DIR="$tmp/backups" DATABASES="$dbs" RETENTION_DAYS=14
mkdir -p "$BACKUP_DIR/20000101T000000Z" "$BACKUP_DIR/.incomplete-20000101T000000Z"
touch -d '2000-01-01' "$BACKUP_DIR/.incomplete-20000101T000000Z"

step "backup (helm/shopmesh/files/backup.sh)"
bash "$FILES/backup.sh"
id=$(readlink "$BACKUP_DIR/latest")
[[ "$id" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || fail "latest points at '$id', not a backup id"
for db in $dbs; do [[ -s "$BACKUP_DIR/$id/$db.dump" ]] || fail "no dump of $db"; done
(cd "$BACKUP_DIR/$id" && sha256sum --check --quiet SHA256SUMS) || fail "SHA256SUMS does not match"
[[ ! -e "$BACKUP_DIR/20000101T000000Z" ]] || fail "retention kept a backup from 2000"
[[ ! -e "$BACKUP_DIR/.incomplete-20000101T000000Z" ]] || fail "a stale incomplete backup was left"
pass "backup $id: 3 dumps, checksums, latest link, retention"

step "disaster: rows deleted, a table dropped, rows changed"
q "${prefix}_order" -c "delete from orders where id % 3 = 0" >/dev/null
q "${prefix}_payment" -c "drop table order_lines" >/dev/null
q "${prefix}_user" -c "update orders set total_minor = 0" >/dev/null
for db in $dbs; do
  [[ "$(fingerprint "$db" 2>/dev/null || echo gone)" != "${before[$db]}" ]] || fail "the disaster did not change $db"
done

step "a corrupted backup restores nothing"
cp -r "$BACKUP_DIR/$id" "$tmp/corrupt-copy"
printf 'x' | dd of="$BACKUP_DIR/$id/${prefix}_order.dump" bs=1 seek=200 conv=notrunc status=none
if BACKUP_ID=$id bash "$FILES/restore.sh" >"$tmp/corrupt.log" 2>&1; then
  fail "restore.sh accepted a backup whose checksums fail"
fi
grep -q "fails its checksums" "$tmp/corrupt.log" || fail "restore.sh failed for another reason: $(cat "$tmp/corrupt.log")"
[[ "$(q "$admin_url" -c "select count(*) from pg_database where datname like '${prefix}\_%\_\_%'")" == 0 ]] \
  || fail "restore.sh touched databases before checking the backup"
rm -rf "${BACKUP_DIR:?}/$id"
mv "$tmp/corrupt-copy" "$BACKUP_DIR/$id"
pass "corrupted dump refused before any database changed"

step "restore (helm/shopmesh/files/restore.sh, BACKUP_ID=latest)"
# An open session on a database being replaced must not block the restore.
psql -X -w -q -d "${prefix}_order" -c "select pg_sleep(60)" >/dev/null 2>&1 &
sleeper=$!
sleep 0.5
BACKUP_ID=latest bash "$FILES/restore.sh"
kill "$sleeper" 2>/dev/null || true
wait "$sleeper" 2>/dev/null || true
for db in $dbs; do
  [[ "$(fingerprint "$db")" == "${before[$db]}" ]] || fail "$db differs from its state at backup time"
done
pass "every database equals its state at backup time (schema, rows, sequences, indexes)"
stamp=$(tr '[:upper:]' '[:lower:]' <<<"$id")
[[ "$(q "${prefix}_order__pre_${stamp}" -c "select count(*) from orders")" == 334 ]] \
  || fail "the replaced database was not kept as ${prefix}_order__pre_${stamp}"
pass "replaced databases kept as <db>__pre_${stamp}"

step "restore of one database, dropping the replaced one (DATABASES, KEEP_PREVIOUS=false)"
q "${prefix}_user" -c "truncate orders cascade" >/dev/null
BACKUP_ID=$id DATABASES="${prefix}_user" KEEP_PREVIOUS=false bash "$FILES/restore.sh"
[[ "$(fingerprint "${prefix}_user")" == "${before[${prefix}_user]}" ]] || fail "${prefix}_user not restored"
[[ "$(q "$admin_url" -c "select count(*) from pg_database where datname = '${prefix}_user__pre_${stamp}'")" == 0 ]] \
  || fail "KEEP_PREVIOUS=false kept the replaced database"
pass "single-database restore"

printf 'backup/restore: %d passed, 0 failed\n' "$checks"
