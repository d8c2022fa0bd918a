#!/bin/sh
# The temporal-schema job of docker-compose.yml: creates Temporal's two databases on the
# compose PostgreSQL and brings their schemas to the version of this admin-tools image (the
# server's version). Every step is idempotent, so the job runs again on each `up`, and a newer
# TEMPORAL_VERSION in .env upgrades the schemas.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS names the PostgreSQL host}"
: "${POSTGRES_USER:?POSTGRES_USER is the role that creates the databases}"
: "${SQL_PASSWORD:?SQL_PASSWORD is its password}"
port=${DB_PORT:-5432}
schemas=/etc/temporal/schema/postgresql/v12

sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$port" -u "$POSTGRES_USER" "$@"; }

for db in temporal visibility; do
  name=temporal
  [ "$db" = visibility ] && name=temporal_visibility
  echo "Schema of database $name..."
  sql --db "$name" create
  sql --db "$name" setup-schema -v 0.0
  sql --db "$name" update-schema -d "$schemas/$db/versioned"
done
echo "Temporal's schemas are up to date."
