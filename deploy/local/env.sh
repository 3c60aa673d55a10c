# Shared settings of the local scripts; every value can be overridden from the environment.
# Sourced, not run.
LIENTHONG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export LIENTHONG_ROOT
# Everything the local broker and hub write lives here; delete the folder to start afresh.
export LIENTHONG_DATA_DIR=${LIENTHONG_DATA_DIR:-$LIENTHONG_ROOT/.data}
export KAFKA_HOST=${KAFKA_HOST:-127.0.0.1}
export KAFKA_PORT=${KAFKA_PORT:-9092}
# Where start-broker.sh keeps the broker's store (the test suite uses a throw-away one).
export LIENTHONG_BROKER_DIR=${LIENTHONG_BROKER_DIR:-$LIENTHONG_DATA_DIR/broker}
export PGHOST=${PGHOST:-127.0.0.1}
export PGPORT=${PGPORT:-5432}
export LIENTHONG_DB_USER=${LIENTHONG_DB_USER:-lienthong}
export LIENTHONG_DB_NAME=${LIENTHONG_DB_NAME:-lienthong}
export TANSU_VERSION=${TANSU_VERSION:-0.6.0}
export TANSU_BIN=${TANSU_BIN:-$HOME/.cargo/bin/tansu}

log() { printf '\033[1m[lienthong]\033[0m %s\n' "$*" >&2; }

# True when something accepts TCP connections on host $1, port $2.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Waits up to $3 seconds for host $1, port $2.
wait_for_port() {
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    port_open "$1" "$2" && return 0
    sleep 0.2
  done
  return 1
}

# Stops the broker whose store is in directory $1 (started by start-broker.sh), if it runs.
stop_broker() {
  local pidfile=$1/broker.pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping the broker (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$pidfile"
}

# The Python environment the tests and the bench share: Confluent's own client (to prove
# standard tooling reads what the hub writes) and the pipeline a province would write without
# the hub (jsonschema with its format checkers, fastavro), which the bench measures beside the
# hub; and OpenLineage's own client, whose model the lineage feed's events are checked against.
# Made once in the data directory; prints its python.
python_venv() {
  local venv=$LIENTHONG_DATA_DIR/venv
  if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import confluent_kafka, fastavro, jsonschema, rfc3339_validator, openlineage.client' 2>/dev/null; then
    log "installing confluent-kafka, fastavro, jsonschema and openlineage-python into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'confluent-kafka[avro,schemaregistry]==2.16.0' \
      'jsonschema[format-nongpl]==4.23.0' 'openlineage-python==1.54.0' >&2
  fi
  echo "$venv/bin/python"
}
