#!/bin/sh
# Creates the store's role and database (mha) beside Temporal's (temporal, temporal_visibility)
# on the first start of an empty data volume: the postgres image runs the scripts of
# /docker-entrypoint-initdb.d only then. It may be sourced or executed, so it sets no options;
# psql stops at the first error instead.
psql -v ON_ERROR_STOP=1 -v mha_password="${MHA_POSTGRES_PASSWORD:?MHA_POSTGRES_PASSWORD is not set}" \
  --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE ROLE mha LOGIN PASSWORD :'mha_password';
CREATE DATABASE mha OWNER mha;
SQL
