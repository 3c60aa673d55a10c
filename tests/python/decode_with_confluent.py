"""Reads one record the hub published and decodes it with Confluent's own Python client.

The point is that nothing here knows about lienthong: a stock SchemaRegistryClient pointed at the
hub's HTTP port and a stock AvroDeserializer decode the record. Prints the key, headers and value
as one JSON object on stdout.
"""

import argparse
import json
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partition", type=int, required=True)
    parser.add_argument("--offset", type=int, required=True)
    args = parser.parse_args()

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "confluent-python-check",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(args.topic, args.partition, args.offset)])
    message = consumer.poll(30)
    consumer.close()
    if message is None or message.error():
        print(f"no record: {message.error() if message else 'timeout'}", file=sys.stderr)
        return 1
    value = deserializer(
        message.value(), SerializationContext(args.topic, MessageField.VALUE)
    )
    print(
        json.dumps(
            {
                "key": message.key().decode(),
                "headers": {k: v.decode() for k, v in (message.headers() or [])},
                "value": value,
            },
            default=str,
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
