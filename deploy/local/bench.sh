#!/usr/bin/env bash
# Runs `lienthong bench` (release build) against a broker of its own, started on a free port and
# removed with its store when the bench ends, so the bench never fills the store the demo and
# the tests use (deleting topics is no way out: Tansu 0.6.0 deletes them all). The broker runs
# Tansu's memory engine unless LIENTHONG_BENCH_STORAGE names another (sqlite://tansu.db for the
# figures the README quotes). PostgreSQL is the local one; the bench works in scratch databases
# it drops. Arguments go to `lienthong bench` (`--records`, `--dossiers`, `--seed-citizens`,
# `--offered-rate`).
# LIENTHONG_BENCH_PROFILE=debug skips the release build (the test command's smoke run).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$LIENTHONG_ROOT"

run=bench-$(date +%s)$$
export LIENTHONG_BROKER_DIR=$LIENTHONG_DATA_DIR/$run-broker
export LIENTHONG_BROKER_STORAGE=${LIENTHONG_BENCH_STORAGE:-memory://tansu/}
# The rate unary Publish is offered at for its latency figure: issue 21's goal is set per engine
# (20 000/s on memory, 2 000/s on sqlite); `--offered-rate` still overrides it.
if [[ $LIENTHONG_BROKER_STORAGE == memory://* ]]; then
  export LIENTHONG_BENCH_OFFERED_RATE=${LIENTHONG_BENCH_OFFERED_RATE:-20000}
else
  export LIENTHONG_BENCH_OFFERED_RATE=${LIENTHONG_BENCH_OFFERED_RATE:-2000}
fi
KAFKA_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export KAFKA_PORT
remove_bench_broker() {
  stop_broker "$LIENTHONG_BROKER_DIR"
  rm -rf "$LIENTHONG_BROKER_DIR"
}
trap remove_bench_broker EXIT

"$LIENTHONG_ROOT/deploy/local/start-postgres.sh"
"$LIENTHONG_ROOT/deploy/local/start-broker.sh"
"$LIENTHONG_ROOT/deploy/local/make-secrets.sh"
tls=$LIENTHONG_DATA_DIR/tls
export LIENTHONG_CONFIG=$LIENTHONG_ROOT/deploy/local/lienthong.toml
export LIENTHONG_DATABASE__URL=postgres://$LIENTHONG_DB_USER@$PGHOST:$PGPORT/$LIENTHONG_DB_NAME
export LIENTHONG_KAFKA__BOOTSTRAP_SERVERS=$KAFKA_HOST:$KAFKA_PORT
export LIENTHONG_AUDIT__SIGNING_KEY_FILE=$tls/audit-signing.key
export LIENTHONG_AUDIT__SUBJECT_KEY_FILE=$tls/audit-subject.key

if [[ ${LIENTHONG_BENCH_PROFILE:-release} == debug ]]; then
  cargo build --locked --quiet
  bin=$LIENTHONG_ROOT/target/debug/lienthong
else
  log "building the hub (release)"
  cargo build --locked --quiet --release
  bin=$LIENTHONG_ROOT/target/release/lienthong
fi
# The Python pipeline a province would write, measured in the same run.
export LIENTHONG_BENCH_PYTHON=${LIENTHONG_BENCH_PYTHON:-$(python_venv)}
log "bench against the broker on $KAFKA_HOST:$KAFKA_PORT ($LIENTHONG_BROKER_STORAGE)"
"$bin" bench "$@"
