#!/usr/bin/env bash
# Creates the local demo's throw-away secrets under $LIENTHONG_DATA_DIR/tls: a certificate
# authority, the hub's server certificate (for 127.0.0.1 and localhost), one client certificate
# per member system named on the command line, the key that seals the quarantine and the audit
# log's two keys. Never use these outside a laptop: the CA key sits next to them. Idempotent:
# existing files are kept.
set -euo pipefail
source "$(dirname "$0")/env.sh"

dir=$LIENTHONG_DATA_DIR/tls
mkdir -p "$dir"
cd "$dir"
umask 077

if [[ ! -f ca.pem ]]; then
  log "creating a throw-away CA and the hub's certificate in $dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=lienthong local demo CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile server.ext -out server.pem 2>/dev/null
  rm -f server.csr server.ext
fi
# Each a 32-byte secret in hex: the quarantine's sealing key, the audit log's Ed25519 signing
# seed and the key of its pseudonymous subject references.
for key in quarantine audit-signing audit-subject; do
  [[ -f $key.key ]] || openssl rand -hex 32 >"$key.key"
done
for system in "$@"; do
  [[ -f $system.pem ]] && continue
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$system" -keyout "$system.key" -out "$system.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$system.ext"
  openssl x509 -req -in "$system.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
    -extfile "$system.ext" -out "$system.pem" 2>/dev/null
  rm -f "$system.csr" "$system.ext"
done
