#!/usr/bin/env bash
# Starts the local broker on $KAFKA_HOST:$KAFKA_PORT with durable SQLite storage under
# $LIENTHONG_BROKER_DIR (.data/broker), unless one already listens there. Idempotent.
# $LIENTHONG_BROKER_STORAGE chooses another Tansu storage engine (the bench's memory://tansu/,
# for produce figures only: it drops records when a consumer group resumes mid-partition).
#
# Tansu 0.6.0's SQLite store lacks an index on its record-header table, and consumers stall
# once the store grows (see shared BROKER.md). The index can only be added once the broker has
# created its schema, with the broker stopped: so the first start is followed by a stop, the
# index, and a second start. Later starts find it in place.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
  exit 0
fi
"$(dirname "$0")/install-broker.sh"
dir=$LIENTHONG_BROKER_DIR
storage=${LIENTHONG_BROKER_STORAGE:-sqlite://tansu.db}
mkdir -p "$dir"

start() {
  log "starting the broker on $KAFKA_HOST:$KAFKA_PORT (data in $dir)"
  # Tansu opens the SQLite path relative to its working directory, so start it from there.
  (
    cd "$dir"
    nohup "$TANSU_BIN" broker \
      --listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
      --advertised-listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
      --storage-engine "$storage" >>broker.log 2>&1 &
    echo $! >broker.pid
  )
  if ! wait_for_port "$KAFKA_HOST" "$KAFKA_PORT" 30; then
    log "the broker did not start; its log:"
    tail -n 30 "$dir/broker.log" >&2
    exit 1
  fi
}

# Prints "missing" when the store's header table exists without the index, "ok" when the index
# is there, "no-schema" before the broker created its tables.
index_state() {
  python3 - "$dir/tansu.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
print("no-schema" if "header" not in names else "ok" if "header_topition_offset" in names else "missing")
PY
}

start
[[ $storage == sqlite://* ]] || exit 0
for _ in $(seq 1 50); do
  [[ $(index_state) != no-schema ]] && break
  sleep 0.2
done
if [[ $(index_state) == missing ]]; then
  log "adding the header index Tansu's SQLite store lacks (once)"
  stop_broker "$dir"
  python3 - "$dir/tansu.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id)")
db.commit()
PY
  start
fi
