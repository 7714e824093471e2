-- Sessions of the operator console: a person pastes a token once and holds a cookie. They
-- live here, not in memory, so that every replica honours (and a sign-out ends) a session.
-- Only hashes of session ids are stored: a copy of the table signs nobody in.
CREATE TABLE __SCHEMA__.console_sessions (
    id_hash     bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    token_name  text NOT NULL CHECK (token_name <> ''),
    scopes      text[] NOT NULL,
    -- the anti-forgery token the page sends back in X-CSRF-Token on every write
    csrf_secret text NOT NULL CHECK (length(csrf_secret) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_expires_idx ON __SCHEMA__.console_sessions (expires_at);

-- ---------------------------------------------------------------- privileges and RLS
-- The writer signs people in and out (DELETE on this table alone: a session ended is gone);
-- the reader (Grafana's kind of login) has no business with sessions and is granted nothing.
REVOKE ALL ON __SCHEMA__.console_sessions FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON __SCHEMA__.console_sessions TO monitoring_writer;

SELECT __SCHEMA__.enable_row_security('console_sessions', true);
CREATE POLICY writer_delete ON __SCHEMA__.console_sessions FOR DELETE TO monitoring_writer
    USING (true);
