#!/usr/bin/env bash
# Apache Spark with Delta Lake, the tests' second independent Delta reader (and writer):
#   - pyspark from PyPI in its own venv, .cache/spark-venv (pyspark ships Spark's jars and runs them
#     with the machine's Java 17);
#   - Delta's jars from Maven Central, io.delta:delta-spark_2.13 and io.delta:delta-storage, copied by
#     Maven into $TIDE_CACHE_DIR/spark/delta-<version>/ (Maven's own cache: $TIDE_CACHE_DIR/m2).
# The tests hand those jars to Spark as `spark.jars`, so Spark resolves nothing at test time (no
# `--packages`, no Ivy). delta-spark 4.0.1's other runtime dependencies (scala-library 2.13,
# antlr4-runtime 4.13.1) are in pyspark's own jars/.
# Pinned versions; idempotent: when both are already there it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

# Delta 4.0.x is built for Spark 4.0 (its pom: spark-sql_2.13 4.0.1, provided). Later Delta releases
# (4.1+) target Spark 4.1 and pull in delta-kernel and Unity Catalog client jars.
PYSPARK_VERSION=4.0.1
DELTA_VERSION=4.0.1
VENV=.cache/spark-venv
CACHE_DIR=${TIDE_CACHE_DIR:-.cache}
JARS=$CACHE_DIR/spark/delta-$DELTA_VERSION
PY=${PYTHON:-python3}
JAR_NAMES=("delta-spark_2.13-$DELTA_VERSION.jar" "delta-storage-$DELTA_VERSION.jar")

have_pyspark() {
  "$VENV/bin/python" - "$PYSPARK_VERSION" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
import pyspark  # noqa: F401
sys.exit(0 if version("pyspark") == sys.argv[1] else 1)
PYEOF
}
have_jars() {
  for jar in "${JAR_NAMES[@]}"; do [ -s "$JARS/$jar" ] || return 1; done
}

if [ -x "$VENV/bin/python" ] && have_pyspark; then
  echo "spark: $VENV has pyspark $PYSPARK_VERSION"
else
  if [ ! -x "$VENV/bin/python" ] && ! "$PY" -m venv "$VENV" 2>/dev/null; then
    echo "spark: '$PY -m venv' failed; install the venv module (Debian: apt-get install python3-venv) or set PYTHON to a Python 3.9+ with it" >&2
    exit 1
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pyspark==$PYSPARK_VERSION"
  have_pyspark || { echo "spark: $VENV still lacks pyspark $PYSPARK_VERSION after pip install" >&2; exit 1; }
  echo "spark: installed pyspark $PYSPARK_VERSION in $VENV"
fi

if have_jars; then
  echo "spark: $JARS has Delta $DELTA_VERSION's jars"
else
  command -v mvn >/dev/null || { echo "spark: mvn (Maven) is needed to fetch Delta's jars from Maven Central" >&2; exit 1; }
  # Copy into a scratch dir and rename, so an interrupted run never leaves a directory that looks complete.
  staging=$JARS.tmp
  rm -rf "$staging"
  mkdir -p "$staging"
  for artifact in "io.delta:delta-spark_2.13:$DELTA_VERSION" "io.delta:delta-storage:$DELTA_VERSION"; do
    mvn -q -B "-Dmaven.repo.local=$CACHE_DIR/m2" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      "-Dartifact=$artifact" "-DoutputDirectory=$staging" >"$staging.log" 2>&1 || {
      echo "spark: mvn could not fetch $artifact from Maven Central:" >&2
      tail -20 "$staging.log" >&2
      exit 1
    }
  done
  rm -rf "$JARS" "$staging.log"
  mv "$staging" "$JARS"
  have_jars || { echo "spark: $JARS still lacks ${JAR_NAMES[*]} after mvn" >&2; exit 1; }
  echo "spark: fetched Delta $DELTA_VERSION's jars into $JARS"
fi
