#!/bin/sh
# Runs once, when the postgres service initialises an empty data volume: the platform's
# operational state gets its own database next to the Dagster instance's, owned by the same
# account (INTEGRATION_PLATFORM_DB_URL points at it).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c 'CREATE DATABASE integration_platform'
