#!/usr/bin/env bash
# Stops the hub and the sandbox started by demo.sh (SIGTERM: it commits acknowledged offsets and flushes first).
set -euo pipefail
source "$(dirname "$0")/env.sh"

# The hub first, then the sandbox it calls.
for name in hub sandbox; do
  pidfile=$LIENTHONG_DATA_DIR/$name.pid
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
done
