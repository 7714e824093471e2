-- Migration 3: find the alerts whose auto_resolve_after has elapsed without scanning the table.
CREATE INDEX system_alerts_auto_resolve_idx
    ON __SCHEMA__.system_alerts (auto_resolve_at)
    WHERE auto_resolve AND status <> 'resolved';
