#!/usr/bin/env bash
# Stops a hub started by demo.sh (SIGTERM: it commits acknowledged offsets and flushes first).
set -euo pipefail
source "$(dirname "$0")/env.sh"

pidfile=$LIENTHONG_DATA_DIR/hub.pid
[[ -f $pidfile ]] || exit 0
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
fi
rm -f "$pidfile"
