"""Decode Confluent-framed Avro values with Confluent's stock Python consumer code.

Reads a JSON list of {"topic": ..., "value": <hex>} from the file named by argv[1], decodes each value
with confluent_kafka's AvroDeserializer against the schema registry at argv[2] (fastavro underneath,
as a Python data engineer's consumer would), and prints one JSON line per message with every field
rendered by str() (datetimes, dates, Decimals and bytes as Python shows them). A value that the stock
deserializer cannot decode makes this script fail with its traceback.
"""
import json
import math
import sys

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def render(v):
    if isinstance(v, dict):
        return {k: render(x) for k, x in v.items()}
    if isinstance(v, list):
        return [render(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN or Infinity
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def main():
    messages = json.load(open(sys.argv[1]))
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": sys.argv[2]}))
    for m in messages:
        value = deserializer(bytes.fromhex(m["value"]), SerializationContext(m["topic"], MessageField.VALUE))
        print(json.dumps(render(value)))


main()
