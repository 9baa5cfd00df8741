#!/usr/bin/env bash
# Generate the next migration SQL with Prisma, offline.
#
# Prisma 7's `migrate dev` needs its native schema engine, which is downloaded
# from a host these machines cannot reach. Prisma 6.19's JS engine
# (`engine: "js"` + a driver adapter) runs `migrate diff` without it, so this
# script runs that version in a cache folder against the local database,
# already migrated to the latest committed migration:
#
#   npm run stack:up && node bin/tide.js app migrate
#   scripts/new-migration.sh add_order_notes
#
# The SQL lands in prisma/migrations/<timestamp>_<name>/migration.sql, in
# Prisma's format, so `prisma migrate deploy` applies it wherever the engine exists.
set -euo pipefail
name=${1:?usage: scripts/new-migration.sh <name>}
root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/.cache/prisma6-migrate"
# shellcheck disable=SC1091
[ -f "$root/.stack/env" ] && set -a && . "$root/.stack/env" && set +a
: "${DATABASE_URL:?DATABASE_URL is not set: run npm run stack:up first}"

mkdir -p "$work/prisma"
if [ ! -d "$work/node_modules/prisma" ]; then
  (cd "$work" && npm init -y >/dev/null && npm install --silent prisma@6.19 @prisma/adapter-pg@6.19 @prisma/client@6.19)
fi
# Prisma 6 wants the URL in the schema and the classic generator name.
sed -e '/moduleFormat/d' -e '/output /d' -e 's/"prisma-client"/"prisma-client-js"/' \
    -e 's/^  provider = "postgresql"/  provider = "postgresql"\n  url      = env("DATABASE_URL")/' \
    "$root/prisma/schema.prisma" > "$work/prisma/schema.prisma"
cat > "$work/prisma.config.ts" <<'TS'
import { defineConfig } from 'prisma/config';
import { PrismaPg } from '@prisma/adapter-pg';
export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: 'prisma/schema.prisma',
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL! }),
});
TS
# Generation does not use the engines; Prisma only checks that these files exist.
touch "$work/no-engine"
out="$root/prisma/migrations/$(date -u +%Y%m%d%H%M%S)_$name"
sql=$(cd "$work" && PRISMA_QUERY_ENGINE_LIBRARY="$work/no-engine" PRISMA_SCHEMA_ENGINE_BINARY="$work/no-engine" \
  npx prisma migrate diff --from-schema-datasource prisma/schema.prisma --to-schema-datamodel prisma/schema.prisma --script)
if ! grep -q '[A-Z]' <<<"$(grep -v '^--' <<<"$sql")"; then echo "schema and database agree: no migration needed"; exit 0; fi
mkdir -p "$out" && printf '%s\n' "$sql" > "$out/migration.sql"
echo "wrote $out/migration.sql"
