#!/bin/bash
# Entrypoint of the compose replicas (pg2, pg3): the first start clones PRIMARY_HOST with pg_basebackup -R (a streaming standby); then the image's own entrypoint runs postgres.
set -euo pipefail
: "${PRIMARY_HOST:?PRIMARY_HOST is not set}" "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD is not set}"

# A data directory that already exists is kept as it is: after a failover this node may follow another
# primary (pgsplit rewrote its primary_conninfo) or be the primary itself, and a restart must not undo that.
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -q -h "$PRIMARY_HOST" -p 5432; do
    echo "replica: waiting for $PRIMARY_HOST to accept connections"
    sleep 1
  done
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  # -R writes standby.signal and primary_conninfo (with these credentials); -X stream copies the WAL written meanwhile.
  # pg_basebackup removes what it wrote if it fails, so the next start tries again from scratch.
  PGPASSWORD="$REPLICATION_PASSWORD" gosu postgres \
    pg_basebackup --host="$PRIMARY_HOST" --port=5432 --username=replicator --pgdata="$PGDATA" \
    --write-recovery-conf --wal-method=stream --checkpoint=fast --progress
fi

exec docker-entrypoint.sh "$@"
