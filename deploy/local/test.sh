#!/usr/bin/env bash
# The README's test command (and CI's, through .ci/run): starts what the tests need (PostgreSQL,
# the broker), runs the whole suite against them, then removes this run's test databases.
# Each run gets its own databases and topic prefix, so runs never see each other's data.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$LIENTHONG_ROOT"

"$LIENTHONG_ROOT/deploy/local/start-postgres.sh"
"$LIENTHONG_ROOT/deploy/local/start-broker.sh"

# Confluent's own Python client, to prove standard tooling reads what the hub writes.
venv=$LIENTHONG_DATA_DIR/venv
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import confluent_kafka, fastavro' 2>/dev/null; then
  log "installing confluent-kafka for Python into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'confluent-kafka[avro,schemaregistry]==2.16.0'
fi
export LIENTHONG_TEST_PYTHON=${LIENTHONG_TEST_PYTHON:-$venv/bin/python}

export LIENTHONG_TEST_RUN=${LIENTHONG_TEST_RUN:-r$(date +%s)$$}
export LIENTHONG_TEST_KAFKA=${LIENTHONG_TEST_KAFKA:-$KAFKA_HOST:$KAFKA_PORT}
export LIENTHONG_TEST_DATABASE_URL=${LIENTHONG_TEST_DATABASE_URL:-postgres://$LIENTHONG_DB_USER@$PGHOST:$PGPORT/postgres}

drop_run_databases() {
  psql -h "$PGHOST" -p "$PGPORT" -U postgres -qtA -c \
    "SELECT datname FROM pg_database WHERE datname LIKE 'lienthong_${LIENTHONG_TEST_RUN}_%'" |
    while read -r db; do
      [[ -n $db ]] && psql -h "$PGHOST" -p "$PGPORT" -U postgres -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
    done
}
trap drop_run_databases EXIT

cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
# No schema may change incompatibly: compared with the previous commit (no registry runs here).
cargo run --locked --quiet -- schemas check --against git
cargo test --locked --all-targets "$@"
