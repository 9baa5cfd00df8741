#!/usr/bin/env bash
# The Python venv the tests use as an independent Delta reader (delta-rs through the `deltalake`
# package, with pyarrow): .cache/venv, from PyPI, pinned versions. Idempotent: when the venv
# already has exactly these versions it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

DELTALAKE_VERSION=1.6.6
PYARROW_VERSION=26.0.1
# Confluent's stock Python Avro consumer (AvroDeserializer over fastavro): the tests decode Tide's topics with it.
CONFLUENT_KAFKA_VERSION=2.16.2
VENV=.cache/venv
PY=${PYTHON:-python3}

have() {
  "$VENV/bin/python" - "$DELTALAKE_VERSION" "$PYARROW_VERSION" "$CONFLUENT_KAFKA_VERSION" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
import confluent_kafka.schema_registry.avro  # its optional dependencies (fastavro, httpx, ...) are there too
sys.exit(0 if (version("deltalake"), version("pyarrow"), version("confluent-kafka")) == tuple(sys.argv[1:4]) else 1)
PYEOF
}

if [ -x "$VENV/bin/python" ] && have; then
  echo "python venv: $VENV has deltalake $DELTALAKE_VERSION, pyarrow $PYARROW_VERSION and confluent-kafka $CONFLUENT_KAFKA_VERSION"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    echo "python venv: '$PY -m venv' failed; install the venv module (Debian: apt-get install python3-venv) or set PYTHON to a Python 3.9+ with it" >&2
    exit 1
  fi
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "deltalake==$DELTALAKE_VERSION" "pyarrow==$PYARROW_VERSION" \
  "confluent-kafka[avro,schemaregistry]==$CONFLUENT_KAFKA_VERSION"
have || { echo "python venv: $VENV still lacks deltalake $DELTALAKE_VERSION / pyarrow $PYARROW_VERSION / confluent-kafka $CONFLUENT_KAFKA_VERSION after pip install" >&2; exit 1; }
echo "python venv: installed deltalake $DELTALAKE_VERSION, pyarrow $PYARROW_VERSION and confluent-kafka $CONFLUENT_KAFKA_VERSION in $VENV"
