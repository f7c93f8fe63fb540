-- Settings the seller saves in the console (issue 10 part 8): one row per key, overlaying the
-- configuration file's value of that key (`shop.name`, `risk.blocked_ips`, ...). `value` is
-- JSON; a secret (`smtp.password`) is kept only sealed in `secret`
-- (`kami/settings.secret/<key>`), never as JSON. Deleting a row returns the key to the
-- configuration's value. `settings_version.version` grows with every saved change, in the
-- same transaction: other kami processes on this database reload when it differs.
CREATE TABLE settings (
    key         TEXT    PRIMARY KEY,
    value       TEXT,
    secret      BLOB,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT    NOT NULL,
    CHECK ((value IS NULL) <> (secret IS NULL))
);
CREATE TABLE settings_version (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO settings_version (id, version) VALUES (1, 0);
