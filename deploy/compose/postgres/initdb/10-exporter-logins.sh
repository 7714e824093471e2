#!/bin/sh
# Runs once, as the superuser, when the postgres container initialises an empty data volume.
# Creates the exporter's two logins (README, "Storage"):
# - monitoring_owner runs `monitoring-exporter migrate` (the compose service "migrate") and
#   owns the "monitoring" schema it creates: CREATE on the database for that, CREATEROLE
#   because the first migration creates the group roles (it finds them here already). It is
#   not a superuser, so the row level security the migrations force applies to it too.
# - exporter is the service's login, granted only monitoring_writer: select, insert and
#   update under row level security; no delete, no DDL, no migrations.
# The group roles are created ahead of the migrations so the writer login is whole from the
# start; the migrations grant them their privileges.
set -eu

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner_password="$(cat /run/secrets/exporter_owner_db_password)" \
    -v exporter_password="$(cat /run/secrets/exporter_db_password)" \
    -v dbname="$POSTGRES_DB" <<'SQL'
CREATE ROLE monitoring_writer NOLOGIN;
CREATE ROLE monitoring_reader NOLOGIN;
CREATE ROLE monitoring_owner LOGIN CREATEROLE PASSWORD :'owner_password';
GRANT CREATE, CONNECT ON DATABASE :"dbname" TO monitoring_owner;
CREATE ROLE exporter LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'exporter_password';
GRANT monitoring_writer TO exporter;
SQL
