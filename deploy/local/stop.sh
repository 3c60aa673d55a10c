#!/usr/bin/env bash
# Stops the local hub and broker started by these scripts (PostgreSQL is the system's and stays).
set -euo pipefail
source "$(dirname "$0")/env.sh"

"$(dirname "$0")/stop-hub.sh"
stop_broker "$LIENTHONG_BROKER_DIR"
