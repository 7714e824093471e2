-- Migration 9: performance-log rollups. Per minute and per hour × operation type × operation
-- name × status: count, sum, min, max and a mergeable latency sketch (DDSketch buckets, 1 %
-- relative error: exporter/domain/sketch.py is the same formula in Python). They are kept by
-- the ingest's own statements (one statement trigger, which also keeps operation_histogram and
-- its exemplars), so a summary over a day reads a few thousand rows instead of sorting
-- millions, and they outlive the raw rows (retention.performance_log_rollups, default 400 d).

-- ---------------------------------------------------------------- the sketch, in SQL
-- The bucket of a duration in ms: ceil(ln(x) / ln(gamma)), gamma = 1.01 / 0.99; zero has its
-- own key. The literal is Python's repr of math.log(gamma), so both sides compute the same
-- double and agree on every key. Plain SQL functions are inlined into the queries using them.
CREATE FUNCTION __SCHEMA__.performance_sketch_key(ms double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms > 0 THEN ceil(ln(ms) / 0.020000666706669435::float8)::integer
                ELSE -2147483648 END
$$;

-- The value standing for a bucket: within 1 % of every duration in it.
CREATE FUNCTION __SCHEMA__.performance_sketch_value(k integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN k = -2147483648 THEN 0::float8
                ELSE 2 * exp(k * 0.020000666706669435::float8) / (1.01::float8 / 0.99::float8 + 1)
           END
$$;

-- Two sparse sketches (parallel key and count arrays, keys ascending) as one.
CREATE FUNCTION __SCHEMA__.performance_sketch_merge(
    k1 integer[], c1 bigint[], k2 integer[], c2 bigint[], OUT keys integer[], OUT counts bigint[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(k ORDER BY k), array_agg(c ORDER BY k)
    FROM (SELECT k, sum(c)::bigint AS c
          FROM (SELECT * FROM unnest(k1, c1) UNION ALL SELECT * FROM unnest(k2, c2)) AS u(k, c)
          GROUP BY k) AS m
$$;

-- The qs-quantiles of a merged sketch the way percentile_cont defines them (interpolating
-- between the ranks around q * (n - 1)), each rank's value clamped to the exact [lo, hi]: each
-- within 1 % of percentile_cont over the raw rows (exporter/domain/sketch.py, the same rule).
-- One walk over the buckets for every q: a loop here costs a tenth of a set-based query.
CREATE FUNCTION __SCHEMA__.performance_sketch_quantiles(
    keys integer[], counts bigint[], qs double precision[], lo double precision,
    hi double precision)
RETURNS double precision[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    n bigint := 0;
    c bigint;
    ranks bigint[];
    values_at double precision[];
    wanted integer;
    seen bigint := 0;
    i integer;
    j integer;
    p double precision;
    v double precision;
    out double precision[];
BEGIN
    IF keys IS NULL OR qs IS NULL THEN
        RETURN NULL;
    END IF;
    FOREACH c IN ARRAY counts LOOP
        n := n + c;
    END LOOP;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    -- the ranks wanted: floor and ceil of each position, ascending
    SELECT array_agg(DISTINCT r ORDER BY r) INTO ranks
    FROM unnest(qs) AS q, LATERAL (VALUES (floor(q * (n - 1))::bigint),
                                          (least(floor(q * (n - 1))::bigint + 1, n - 1))) AS x(r);
    values_at := array_fill(NULL::float8, ARRAY[cardinality(ranks)]);
    wanted := 1;
    FOR i IN 1 .. cardinality(keys) LOOP
        seen := seen + counts[i];
        WHILE wanted <= cardinality(ranks) AND ranks[wanted] < seen LOOP
            v := CASE WHEN keys[i] = -2147483648 THEN 0::float8
                      ELSE 2 * exp(keys[i] * 0.020000666706669435::float8)
                           / (1.01::float8 / 0.99::float8 + 1) END;
            values_at[wanted] := least(greatest(v, lo), hi);
            wanted := wanted + 1;
        END LOOP;
        EXIT WHEN wanted > cardinality(ranks);
    END LOOP;
    out := '{}';
    FOREACH p IN ARRAY qs LOOP
        p := p * (n - 1);
        i := array_position(ranks, floor(p)::bigint);
        j := array_position(ranks, least(floor(p)::bigint + 1, n - 1));
        out := out || (values_at[i] + (p - floor(p)) * (values_at[j] - values_at[i]));
    END LOOP;
    RETURN out;
END
$$;

-- The bucket of monitoring_operation_duration_seconds (the bounds of
-- exporter.domain.performance_log.DURATION_BUCKETS, le semantics; 18 is +Inf), as migration 6.
CREATE FUNCTION __SCHEMA__.performance_histogram_bucket(ms double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (18 - width_bucket(-ms / 1000.0, ARRAY[
               -3600, -900, -300, -60, -30, -10, -5, -2.5, -1, -0.5, -0.25, -0.1, -0.05,
               -0.025, -0.01, -0.005, -0.0025, -0.001]::float8[]))::smallint
$$;

-- Whole minutes and hours, in absolute time (no TimeZone setting moves them).
CREATE FUNCTION __SCHEMA__.performance_floor(t timestamptz, seconds integer) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(floor(extract(epoch FROM t) / seconds) * seconds)
$$;
CREATE FUNCTION __SCHEMA__.performance_ceil(t timestamptz, seconds integer) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(ceil(extract(epoch FROM t) / seconds) * seconds)
$$;

-- ---------------------------------------------------------------- the rollup tables
-- One row per period × operation × status per writing backend's shard (concurrent batches
-- never wait on one hot row; readers add the shards up). operation_name '' stands for none
-- (a key column cannot be NULL). keys/counts: the sketch, keys ascending.
CREATE TABLE __SCHEMA__.performance_log_rollups_minute (
    starts_at       timestamptz NOT NULL,
    operation_type  text NOT NULL,
    operation_name  text NOT NULL,
    status          text NOT NULL CHECK (status IN ('success', 'error', 'timeout')),
    shard           smallint NOT NULL,
    n               bigint NOT NULL CHECK (n > 0),
    sum_ms          double precision NOT NULL,
    min_ms          double precision NOT NULL,
    max_ms          double precision NOT NULL,
    keys            integer[] NOT NULL,
    counts          bigint[] NOT NULL CHECK (cardinality(counts) = cardinality(keys)),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (starts_at, operation_type, operation_name, status, shard)
);
CREATE TABLE __SCHEMA__.performance_log_rollups_hour
    (LIKE __SCHEMA__.performance_log_rollups_minute INCLUDING ALL);
CREATE TRIGGER performance_log_rollups_minute_touch BEFORE UPDATE
    ON __SCHEMA__.performance_log_rollups_minute
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.touch_updated_at();
CREATE TRIGGER performance_log_rollups_hour_touch BEFORE UPDATE
    ON __SCHEMA__.performance_log_rollups_hour
    FOR EACH ROW EXECUTE FUNCTION __SCHEMA__.touch_updated_at();

-- The latest trace id per histogram bucket: the exemplar of monitoring_operation_duration_
-- seconds, the same on every replica because it is PostgreSQL's.
ALTER TABLE __SCHEMA__.operation_histogram
    ADD COLUMN exemplar_trace_id text,
    ADD COLUMN exemplar_seconds double precision,
    ADD COLUMN exemplar_at timestamptz;

-- ---------------------------------------------------------------- what a window reads
-- The rollups of the whole minutes in [since, until): hour rows for the whole hours inside,
-- minute rows for the rest. Plain SQL (inlined): the planner sees three index range scans.
CREATE FUNCTION __SCHEMA__.performance_rollups(since timestamptz, until timestamptz)
RETURNS TABLE (starts_at timestamptz, minutes integer, operation_type text,
               operation_name text, status text, n bigint, sum_ms double precision,
               min_ms double precision, max_ms double precision, keys integer[],
               counts bigint[])
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.starts_at, 60, h.operation_type, h.operation_name, h.status, h.n, h.sum_ms,
           h.min_ms, h.max_ms, h.keys, h.counts
    FROM __SCHEMA__.performance_log_rollups_hour AS h
    WHERE h.starts_at >= __SCHEMA__.performance_ceil(since, 3600)
      AND h.starts_at < __SCHEMA__.performance_floor(until, 3600)
    UNION ALL
    SELECT m.starts_at, 1, m.operation_type, m.operation_name, m.status, m.n, m.sum_ms,
           m.min_ms, m.max_ms, m.keys, m.counts
    FROM __SCHEMA__.performance_log_rollups_minute AS m
    WHERE m.starts_at >= __SCHEMA__.performance_ceil(since, 60)
      AND m.starts_at < least(__SCHEMA__.performance_floor(until, 60),
                              __SCHEMA__.performance_ceil(since, 3600))
    UNION ALL
    SELECT m.starts_at, 1, m.operation_type, m.operation_name, m.status, m.n, m.sum_ms,
           m.min_ms, m.max_ms, m.keys, m.counts
    FROM __SCHEMA__.performance_log_rollups_minute AS m
    WHERE m.starts_at >= greatest(__SCHEMA__.performance_ceil(since, 60),
                                  __SCHEMA__.performance_ceil(since, 3600),
                                  __SCHEMA__.performance_floor(until, 3600))
      AND m.starts_at < __SCHEMA__.performance_floor(until, 60)
$$;

-- Per operation over the whole minutes of [since, until): counts by status, sum, extremes and
-- the merged sketch (for performance_sketch_quantiles). What Grafana's panels read.
CREATE FUNCTION __SCHEMA__.performance_summary(since timestamptz, until timestamptz)
RETURNS TABLE (operation_type text, operation_name text, n bigint, errors bigint,
               timeouts bigint, sum_ms double precision, min_ms double precision,
               max_ms double precision, keys integer[], counts bigint[])
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH r AS MATERIALIZED (
        -- a number per operation: grouping the buckets by it, not by two texts, is faster
        SELECT dense_rank() OVER (ORDER BY p.operation_type, p.operation_name)::integer AS op,
               p.*
        FROM __SCHEMA__.performance_rollups(since, until) AS p
    ), b AS (
        -- unnest in the select list streams (in FROM it fills a tuplestore per row)
        SELECT u.op, u.k, sum(u.c)::bigint AS c
        FROM (SELECT r.op, unnest(r.keys) AS k, unnest(r.counts) AS c FROM r) AS u
        GROUP BY 1, 2
    )
    SELECT t.operation_type, t.operation_name, t.n, t.errors, t.timeouts, t.sum_ms, t.min_ms,
           t.max_ms, s.keys, s.counts
    FROM (SELECT r.op, r.operation_type, r.operation_name, sum(r.n)::bigint AS n,
                 coalesce(sum(r.n) FILTER (WHERE r.status = 'error'), 0)::bigint AS errors,
                 coalesce(sum(r.n) FILTER (WHERE r.status = 'timeout'), 0)::bigint AS timeouts,
                 sum(r.sum_ms) AS sum_ms, min(r.min_ms) AS min_ms, max(r.max_ms) AS max_ms
          FROM r GROUP BY 1, 2, 3) AS t
    JOIN (SELECT b.op, array_agg(b.k ORDER BY b.k) AS keys, array_agg(b.c ORDER BY b.k) AS counts
          FROM b GROUP BY 1) AS s USING (op)
$$;

-- ---------------------------------------------------------------- kept by the ingest
-- SECURITY DEFINER: whoever inserts records keeps the rollups, without rights on them. Rows
-- are upserted in key order, table after table in the order of one plan, the same in every
-- statement, so two writers that share a shard queue rather than deadlock (PostgreSQL runs
-- each data-modifying CTE to completion whether or not the outer query reads it). UTC: minutes and
-- hours are those of absolute time.
CREATE FUNCTION __SCHEMA__.keep_performance_rollups() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC'
AS $$
DECLARE
    me smallint := pg_backend_pid() % 16;
BEGIN
    WITH per_key AS MATERIALIZED (
        SELECT date_trunc('minute', recorded_at) AS minute, operation_type,
               coalesce(operation_name, '') AS operation_name, status,
               __SCHEMA__.performance_sketch_key(duration_ms) AS k,
               __SCHEMA__.performance_histogram_bucket(duration_ms) AS bucket,
               count(*) AS n, sum(duration_ms) AS sum_ms, min(duration_ms) AS min_ms,
               max(duration_ms) AS max_ms
        FROM new_rows GROUP BY 1, 2, 3, 4, 5, 6
    ), by_minute AS MATERIALIZED (
        SELECT minute, operation_type, operation_name, status, k, sum(n)::bigint AS n,
               sum(sum_ms) AS sum_ms, min(min_ms) AS min_ms, max(max_ms) AS max_ms
        FROM per_key GROUP BY 1, 2, 3, 4, 5
    ), minutes AS (
        INSERT INTO __SCHEMA__.performance_log_rollups_minute AS r
            (starts_at, operation_type, operation_name, status, shard, n, sum_ms, min_ms,
             max_ms, keys, counts)
        SELECT minute, operation_type, operation_name, status, me, sum(n), sum(sum_ms),
               min(min_ms), max(max_ms), array_agg(k ORDER BY k), array_agg(n ORDER BY k)
        FROM by_minute GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (starts_at, operation_type, operation_name, status, shard) DO UPDATE SET
            n = r.n + excluded.n, sum_ms = r.sum_ms + excluded.sum_ms,
            min_ms = least(r.min_ms, excluded.min_ms), max_ms = greatest(r.max_ms, excluded.max_ms),
            (keys, counts) = (SELECT m.keys, m.counts FROM __SCHEMA__.performance_sketch_merge(
                                  r.keys, r.counts, excluded.keys, excluded.counts) AS m)
    ), hours AS (
        INSERT INTO __SCHEMA__.performance_log_rollups_hour AS r
            (starts_at, operation_type, operation_name, status, shard, n, sum_ms, min_ms,
             max_ms, keys, counts)
        SELECT hour, operation_type, operation_name, status, me, sum(n), sum(sum_ms),
               min(min_ms), max(max_ms), array_agg(k ORDER BY k), array_agg(n ORDER BY k)
        FROM (SELECT date_trunc('hour', minute) AS hour, operation_type, operation_name, status,
                     k, sum(n)::bigint AS n, sum(sum_ms) AS sum_ms, min(min_ms) AS min_ms,
                     max(max_ms) AS max_ms
              FROM by_minute GROUP BY 1, 2, 3, 4, 5) AS x
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (starts_at, operation_type, operation_name, status, shard) DO UPDATE SET
            n = r.n + excluded.n, sum_ms = r.sum_ms + excluded.sum_ms,
            min_ms = least(r.min_ms, excluded.min_ms), max_ms = greatest(r.max_ms, excluded.max_ms),
            (keys, counts) = (SELECT m.keys, m.counts FROM __SCHEMA__.performance_sketch_merge(
                                  r.keys, r.counts, excluded.keys, excluded.counts) AS m)
    ), exemplars AS (
        -- the latest record carrying a trace id, per histogram bucket
        SELECT DISTINCT ON (operation_type, status, bucket) operation_type, status, bucket,
               trace_id, seconds, recorded_at
        FROM (SELECT operation_type, status,
                     __SCHEMA__.performance_histogram_bucket(duration_ms) AS bucket,
                     request_details ->> 'trace_id' AS trace_id, duration_ms / 1000.0 AS seconds,
                     recorded_at
              FROM new_rows
              WHERE request_details ? 'trace_id'
                AND jsonb_typeof(request_details -> 'trace_id') = 'string') AS t
        ORDER BY operation_type, status, bucket, recorded_at DESC
    )
    INSERT INTO __SCHEMA__.operation_histogram AS h
        (operation_type, status, bucket, shard, n, sum_seconds, exemplar_trace_id,
         exemplar_seconds, exemplar_at)
    SELECT c.operation_type, c.status, c.bucket, me, c.n, c.sum_seconds, e.trace_id, e.seconds,
           e.recorded_at
    FROM (SELECT operation_type, status, bucket, sum(n)::bigint AS n,
                 sum(sum_ms) / 1000.0 AS sum_seconds
          FROM per_key GROUP BY 1, 2, 3) AS c
    LEFT JOIN exemplars AS e USING (operation_type, status, bucket)
    ORDER BY 1, 2, 3
    ON CONFLICT (operation_type, status, bucket, shard) DO UPDATE SET
        n = h.n + excluded.n, sum_seconds = h.sum_seconds + excluded.sum_seconds,
        (exemplar_trace_id, exemplar_seconds, exemplar_at) = (
            SELECT CASE WHEN newer THEN excluded.exemplar_trace_id ELSE h.exemplar_trace_id END,
                   CASE WHEN newer THEN excluded.exemplar_seconds ELSE h.exemplar_seconds END,
                   CASE WHEN newer THEN excluded.exemplar_at ELSE h.exemplar_at END
            FROM (SELECT excluded.exemplar_at IS NOT NULL
                         AND (h.exemplar_at IS NULL OR excluded.exemplar_at >= h.exemplar_at)
                         AS newer) AS x);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION __SCHEMA__.keep_performance_rollups() FROM PUBLIC;

-- One trigger keeps everything: the histogram's own (migration 6) goes.
LOCK TABLE __SCHEMA__.system_performance_logs IN SHARE MODE;
DROP TRIGGER system_performance_logs_count ON __SCHEMA__.system_performance_logs;
DROP FUNCTION __SCHEMA__.count_operations();
CREATE TRIGGER system_performance_logs_rollups AFTER INSERT
    ON __SCHEMA__.system_performance_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION __SCHEMA__.keep_performance_rollups();

-- Rolled up from the rows already stored, with no write slipping in between.
INSERT INTO __SCHEMA__.performance_log_rollups_minute
    (starts_at, operation_type, operation_name, status, shard, n, sum_ms, min_ms, max_ms, keys,
     counts)
SELECT minute, operation_type, operation_name, status, 0, sum(n), sum(sum_ms), min(min_ms),
       max(max_ms), array_agg(k ORDER BY k), array_agg(n ORDER BY k)
FROM (SELECT __SCHEMA__.performance_floor(recorded_at, 60) AS minute, operation_type,
             coalesce(operation_name, '') AS operation_name, status,
             __SCHEMA__.performance_sketch_key(duration_ms) AS k, count(*) AS n,
             sum(duration_ms) AS sum_ms, min(duration_ms) AS min_ms, max(duration_ms) AS max_ms
      FROM __SCHEMA__.system_performance_logs GROUP BY 1, 2, 3, 4, 5) AS x
GROUP BY 1, 2, 3, 4;
INSERT INTO __SCHEMA__.performance_log_rollups_hour
    (starts_at, operation_type, operation_name, status, shard, n, sum_ms, min_ms, max_ms, keys,
     counts)
SELECT hour, operation_type, operation_name, status, 0, sum(n), sum(sum_ms), min(min_ms),
       max(max_ms), array_agg(k ORDER BY k), array_agg(n ORDER BY k)
FROM (SELECT __SCHEMA__.performance_floor(starts_at, 3600) AS hour, operation_type,
             operation_name, status, u.k, sum(u.c)::bigint AS n, sum(sum_ms) AS sum_ms,
             min(min_ms) AS min_ms, max(max_ms) AS max_ms
      FROM __SCHEMA__.performance_log_rollups_minute, unnest(keys, counts) AS u(k, c)
      GROUP BY 1, 2, 3, 4, 5) AS x
GROUP BY 1, 2, 3, 4;

-- ---------------------------------------------------------------- retention
-- Rollups are kept longer than raw rows: hours for retention.performance_log_rollups, minutes
-- for retention.performance_log_minute_rollups (migrate stores both). The name check becomes
-- a pattern, so later migrations add kinds without rewriting a list.
ALTER TABLE __SCHEMA__.retention_policy DROP CONSTRAINT retention_policy_name_check;
ALTER TABLE __SCHEMA__.retention_policy
    ADD CONSTRAINT retention_policy_name_check CHECK (name ~ '^[a-z][a-z0-9_]*$');
INSERT INTO __SCHEMA__.retention_policy (name, keep) VALUES
    ('performance_log_rollups', interval '400 days'),
    ('performance_log_minute_rollups', interval '35 days')
ON CONFLICT (name) DO NOTHING;

-- SECURITY DEFINER: the writer has no DELETE. Never removes anything younger than the
-- policy, whatever cutoff the caller passes.
CREATE FUNCTION __SCHEMA__.prune_performance_rollups(
    minutes_before timestamptz, hours_before timestamptz)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
    minute_cut timestamptz :=
        __SCHEMA__.retention_cutoff('performance_log_minute_rollups', minutes_before);
    hour_cut timestamptz := __SCHEMA__.retention_cutoff('performance_log_rollups', hours_before);
BEGIN
    DELETE FROM __SCHEMA__.performance_log_rollups_minute WHERE starts_at < minute_cut;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'performance_log_rollups_minute'; deleted := n; RETURN NEXT;
    DELETE FROM __SCHEMA__.performance_log_rollups_hour WHERE starts_at < hour_cut;
    GET DIAGNOSTICS n = ROW_COUNT;
    table_name := 'performance_log_rollups_hour'; deleted := n; RETURN NEXT;
END
$$;

-- ---------------------------------------------------------------- privileges and RLS
REVOKE ALL ON __SCHEMA__.performance_log_rollups_minute, __SCHEMA__.performance_log_rollups_hour
    FROM PUBLIC;
GRANT SELECT ON __SCHEMA__.performance_log_rollups_minute, __SCHEMA__.performance_log_rollups_hour
    TO monitoring_reader, monitoring_writer;
REVOKE ALL ON FUNCTION __SCHEMA__.prune_performance_rollups(timestamptz, timestamptz)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION __SCHEMA__.prune_performance_rollups(timestamptz, timestamptz)
    TO monitoring_writer;
-- the read functions run with the caller's rights: Grafana's reader and the service may call
GRANT EXECUTE ON FUNCTION
    __SCHEMA__.performance_sketch_key(double precision),
    __SCHEMA__.performance_sketch_value(integer),
    __SCHEMA__.performance_sketch_merge(integer[], bigint[], integer[], bigint[]),
    __SCHEMA__.performance_sketch_quantiles(integer[], bigint[], double precision[],
                                            double precision, double precision),
    __SCHEMA__.performance_histogram_bucket(double precision),
    __SCHEMA__.performance_floor(timestamptz, integer),
    __SCHEMA__.performance_ceil(timestamptz, integer),
    __SCHEMA__.performance_rollups(timestamptz, timestamptz),
    __SCHEMA__.performance_summary(timestamptz, timestamptz)
    TO monitoring_reader, monitoring_writer;
SELECT __SCHEMA__.enable_row_security('performance_log_rollups_minute', false);
SELECT __SCHEMA__.enable_row_security('performance_log_rollups_hour', false);
