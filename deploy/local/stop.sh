#!/usr/bin/env bash
# Stops the local hub and broker started by these scripts (PostgreSQL is the system's and stays).
set -euo pipefail
source "$(dirname "$0")/env.sh"

"$(dirname "$0")/stop-hub.sh"
pidfile=$LIENTHONG_DATA_DIR/broker/broker.pid
if [[ -f $pidfile ]]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
fi
