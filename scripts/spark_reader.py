#!/usr/bin/env python3
"""Apache Spark with Delta Lake as an independent reader (and writer) of Tide's tables, as a server.

Spark takes tens of seconds to start on a small machine, so one process serves a whole test file:
it starts one local SparkSession, then answers requests read from stdin, one JSON object a line,
each with one JSON line on stdout that starts with RESPONSE_PREFIX (Spark's own logs go to stderr).

    spark_reader.py --jars <jar,jar,...>

Requests ({"op": ...}) and answers:
  read     {"path", "version"?}  -> version, protocol, partition_columns, columns, row_count,
                                    rows (sorted by all columns; encoded as delta_reader.py does)
  history  {"path"}              -> history: DESCRIBE HISTORY, newest first (version, operation,
                                    operationParameters, engineInfo, isBlindAppend, readVersion)
  append   {"path", "rows"}      -> version: appends rows (objects keyed by column, values as
                                    delta_reader.py prints them) with a DataFrame write in append
                                    mode; the values are cast to the table's column types
  checkpoint {"path"}            -> version: writes a checkpoint of the latest version (Delta's
                                    DeltaLog.checkpoint, as Spark does every delta.checkpointInterval)
  sql      {"statement"}         -> rows: runs one Spark SQL statement (e.g. ALTER TABLE delta.`<path>`
                                    SET TBLPROPERTIES ...), its result rows as lists of strings
  stop     {}                    -> stops Spark and exits
Errors answer {"error": "<message>"} and the server goes on.

Values are encoded like delta_reader.py's: decimals as strings, timestamps as ISO 8601 UTC with
microseconds ("2024-01-02T03:04:05.123456Z"), dates as "YYYY-MM-DD", binary as hex, integers as
numbers (as strings beyond 2^53). Spark formats them itself (date_format in the UTC session time
zone, CAST to string), so nothing depends on Python's local time zone.
"""

import argparse
import json
import math
import os
import sys
import traceback

RESPONSE_PREFIX = "@tide-spark "
SAFE_INT = 2**53


def spark_session(jars):
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master("local[2]")
        .appName("tide-spark-reader")
        # Delta's jars from the setup step's cache: Spark resolves nothing at run time (no Ivy, no --packages).
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        # Short-lived and small: the C1 compiler only (faster warm-up) and a serial GC on two cores.
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        # Tables of a few thousand rows: interpreting is faster than compiling each query's code.
        .config("spark.sql.codegen.wholeStage", "false")
        # A small machine: no UI, no progress bars, one partition for shuffles and Delta's log replay.
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "2")
        .config("spark.databricks.delta.snapshotPartitions", "1")
        .config("spark.databricks.delta.stalenessLimit", "0")
        # The tests set old modification times on files; Spark must never clean up the log on its own.
        .config("spark.databricks.delta.properties.defaults.enableExpiredLogCleanup", "false")
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def encode(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -SAFE_INT <= value <= SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    raise TypeError(f"cannot encode {type(value).__name__} value {value!r}")


def sort_key(row):
    return tuple((v is not None, json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v) for v in row)


def portable(df):
    """Each column as a JSON-friendly value, formatted by Spark (see the module docstring)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = []
    for field in df.schema.fields:
        c = F.col(f"`{field.name}`")
        t = field.dataType
        if isinstance(t, (T.TimestampType, T.TimestampNTZType)):
            c = F.date_format(c, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'")
        elif isinstance(t, (T.DecimalType, T.DateType)):
            c = c.cast("string")
        elif isinstance(t, T.BinaryType):
            c = F.lower(F.hex(c))
        cols.append(c.alias(field.name))
    return df.select(*cols)


def delta_log(spark, path):
    return spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)


def latest_snapshot(spark, path):
    """Delta's snapshot of the latest version (DeltaLog.update: re-lists the log, as a new query does)."""
    none = spark._jvm.scala.Option.empty()
    return delta_log(spark, path).update(False, none, none)


def describe(spark, path):
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0].asDict()
    return {
        "version": latest_snapshot(spark, path).version(),
        "protocol": {
            "min_reader_version": detail["minReaderVersion"],
            "min_writer_version": detail["minWriterVersion"],
            "table_features": sorted(detail.get("tableFeatures") or []),
        },
        "partition_columns": list(detail["partitionColumns"]),
        "num_files": detail["numFiles"],
    }


def op_read(spark, req):
    reader = spark.read.format("delta")
    if req.get("version") is not None:
        reader = reader.option("versionAsOf", int(req["version"]))
    df = portable(reader.load(req["path"]))
    rows = [[encode(v) for v in r] for r in df.collect()]
    rows.sort(key=sort_key)
    out = describe(spark, req["path"]) if req.get("version") is None else {"version": int(req["version"])}
    out.update({"columns": df.columns, "row_count": len(rows), "rows": rows})
    return out


def op_history(spark, req):
    hist = spark.sql(f"DESCRIBE HISTORY delta.`{req['path']}`").collect()
    keep = ("version", "operation", "operationParameters", "engineInfo", "isBlindAppend", "readVersion")
    return {"history": [{k: encode(r[k]) for k in keep} for r in hist]}


def op_append(spark, req):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    path = req["path"]
    schema = spark.read.format("delta").load(path).schema
    as_text = T.StructType([T.StructField(f.name, T.StringType(), True) for f in schema.fields])
    data = [tuple(None if row.get(f.name) is None else str(row[f.name]) for f in schema.fields) for row in req["rows"]]
    df = spark.createDataFrame(data, as_text)
    typed = df.select(*[F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in schema.fields])
    typed.write.format("delta").mode("append").save(path)
    return {"version": describe(spark, path)["version"]}


def op_checkpoint(spark, req):
    snapshot = latest_snapshot(spark, req["path"])
    delta_log(spark, req["path"]).checkpoint(snapshot, spark._jvm.scala.Option.empty())
    return {"version": snapshot.version()}


def op_sql(spark, req):
    return {"rows": [[None if v is None else str(v) for v in r] for r in spark.sql(req["statement"]).collect()]}


OPS = {"read": op_read, "history": op_history, "append": op_append, "checkpoint": op_checkpoint, "sql": op_sql}


def answer(obj):
    sys.stdout.write(RESPONSE_PREFIX + json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jars", required=True, help="comma-separated Delta jars (delta-spark_2.13, delta-storage)")
    args = parser.parse_args()
    for jar in args.jars.split(","):
        if not os.path.isfile(jar):
            raise SystemExit(f"Delta jar {jar} is missing: run `bash scripts/setup-spark.sh`")
    spark = spark_session(args.jars)
    answer({"ready": True, "spark": spark.version})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if req.get("op") == "stop":
                break
            fn = OPS.get(req.get("op"))
            if fn is None:
                raise ValueError(f"unknown op {req.get('op')!r}; expected one of {', '.join(OPS)} or stop")
            answer(fn(spark, req))
        except Exception as e:  # noqa: BLE001 - every failure is answered, and the server goes on
            traceback.print_exc(file=sys.stderr)
            answer({"error": f"{type(e).__name__}: {e}".strip()[:4000]})
    spark.stop()
    answer({"stopped": True})


if __name__ == "__main__":
    main()
