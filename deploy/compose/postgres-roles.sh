#!/bin/bash
# Runs once, when docker-compose's PostgreSQL initialises its data directory (docker-entrypoint-initdb.d):
# one login per run-time role, named <owner>_<role> as btcpred/common/config.py PostgresConfig.role_name does,
# each with its password from the shared secrets (/run/secrets/pg-<role>, the files btcpred/config/local.yaml
# names as localsecret:pg-<role>). The same roles rig/stack.py makes for the no-Docker stack.
set -euo pipefail
for role in loader trainer reporting; do
  password=$(cat "/run/secrets/pg-${role}")
  psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v name="${POSTGRES_USER}_${role}" -v pw="$password" <<'SQL'
CREATE ROLE :"name" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
GRANT CONNECT, TEMPORARY ON DATABASE btcpred TO :"name";
SQL
done
