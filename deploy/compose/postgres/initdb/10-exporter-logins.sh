#!/bin/sh
# Runs once, when the postgres container initialises an empty data volume.
# Creates the login the exporter connects as. It owns the "monitoring" schema that its
# migrations create (hence CREATE on the database) and may create the group roles
# monitoring_writer and monitoring_reader (hence CREATEROLE); it is not a superuser, so
# the row level security the migrations force applies to it.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v exporter_password="$(cat /run/secrets/exporter_db_password)" \
    -v dbname="$POSTGRES_DB" <<'SQL'
CREATE ROLE exporter LOGIN CREATEROLE PASSWORD :'exporter_password';
GRANT CREATE, CONNECT ON DATABASE :"dbname" TO exporter;
SQL
