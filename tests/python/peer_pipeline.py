"""The pipeline a province would write without the hub, run by `lienthong bench` in the same
run as the hub's figures so their ratio is measured: each record parsed from JSON, validated
against the event's JSON Schema with formats (jsonschema), encoded in Avro with the Confluent
framing (fastavro, dates and timestamps converted as its logical types want), and produced by
an idempotent producer (confluent-kafka) with the same dossier keys, headers and broker as the
hub's.
Prints one JSON line: {"records_per_second": ...}.
"""

import argparse
import datetime
import io
import json
import struct
import sys
import time

import fastavro
import jsonschema
from confluent_kafka import Producer

WARM_UP = 200


def avro_value(schema, value, named):
    """`value` as fastavro writes `schema`: dates and timestamps as Python objects."""
    if isinstance(schema, str):
        return avro_value(named[schema], value, named) if schema in named else value
    if isinstance(schema, list):
        if value is None:
            return None
        branch = next(s for s in schema if s != "null")
        return avro_value(branch, value, named)
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return {f["name"]: avro_value(f["type"], value.get(f["name"]), named) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return value
    if kind == "array":
        return [avro_value(schema["items"], v, named) for v in value]
    logical = schema.get("logicalType")
    if logical == "date":
        return datetime.date.fromisoformat(value)
    if logical in ("timestamp-millis", "timestamp-micros"):
        return datetime.datetime.fromisoformat(value)
    return value


def main():
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "topic", "key", "payload", "schema", "avsc", "headers"):
        parser.add_argument("--" + name, required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--schema-id", type=int, default=1)
    parser.add_argument("--keys", type=int, default=1)
    args = parser.parse_args()

    text = open(args.payload, encoding="utf-8").read()
    validator_class = jsonschema.validators.validator_for(json.load(open(args.schema)))
    validator = validator_class(
        json.load(open(args.schema)), format_checker=validator_class.FORMAT_CHECKER
    )
    avsc = json.load(open(args.avsc))
    parsed = fastavro.parse_schema(avsc)
    headers = [(k, v.encode()) for k, v in json.load(open(args.headers))]
    framing = b"\0" + struct.pack(">I", args.schema_id)
    # Many dossiers, as the hub's figures: the example's code with another sequence each.
    day = args.key.rsplit("-", 1)[0]
    keys = [f"{day}-{i:06}" for i in range(args.keys)]
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
        }
    )

    failed = []

    def delivered(error, _message):
        if error is not None:
            failed.append(error)

    def publish(count):
        for i in range(count):
            record = json.loads(text)
            key = keys[i % len(keys)]
            record["dossier_code"] = key
            if not validator.is_valid(record):
                sys.exit("the example is invalid")
            out = io.BytesIO()
            out.write(framing)
            fastavro.schemaless_writer(out, parsed, avro_value(avsc, record, {}))
            while True:
                try:
                    producer.produce(
                        args.topic, out.getvalue(), key, headers=headers, on_delivery=delivered
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        if producer.flush(60) != 0 or failed:
            sys.exit(f"the broker did not take every record: {failed[:3]}")

    publish(min(WARM_UP, args.records))
    started = time.perf_counter()
    publish(args.records)
    elapsed = time.perf_counter() - started
    print(json.dumps({"records_per_second": args.records / max(elapsed, 1e-9)}))


if __name__ == "__main__":
    main()
