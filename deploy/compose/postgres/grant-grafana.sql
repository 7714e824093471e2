-- Runs after `monitoring-exporter migrate` (the compose service "db-grants"), once the
-- migrations have granted the group role monitoring_reader its read access.
-- Creates (or updates) Grafana's login and grants it read-only access to schema monitoring.
-- psql variable: grafana_password.
\set ON_ERROR_STOP on

SELECT 'CREATE ROLE grafana LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana')
\gexec

ALTER ROLE grafana WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'grafana_password';
GRANT monitoring_reader TO grafana;

-- Defence in depth: Grafana runs whatever SQL a dashboard editor types.
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER ROLE grafana SET statement_timeout = '30s';
ALTER ROLE grafana SET search_path = monitoring;
