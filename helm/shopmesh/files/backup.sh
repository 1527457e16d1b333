#!/usr/bin/env bash
# Dump every shopmesh service database into $BACKUP_DIR/<backup id>/ (custom format,
# one <database>.dump each, with SHA256SUMS), point $BACKUP_DIR/latest at it, and
# delete backups older than $RETENTION_DAYS (never the newest).
#
# Runs in the backup CronJob (postgres image) and in scripts/db-backup-restore-test.sh.
# Connection: the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE.
#   DATABASES       space-separated database names (required)
#   BACKUP_DIR      where backups live (required)
#   RETENTION_DAYS  default 14
set -euo pipefail

: "${DATABASES:?DATABASES: space-separated database names}"
: "${BACKUP_DIR:?BACKUP_DIR: where the backups live}"
RETENTION_DAYS=${RETENTION_DAYS:-14}
[[ "$RETENTION_DAYS" =~ ^[0-9]+$ ]] || { echo "RETENTION_DAYS must be a number of days" >&2; exit 2; }

log() { printf '%s backup: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }

id=$(date -u +%Y%m%dT%H%M%SZ)
work="$BACKUP_DIR/.incomplete-$id"
mkdir -p "$work"
# A failed run leaves no half backup behind.
trap 'rm -rf -- "$work"' EXIT

server=$(psql -X -w -At --dbname=postgres -c 'show server_version')
log "backup $id of PostgreSQL $server on ${PGHOST:-local socket}:${PGPORT:-5432}"
for db in $DATABASES; do
  start=$SECONDS
  pg_dump -w --format=custom --compress=6 --dbname="$db" --file="$work/$db.dump"
  # A dump pg_restore cannot list is no backup.
  pg_restore --list "$work/$db.dump" >/dev/null
  log "$db: $(du -h "$work/$db.dump" | cut -f1) in $((SECONDS - start))s"
done
(cd "$work" && sha256sum -- *.dump >SHA256SUMS)
{
  echo "id=$id"
  echo "server_version=$server"
  echo "databases=$DATABASES"
  echo "pg_dump=$(pg_dump --version)"
} >"$work/BACKUP_INFO"

# Publish atomically: a directory named like a backup id is always complete.
mv -- "$work" "$BACKUP_DIR/$id"
trap - EXIT
ln -sfn -- "$id" "$BACKUP_DIR/latest"
log "done: $BACKUP_DIR/$id"

# Retention, by the id's timestamp; the newest backup always stays.
cutoff=$(date -u -d "-$RETENTION_DAYS days" +%Y%m%dT%H%M%SZ)
for old in "$BACKUP_DIR"/[0-9]*T[0-9]*Z; do
  [[ -d "$old" ]] || continue
  name=${old##*/}
  if [[ "$name" < "$cutoff" && "$name" != "$id" ]]; then
    rm -rf -- "$old"
    log "deleted $name (older than $RETENTION_DAYS days)"
  fi
done
# Leftovers of runs killed mid-dump.
find "$BACKUP_DIR" -mindepth 1 -maxdepth 1 -name '.incomplete-*' -mmin +1440 -exec rm -rf -- {} +
