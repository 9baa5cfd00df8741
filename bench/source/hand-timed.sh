#!/usr/bin/env bash
# The hand-timed check of source-drain.ts' baseline: the same 1M-row transaction drained by pg_recvlogical
# from a plain shell (bash's `time`, no Node process anywhere), once over TCP (127.0.0.1, TLS off, as the
# bench and Tide connect) and once over the server's Unix socket (pg_recvlogical's default when no host is
# given, which is how it is usually run by hand), alternately, each on a fresh pgoutput slot after a
# CHECKPOINT, `sync` and a 3 s pause.
#
#   bash bench/source/hand-timed.sh [rows=1000000] [rounds=2]
#
# Needs the local stack (`npm run stack:up`). The table and row mirror bench/source/support.ts (COLUMNS, rowSql).
# Drops its database and slots at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=${1:-1000000}
ROUNDS=${2:-2}
set -a
# shellcheck disable=SC1091
source .stack/env
set +a
BIN=${TIDE_PG_BINDIR:-/usr/lib/postgresql/15/bin}
SOCKDIR=$(psql -Atc "SHOW unix_socket_directories" postgres | cut -d, -f1)
DB="hand_$(date +%s)"
psql -q -c "CREATE DATABASE $DB" postgres
cleanup() {
  psql -q -d "$DB" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()" >/dev/null 2>&1 || true
  psql -q -c "DROP DATABASE IF EXISTS $DB" postgres || true
}
trap cleanup EXIT
export PGDATABASE=$DB
psql -q -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE bench_rows (id bigint PRIMARY KEY, qty int NOT NULL, amount numeric(12,2) NOT NULL, name text NOT NULL,
  created_at timestamptz NOT NULL, active boolean NOT NULL, note text, score int);
CREATE PUBLICATION hand_pub FOR TABLE bench_rows;
SQL
for r in $(seq 1 "$ROUNDS"); do
  for t in tcp unix; do psql -q -Atc "SELECT pg_create_logical_replication_slot('hand_${t}_$r', 'pgoutput')" >/dev/null; done
done
echo "loading $ROWS rows in one transaction ..." >&2
psql -q -v ON_ERROR_STOP=1 -c "INSERT INTO bench_rows SELECT g, (g % 1000)::int, ((g % 1000000) / 100.0)::numeric(12,2), 'customer ' || g,
   timestamptz '2026-01-01' + g * interval '1 second', g % 2 = 0, md5(g::text) || ' note', (g % 97)::int FROM generate_series(1, $ROWS) g"
LSN=$(psql -Atc "SELECT pg_current_wal_lsn()")
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); target LSN $LSN" >&2

drain() { # $1 = tcp|unix, $2 = round
  local conn
  if [ "$1" = tcp ]; then conn="host=127.0.0.1 port=$PGPORT dbname=$DB sslmode=disable"; else conn="host=$SOCKDIR port=$PGPORT dbname=$DB"; fi
  psql -q -c CHECKPOINT
  sync
  sleep 3
  local start end
  start=$(date +%s.%N)
  "$BIN/pg_recvlogical" -d "$conn" --slot "hand_$1_$2" --start -o proto_version=1 -o publication_names=hand_pub --endpos "$LSN" -f /dev/null
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v n="$ROWS" -v t="$1" -v r="$2" \
    'BEGIN { printf "round %d  pg_recvlogical over %-4s  %6.2f s  %8.0f rows/s\n", r, t, e - s, n / (e - s) }'
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then drain tcp "$r"; drain unix "$r"; else drain unix "$r"; drain tcp "$r"; fi
done
