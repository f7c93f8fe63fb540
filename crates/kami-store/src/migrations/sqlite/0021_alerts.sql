-- Alerts (issue 11 part 3). `alert_conditions`: one row per condition (event, subject) an
-- `alert.signal` outbox row spoke of; `firing` changes only by compare-and-set, so a condition
-- alerts once and resolves once however many signals repeat it. `signal_id` is the outbox id
-- of the newest signal applied: an older one met later (another process claimed it) is stale.
-- `alert_targets`: targets the seller added in the console or the API (the configuration's
-- `[[alerts]]` are not stored); `settings` is JSON (url, chat_id, api_base, to), `secret` the
-- webhook secret or the Telegram bot token, sealed under the master key and bound to the
-- target's name (`kami/alert_targets.secret/<name>`). Deliveries are `alert.delivery` outbox
-- rows, listed newest first through `outbox_kind_id`.
CREATE TABLE alert_conditions (
    event        TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    firing       INTEGER NOT NULL DEFAULT 0,
    signal_id    INTEGER NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    resolved_at  INTEGER,
    details      TEXT    NOT NULL DEFAULT '{}',
    PRIMARY KEY (event, subject)
);
CREATE INDEX alert_conditions_firing ON alert_conditions (firing, first_seen);
CREATE TABLE alert_targets (
    name        TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    events      TEXT    NOT NULL,
    settings    TEXT    NOT NULL DEFAULT '{}',
    secret      BLOB,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX outbox_kind_id ON outbox (kind, id);
