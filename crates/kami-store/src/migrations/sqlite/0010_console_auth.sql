-- The seller console's sign-in: per-user failed attempts and lock, the TOTP second factor
-- (secrets sealed under the master key, `sealed::place("admin_users.totp_secret", id)`), its
-- one-time recovery codes (SHA-256 only: they are 80 random bits), and server-side sessions
-- (only the SHA-256 of the cookie's value is stored).
ALTER TABLE admin_users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE admin_users ADD COLUMN locked_until INTEGER NOT NULL DEFAULT 0;
-- On once confirmed with a code; `totp_pending` holds an enrolment awaiting its first code.
ALTER TABLE admin_users ADD COLUMN totp_secret BLOB;
ALTER TABLE admin_users ADD COLUMN totp_pending BLOB;
-- The last time step a code was accepted for: a step is never accepted twice (replay).
ALTER TABLE admin_users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0;

CREATE TABLE admin_sessions (
    id            INTEGER PRIMARY KEY,
    token_hash    TEXT    NOT NULL UNIQUE,
    user_id       INTEGER NOT NULL REFERENCES admin_users(id) ON DELETE CASCADE,
    -- 1: the password was right, the second factor is still to come (only the code page).
    mfa_pending   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    -- Absolute expiry; idle expiry is `last_seen_at` + `console.idle_minutes`.
    expires_at    INTEGER NOT NULL,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id, created_at);

CREATE TABLE admin_recovery_codes (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES admin_users(id) ON DELETE CASCADE,
    code_hash  TEXT    NOT NULL,
    used_at    INTEGER,
    UNIQUE (user_id, code_hash)
);

-- The console's overview: today's orders by creation and by payment time.
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX orders_paid ON orders (paid_at) WHERE paid_at IS NOT NULL;
