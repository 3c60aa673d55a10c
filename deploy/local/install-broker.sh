#!/usr/bin/env bash
# Installs the local Kafka-protocol broker (Tansu, see docs/decisions/0001-local-broker.md) once;
# later runs reuse the binary. The build takes about 10 minutes on 2 cores.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if [[ -x $TANSU_BIN ]] && "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  exit 0
fi
log "installing tansu $TANSU_VERSION (once; about 10 minutes)"
cargo install tansu --locked --version "$TANSU_VERSION" --features libsql,dynostore
