#!/usr/bin/env bash
# Starts the local broker on $KAFKA_HOST:$KAFKA_PORT with durable SQLite storage under
# $LIENTHONG_DATA_DIR/broker, unless one already listens there. Idempotent.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
  exit 0
fi
"$(dirname "$0")/install-broker.sh"
dir=$LIENTHONG_DATA_DIR/broker
mkdir -p "$dir"
log "starting the broker on $KAFKA_HOST:$KAFKA_PORT (data in $dir)"
# Tansu opens the SQLite path relative to its working directory, so start it from there.
(
  cd "$dir"
  nohup "$TANSU_BIN" broker \
    --listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
    --advertised-listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" \
    --storage-engine sqlite://tansu.db >broker.log 2>&1 &
  echo $! >broker.pid
)
if ! wait_for_port "$KAFKA_HOST" "$KAFKA_PORT" 30; then
  log "the broker did not start; its log:"
  tail -n 30 "$dir/broker.log" >&2
  exit 1
fi
