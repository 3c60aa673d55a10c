#!/usr/bin/env bash
# The README's test command (and CI's, through .ci/run): starts what the tests need (PostgreSQL,
# a broker of the run's own), runs the whole suite against them, then removes this run's test
# databases and its broker with its store. Each run gets its own databases, topic prefix and
# broker, so runs never see each other's data, and the demo's broker never fills with the
# suite's topics (deleting topics is no way out: Tansu 0.6.0 deletes them all).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$LIENTHONG_ROOT"

export LIENTHONG_TEST_RUN=${LIENTHONG_TEST_RUN:-r$(date +%s)$$}

# This run's databases, dropped when it ends, whichever way.
drop_run_databases() {
  psql -h "$PGHOST" -p "$PGPORT" -U postgres -qtA -c \
    "SELECT datname FROM pg_database WHERE datname LIKE 'lienthong_${LIENTHONG_TEST_RUN}_%'" |
    while read -r db; do
      [[ -n $db ]] && psql -h "$PGHOST" -p "$PGPORT" -U postgres -q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
    done
}

# The run's own broker and store, when it started one.
remove_run_broker() {
  if [[ $LIENTHONG_BROKER_DIR == "$LIENTHONG_DATA_DIR/test-broker-$LIENTHONG_TEST_RUN" ]]; then
    stop_broker "$LIENTHONG_BROKER_DIR"
    rm -rf "$LIENTHONG_BROKER_DIR"
  fi
}

clean_up_run() {
  drop_run_databases
  remove_run_broker
}
trap clean_up_run EXIT

"$LIENTHONG_ROOT/deploy/local/start-postgres.sh"
if [[ -z ${LIENTHONG_TEST_KAFKA:-} ]]; then
  KAFKA_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export KAFKA_PORT LIENTHONG_BROKER_DIR=$LIENTHONG_DATA_DIR/test-broker-$LIENTHONG_TEST_RUN
  "$LIENTHONG_ROOT/deploy/local/start-broker.sh"
  export LIENTHONG_TEST_KAFKA=$KAFKA_HOST:$KAFKA_PORT
fi

# Confluent's own Python client, to prove standard tooling reads what the hub writes; and the
# Python pipeline the bench's smoke run measures.
export LIENTHONG_TEST_PYTHON=${LIENTHONG_TEST_PYTHON:-$(python_venv)}

export LIENTHONG_TEST_DATABASE_URL=${LIENTHONG_TEST_DATABASE_URL:-postgres://$LIENTHONG_DB_USER@$PGHOST:$PGPORT/postgres}


cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
# No schema may change incompatibly: compared with the previous commit (no registry runs here).
cargo run --locked --quiet -- schemas check --against git
cargo test --locked --all-targets "$@"
# The bench still runs (a smoke run of seconds on a broker of its own; no figure is judged). On
# SQLite: its dossiers are consumed, and the memory engine drops records when a group resumes.
LIENTHONG_BENCH_PROFILE=debug LIENTHONG_BENCH_STORAGE=sqlite://tansu.db \
  "$LIENTHONG_ROOT/deploy/local/bench.sh" --records 300 --dossiers 10 --seed-citizens 1000
