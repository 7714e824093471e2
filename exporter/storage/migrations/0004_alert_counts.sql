-- Migration 4: incidents by (status, severity) kept current by statement triggers, so
-- monitoring_alerts reads a few rows instead of scanning every open incident (a storm of
-- hundreds of thousands made that scan tens of milliseconds on every refresh).
--
-- Each backend adds to its own shard of rows: concurrent writers never wait on one hot row,
-- and a reader sums the shards. The totals are transactional (a rolled-back upsert counts
-- nothing) and hold across replicas, because PostgreSQL keeps them.
CREATE TABLE __SCHEMA__.system_alert_counts (
    status     text NOT NULL CHECK (status IN ('active', 'acknowledged', 'resolved')),
    severity   text NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    shard      smallint NOT NULL,
    n          bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (status, severity, shard)
);

-- SECURITY DEFINER: the service's role reads the counts but cannot write them directly.
-- Rows are locked in (status, severity) order, the same in every statement, so two writers
-- that share a shard queue rather than deadlock.
CREATE FUNCTION __SCHEMA__.count_alerts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO __SCHEMA__.system_alert_counts AS c (status, severity, shard, n)
        SELECT status, severity, pg_backend_pid() % 64, count(*)
        FROM new_rows GROUP BY status, severity ORDER BY status, severity
        ON CONFLICT (status, severity, shard)
        DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        -- the upsert's conflict path fires this for every statement, mostly with no rows
        IF NOT EXISTS (SELECT FROM new_rows) THEN
            RETURN NULL;
        END IF;
        INSERT INTO __SCHEMA__.system_alert_counts AS c (status, severity, shard, n)
        SELECT status, severity, pg_backend_pid() % 64, sum(d)
        FROM (SELECT status, severity, 1 AS d FROM new_rows
              UNION ALL
              SELECT status, severity, -1 FROM old_rows) AS moved
        GROUP BY status, severity HAVING sum(d) <> 0 ORDER BY status, severity
        ON CONFLICT (status, severity, shard)
        DO UPDATE SET n = c.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO __SCHEMA__.system_alert_counts AS c (status, severity, shard, n)
        SELECT status, severity, pg_backend_pid() % 64, -count(*)
        FROM old_rows GROUP BY status, severity ORDER BY status, severity
        ON CONFLICT (status, severity, shard)
        DO UPDATE SET n = c.n + excluded.n;
    ELSE  -- TRUNCATE
        DELETE FROM __SCHEMA__.system_alert_counts;
    END IF;
    RETURN NULL;
END
$$;

-- No write may slip between the initial count and the triggers.
LOCK TABLE __SCHEMA__.system_alerts IN SHARE MODE;

CREATE TRIGGER system_alerts_count_insert AFTER INSERT ON __SCHEMA__.system_alerts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.count_alerts();
CREATE TRIGGER system_alerts_count_update AFTER UPDATE ON __SCHEMA__.system_alerts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.count_alerts();
CREATE TRIGGER system_alerts_count_delete AFTER DELETE ON __SCHEMA__.system_alerts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.count_alerts();
CREATE TRIGGER system_alerts_count_truncate AFTER TRUNCATE ON __SCHEMA__.system_alerts
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.count_alerts();

INSERT INTO __SCHEMA__.system_alert_counts (status, severity, shard, n)
SELECT status, severity, 0, count(*) FROM __SCHEMA__.system_alerts GROUP BY status, severity;

CREATE TRIGGER system_alert_counts_touch BEFORE UPDATE ON __SCHEMA__.system_alert_counts
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.touch_updated_at();

REVOKE ALL ON __SCHEMA__.system_alert_counts FROM PUBLIC;
REVOKE ALL ON FUNCTION __SCHEMA__.count_alerts() FROM PUBLIC;
GRANT SELECT ON __SCHEMA__.system_alert_counts TO monitoring_reader, monitoring_writer;
ALTER TABLE __SCHEMA__.system_alert_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE __SCHEMA__.system_alert_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY reader_select ON __SCHEMA__.system_alert_counts FOR SELECT TO monitoring_reader
    USING (true);
CREATE POLICY writer_select ON __SCHEMA__.system_alert_counts FOR SELECT TO monitoring_writer
    USING (true);
CREATE POLICY owner_all ON __SCHEMA__.system_alert_counts FOR ALL TO CURRENT_USER
    USING (true) WITH CHECK (true);
