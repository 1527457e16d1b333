#!/usr/bin/env bash
# Restore shopmesh databases from a backup made by backup.sh. Stop the services first
# (docs/deploy.md, "Restore a backup").
#
# Each database is restored into <db>__restoring in one transaction and only then swapped
# in; the database it replaces is kept as <db>__pre_<backup id> until you drop it.
# Nothing is touched unless every file matches SHA256SUMS.
#
# Connection: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE (the user needs CREATEDB).
#   BACKUP_DIR      where the backups live (required)
#   BACKUP_ID       a backup id (e.g. 20250102T023000Z) or "latest" (required)
#   DATABASES       space-separated subset; default: every database in the backup
#   KEEP_PREVIOUS   "false" drops the replaced database instead of keeping it
set -euo pipefail

: "${BACKUP_DIR:?BACKUP_DIR: where the backups live}"
: "${BACKUP_ID:?BACKUP_ID: the backup to restore (an id, or latest)}"
KEEP_PREVIOUS=${KEEP_PREVIOUS:-true}

log() { printf '%s restore: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
sql() { psql -X -w -q -v ON_ERROR_STOP=1 --dbname=postgres "$@"; }
# "does not exist, skipping" notices are expected, not news.
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

dir="$BACKUP_DIR/$BACKUP_ID"
[[ -d "$dir" ]] || die "no backup $BACKUP_ID in $BACKUP_DIR"
id=$(basename -- "$(readlink -f -- "$dir")")
[[ "$id" =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || die "$dir does not look like a backup (id $id)"
[[ -f "$dir/SHA256SUMS" ]] || die "$dir has no SHA256SUMS"
(cd "$dir" && sha256sum --check --strict --quiet SHA256SUMS) || die "backup $id fails its checksums; nothing restored"

if [[ -n "${DATABASES:-}" ]]; then
  dbs=$DATABASES
else
  dbs=$(cd "$dir" && ls -- *.dump | sed 's/\.dump$//' | tr '\n' ' ')
fi
for db in $dbs; do
  [[ -f "$dir/$db.dump" ]] || die "backup $id has no dump of $db"
done

stamp=$(tr '[:upper:]' '[:lower:]' <<<"$id")
log "restoring backup $id: $dbs"
for db in $dbs; do
  tmp="${db}__restoring"
  prev="${db}__pre_${stamp}"
  sql -c "DROP DATABASE IF EXISTS \"$tmp\" WITH (FORCE)"
  sql -c "CREATE DATABASE \"$tmp\""
  pg_restore -w --exit-on-error --single-transaction --no-owner --no-privileges \
    --dbname="$tmp" "$dir/$db.dump"
  exists=$(psql -X -w -At -v ON_ERROR_STOP=1 --dbname=postgres -v db="$db" \
    <<<"select count(*) from pg_database where datname = :'db'")
  if [[ "$exists" == 1 ]]; then
    sql -c "DROP DATABASE IF EXISTS \"$prev\" WITH (FORCE)"
    # FORCE-less rename fails while anything is connected: terminate first.
    sql -v db="$db" >/dev/null \
      <<<"select pg_terminate_backend(pid) from pg_stat_activity where datname = :'db' and pid <> pg_backend_pid()"
    sql -c "ALTER DATABASE \"$db\" RENAME TO \"$prev\""
  fi
  sql -c "ALTER DATABASE \"$tmp\" RENAME TO \"$db\""
  if [[ "$exists" == 1 ]]; then
    if [[ "$KEEP_PREVIOUS" == false ]]; then
      sql -c "DROP DATABASE \"$prev\" WITH (FORCE)"
      log "$db restored (previous database dropped)"
    else
      log "$db restored (previous database kept as $prev)"
    fi
  else
    log "$db restored"
  fi
done
log "done: backup $id restored"
