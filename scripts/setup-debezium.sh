#!/usr/bin/env bash
# Debezium's PostgreSQL connector in Kafka Connect (standalone), for test/integration/sink-debezium.test.ts:
# the sink's `input.format: debezium` is tested on topics the real Debezium wrote, never on hand-written ones.
# Everything comes from Maven Central, resolved by Maven from generated poms (as src/stack/kafka.ts does for
# the broker) into $TIDE_CACHE_DIR/debezium/<version>/ (Maven's own cache: $TIDE_CACHE_DIR/m2):
#   runtime/                  org.apache.kafka:connect-runtime + connect-json + log4j: the worker's class path
#                             (`java -cp 'runtime/*' ConnectStandalone`). Its version is the Kafka that Debezium
#                             3.6.1.Final is built against (debezium-build-parent: version.kafka 4.3.0), not the
#                             broker's 4.4.0: with Connect 4.4.0 the connector's task fails at start with
#                             NoClassDefFoundError org/apache/kafka/common/utils/Sanitizer (Kafka 4.4 moved it to
#                             ...utils.internals). A 4.3 worker talks to the 4.4 broker like any client;
#   plugins/debezium-postgres io.debezium:debezium-connector-postgres with its runtime dependencies;
#   plugins/apicurio          io.apicurio:apicurio-registry-utils-converter, Apicurio's Avro converter (Confluent's
#                             io.confluent:kafka-connect-avro-converter is not on Maven Central). It is configured
#                             for Confluent's wire format (4-byte id, no headers) against our Apicurio registry.
# Plugins sit in Connect's plugin.path, so each gets its own class loader (their dependencies cannot clash with
# the runtime's). The 3.x converter is not on Maven Central (3.x's parent pom 3.0.9 is not served and no 3.x
# utils-converter jar exists there); 2.6.13.Final's client talks to Apicurio 3's v2 API.
# Pinned versions; idempotent: when everything is there it returns at once. Not part of `stack:up`: only the
# Debezium test needs it (.ci/run calls this script).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBEZIUM_VERSION=3.6.1.Final
CONNECT_VERSION=4.3.0 # Debezium 3.6.1.Final's version.kafka; see above
APICURIO_CONVERTER_VERSION=2.6.13.Final
LOG4J_VERSION=2.25.5
CACHE_DIR=${TIDE_CACHE_DIR:-.cache}
case "$CACHE_DIR" in /*) ;; *) CACHE_DIR=$PWD/$CACHE_DIR ;; esac
HOME_DIR=$CACHE_DIR/debezium/$DEBEZIUM_VERSION
MARKER=$HOME_DIR/complete

if [ -s "$MARKER" ] && [ -d "$HOME_DIR/runtime" ] && [ -d "$HOME_DIR/plugins/debezium-postgres" ] && [ -d "$HOME_DIR/plugins/apicurio" ]; then
  echo "debezium: $HOME_DIR has Debezium $DEBEZIUM_VERSION, Kafka Connect $CONNECT_VERSION and Apicurio's converter"
  exit 0
fi
command -v mvn >/dev/null || { echo "debezium: mvn (Maven) is needed to fetch Debezium and Kafka Connect from Maven Central" >&2; exit 1; }

pom() { # artifactId, dependencies…
  local name=$1
  shift
  cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tide.debezium</groupId>
  <artifactId>$name</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
$(for d in "$@"; do
    IFS=: read -r g a v <<<"$d"
    echo "    <dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
  done)
  </dependencies>
</project>
EOF
}

staging=$HOME_DIR.tmp
rm -rf "$staging"
mkdir -p "$staging"
fetch() { # target dir, artifactId, dependencies…
  local target=$1 name=$2
  shift 2
  mkdir -p "$staging/poms/$name"
  pom "$name" "$@" >"$staging/poms/$name/pom.xml"
  (cd "$staging/poms/$name" && mvn -q -B "-Dmaven.repo.local=$CACHE_DIR/m2" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies -DincludeScope=runtime \
    "-DoutputDirectory=$staging/$target") >"$staging/$name.log" 2>&1 || {
    echo "debezium: mvn could not resolve $* from Maven Central:" >&2
    tail -20 "$staging/$name.log" >&2
    exit 1
  }
}
echo "debezium: resolving Debezium $DEBEZIUM_VERSION, Kafka Connect $CONNECT_VERSION and Apicurio's converter from Maven Central (first run only)…"
fetch runtime connect-runtime "org.apache.kafka:connect-runtime:$CONNECT_VERSION" "org.apache.kafka:connect-json:$CONNECT_VERSION" \
  "org.apache.logging.log4j:log4j-core:$LOG4J_VERSION" "org.apache.logging.log4j:log4j-slf4j-impl:$LOG4J_VERSION"
fetch plugins/debezium-postgres debezium-postgres "io.debezium:debezium-connector-postgres:$DEBEZIUM_VERSION"
fetch plugins/apicurio apicurio-converter "io.apicurio:apicurio-registry-utils-converter:$APICURIO_CONVERTER_VERSION"
# The plugins share the worker's Kafka API classes (Connect loads org.apache.kafka.* from the worker first), so
# copies of kafka-clients / connect-api / slf4j in a plugin directory would only add noise.
rm -f "$staging"/plugins/*/kafka-clients-*.jar "$staging"/plugins/*/connect-api-*.jar "$staging"/plugins/*/slf4j-*.jar
rm -rf "$staging/poms" "$staging"/*.log
(cd "$staging" && find . -name '*.jar' | sort) >"$staging/complete"
rm -rf "$HOME_DIR"
mv "$staging" "$HOME_DIR"
echo "debezium: fetched into $HOME_DIR ($(wc -l <"$MARKER") jars)"
