-- Migration 5: least privilege. The service runs as a login granted only monitoring_writer;
-- this makes that login unable to remove anything younger than the retention the owner
-- configured, or to touch schema_migrations, and puts row level security on every table
-- (schema_migrations, the new retention_policy, every performance-log partition, present
-- and future).

-- ---------------------------------------------------------------- retention_policy
-- How long each kind of row is kept, written by `monitoring-exporter migrate` (the owner)
-- from the configured retention.*; the SECURITY DEFINER retention functions never remove
-- anything younger, whatever cutoff their caller passes.
CREATE TABLE __SCHEMA__.retention_policy (
    name        text PRIMARY KEY CHECK (name IN ('health_metrics', 'quality_indicators',
                                                 'resolved_alerts', 'performance_logs')),
    keep        interval NOT NULL CHECK (keep >= interval '0'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER retention_policy_touch BEFORE UPDATE ON __SCHEMA__.retention_policy
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.touch_updated_at();
-- The configuration's defaults, until `migrate` stores the configured values. A kind with
-- no row here is never removed.
INSERT INTO __SCHEMA__.retention_policy (name, keep) VALUES
    ('health_metrics', interval '30 days'),
    ('quality_indicators', interval '90 days'),
    ('resolved_alerts', interval '180 days'),
    ('performance_logs', interval '14 days');

-- The cutoff actually applied: the requested one, but never later than now() minus the
-- policy; NULL (remove nothing) for a NULL request or a kind without a policy. The policy
-- is taken as a number of seconds, so the caller's TimeZone cannot stretch a "day".
CREATE FUNCTION __SCHEMA__.retention_cutoff(kind text, requested timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT least(requested, now() - make_interval(secs => extract(epoch FROM p.keep)::float8))
    FROM __SCHEMA__.retention_policy AS p
    WHERE p.name = kind AND requested IS NOT NULL
$$;

-- Row level security on one table of the schema, forced (the owner is subject to it too),
-- with a policy per role: the reader and the writer select, the writer inserts when
-- ``writer_inserts``, and the table's owner may do everything (retention deletes as the
-- owner, through the SECURITY DEFINER functions).
CREATE FUNCTION __SCHEMA__.enable_row_security(tbl text, writer_inserts boolean)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner name;
BEGIN
    SELECT pg_get_userbyid(c.relowner) INTO STRICT owner
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = '__SCHEMA_NAME__' AND c.relname = tbl;
    EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', '__SCHEMA_NAME__', tbl);
    EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', '__SCHEMA_NAME__', tbl);
    EXECUTE format('CREATE POLICY reader_select ON %I.%I FOR SELECT TO monitoring_reader '
                   'USING (true)', '__SCHEMA_NAME__', tbl);
    EXECUTE format('CREATE POLICY writer_select ON %I.%I FOR SELECT TO monitoring_writer '
                   'USING (true)', '__SCHEMA_NAME__', tbl);
    IF writer_inserts THEN
        EXECUTE format('CREATE POLICY writer_insert ON %I.%I FOR INSERT TO monitoring_writer '
                       'WITH CHECK (true)', '__SCHEMA_NAME__', tbl);
    END IF;
    EXECUTE format('CREATE POLICY owner_all ON %I.%I FOR ALL TO %I USING (true) '
                   'WITH CHECK (true)', '__SCHEMA_NAME__', tbl, owner);
END
$$;

-- ---------------------------------------------------------------- retention functions
-- Partitions only for a bounded range around today: from the day before the retention
-- horizon (so a record just inside retention always has one) to two weeks ahead. Each new
-- partition gets row level security like every other table. Callers (the writers of several
-- replicas, retention) serialise on a transaction lock, so a partition is created once.
CREATE OR REPLACE FUNCTION __SCHEMA__.ensure_performance_log_partitions(
    first_day date, last_day date)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC'
AS $$
DECLARE
    horizon timestamptz := __SCHEMA__.retention_cutoff('performance_logs', 'infinity');
    day date;
    part text;
    created integer := 0;
BEGIN
    IF first_day IS NULL OR last_day IS NULL OR horizon IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(30803292583981684);
    day := greatest(first_day, horizon::date - 1);
    last_day := least(last_day, current_date + 14);
    WHILE day <= last_day LOOP
        part := 'system_performance_logs_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(format('%I.%I', '__SCHEMA_NAME__', part)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %I.system_performance_logs '
                'FOR VALUES FROM (%L) TO (%L)',
                '__SCHEMA_NAME__', part, '__SCHEMA_NAME__',
                day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            PERFORM __SCHEMA__.enable_row_security(part, true);
            created := created + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN created;
END
$$;

-- A day's partition holds [day, day + 1): it is dropped only when all of it is older than
-- the cutoff, and the cutoff is never later than the policy allows.
CREATE OR REPLACE FUNCTION __SCHEMA__.drop_performance_log_partitions(before_day date)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC'
AS $$
DECLARE
    cutoff timestamptz := __SCHEMA__.retention_cutoff('performance_logs', before_day);
    part record;
    dropped integer := 0;
BEGIN
    IF cutoff IS NULL THEN
        RETURN 0;
    END IF;
    FOR part IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = format('%I.system_performance_logs', '__SCHEMA_NAME__')::regclass
          AND c.relname ~ '^system_performance_logs_p[0-9]{8}$'
          AND to_date(substring(c.relname from '[0-9]{8}$'), 'YYYYMMDD') + 1 <= cutoff
    LOOP
        EXECUTE format('DROP TABLE %I.%I', '__SCHEMA_NAME__', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- Incidents expire by resolved_at and by updated_at: the writer may update an incident but
-- not its updated_at (a trigger sets it), so backdating resolved_at cannot make a recently
-- touched incident expire.
CREATE OR REPLACE FUNCTION __SCHEMA__.apply_retention(
    health_before timestamptz, quality_before timestamptz, alerts_before timestamptz)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    health_cut timestamptz := __SCHEMA__.retention_cutoff('health_metrics', health_before);
    quality_cut timestamptz := __SCHEMA__.retention_cutoff('quality_indicators', quality_before);
    alerts_cut timestamptz := __SCHEMA__.retention_cutoff('resolved_alerts', alerts_before);
BEGIN
    DELETE FROM __SCHEMA__.system_health_metrics WHERE recorded_at < health_cut;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'system_health_metrics'; deleted := n; RETURN NEXT;
    DELETE FROM __SCHEMA__.data_quality_indicators WHERE measured_at < quality_cut;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'data_quality_indicators'; deleted := n; RETURN NEXT;
    DELETE FROM __SCHEMA__.system_alerts
    WHERE status = 'resolved' AND resolved_at < alerts_cut AND updated_at < alerts_cut;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'system_alerts'; deleted := n; RETURN NEXT;
END
$$;

-- ---------------------------------------------------------------- privileges
-- The append-only tables: the service never updates a row there, and an update could
-- backdate rows into the reach of retention.
REVOKE UPDATE ON __SCHEMA__.system_health_metrics, __SCHEMA__.data_quality_indicators,
    __SCHEMA__.system_alert_events, __SCHEMA__.system_performance_logs FROM monitoring_writer;
DROP POLICY writer_update ON __SCHEMA__.system_health_metrics;
DROP POLICY writer_update ON __SCHEMA__.data_quality_indicators;
DROP POLICY writer_update ON __SCHEMA__.system_alert_events;
DROP POLICY writer_update ON __SCHEMA__.system_performance_logs;

-- Migration 1 granted INSERT and UPDATE on every table, schema_migrations included: a fake
-- version there would make `migrate` skip a real migration.
REVOKE ALL ON __SCHEMA__.schema_migrations, __SCHEMA__.retention_policy
    FROM PUBLIC, monitoring_writer, monitoring_reader;
GRANT SELECT ON __SCHEMA__.schema_migrations, __SCHEMA__.retention_policy
    TO monitoring_writer, monitoring_reader;
REVOKE ALL ON FUNCTION __SCHEMA__.retention_cutoff(text, timestamptz),
    __SCHEMA__.enable_row_security(text, boolean) FROM PUBLIC;

-- ---------------------------------------------------------------- row level security
-- Migrations 1 and 4 gave the owner's policies to whoever ran them. Point each at its table's
-- owner: the same role, unless the schema was handed to a dedicated owner since (REASSIGN
-- OWNED, README "Storage"), whose retention would otherwise see no rows under forced RLS.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.relname, pg_get_userbyid(c.relowner) AS owner
        FROM pg_policy AS p
        JOIN pg_class AS c ON c.oid = p.polrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = '__SCHEMA_NAME__' AND p.polname = 'owner_all'
    LOOP
        EXECUTE format('ALTER POLICY owner_all ON %I.%I TO %I',
                       '__SCHEMA_NAME__', t.relname, t.owner);
    END LOOP;
END
$$;

SELECT __SCHEMA__.enable_row_security('schema_migrations', false);
SELECT __SCHEMA__.enable_row_security('retention_policy', false);
SELECT __SCHEMA__.enable_row_security(c.relname, true)
FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = '__SCHEMA__.system_performance_logs'::regclass;
