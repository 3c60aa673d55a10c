#!/usr/bin/env bash
# Makes sure PostgreSQL runs and that the hub's role (allowed to create the test databases)
# and database exist. Idempotent.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if ! pg_isready -q -h "$PGHOST" -p "$PGPORT"; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 50); do
    pg_isready -q -h "$PGHOST" -p "$PGPORT" && break
    sleep 0.2
  done
fi
admin=(psql -h "$PGHOST" -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
if [[ -z $("${admin[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$LIENTHONG_DB_USER'") ]]; then
  log "creating the PostgreSQL role $LIENTHONG_DB_USER"
  "${admin[@]}" -c "CREATE ROLE \"$LIENTHONG_DB_USER\" LOGIN CREATEDB"
fi
if [[ -z $("${admin[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$LIENTHONG_DB_NAME'") ]]; then
  log "creating the database $LIENTHONG_DB_NAME"
  "${admin[@]}" -c "CREATE DATABASE \"$LIENTHONG_DB_NAME\" OWNER \"$LIENTHONG_DB_USER\""
fi
