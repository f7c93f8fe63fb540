-- Who changed what in the shop and when: one row per console or admin-API change, written in
-- the transaction that makes the change. `before` / `after` are JSON of the changed fields
-- (secrets are never put there); `actor` is "user:NAME", "token:NAME", "cli" or "system".
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    ip      TEXT,
    before  TEXT,
    after   TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_target ON audit_log (target, at);
