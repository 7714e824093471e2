-- Migration 11: stream tickets. A browser cannot set an Authorization header on a WebSocket
-- (or an EventSource), so it trades its token for a short-lived, single-use ticket
-- (POST /api/v1/stream/tickets) and puts that in the URL instead. Tickets live here, not in a
-- replica's memory, so a ticket issued by one replica opens a stream on any other. Only a
-- SHA-256 of each ticket is kept: a copy of the table opens nothing.
CREATE TABLE __SCHEMA__.stream_tickets (
    ticket_hash  bytea PRIMARY KEY CHECK (length(ticket_hash) = 32),
    -- the token the ticket was issued to, and its scopes then
    token_name   text NOT NULL CHECK (length(token_name) <= 200),
    scopes       text[] NOT NULL,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- issuing a ticket prunes the expired ones
CREATE INDEX stream_tickets_expires_idx ON __SCHEMA__.stream_tickets (expires_at);

-- The writer issues (INSERT), redeems (DELETE ... RETURNING, which reads) and prunes; the
-- reader (Grafana) has no business with tickets.
REVOKE ALL ON __SCHEMA__.stream_tickets FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON __SCHEMA__.stream_tickets TO monitoring_writer;
ALTER TABLE __SCHEMA__.stream_tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE __SCHEMA__.stream_tickets FORCE ROW LEVEL SECURITY;
CREATE POLICY writer_select ON __SCHEMA__.stream_tickets FOR SELECT TO monitoring_writer
    USING (true);
CREATE POLICY writer_insert ON __SCHEMA__.stream_tickets FOR INSERT TO monitoring_writer
    WITH CHECK (true);
CREATE POLICY writer_delete ON __SCHEMA__.stream_tickets FOR DELETE TO monitoring_writer
    USING (true);
CREATE POLICY owner_all ON __SCHEMA__.stream_tickets FOR ALL TO CURRENT_USER
    USING (true) WITH CHECK (true);
