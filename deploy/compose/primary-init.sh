#!/bin/bash
# Runs once in pg1 when the postgres image initialises an empty data directory: the replication role pg2 and pg3 clone with, and the app's role and database.
set -euo pipefail

# psql variables (:'name') quote the passwords, so no value can break out of the SQL.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  --set=repl_password="$REPLICATION_PASSWORD" --set=app_password="$APP_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH LOGIN REPLICATION PASSWORD :'repl_password';
CREATE ROLE app WITH LOGIN PASSWORD :'app_password';
CREATE DATABASE appdb OWNER app;
SQL

# The image's own hba line ("host all all all scram-sha-256") does not cover replication connections.
# pg_basebackup copies this file to the replicas, so whichever node is promoted later accepts its peers too.
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
