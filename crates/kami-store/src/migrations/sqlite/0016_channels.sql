-- Payment channels added through the admin API or the console (issue 10 part 6); channels of
-- the configuration file are not stored here. `methods`: JSON array of method names;
-- `settings`: JSON object of the kind's keys that are not key material, as given;
-- `secrets`: the key material (JSON object, key name → text) sealed under the master key and
-- bound to the channel id (`kami/channels.secrets/<id>`). `archived`: deleted by the seller
-- while payments point at it: it takes no orders and cannot be edited, but stays resolvable
-- for those payments' notifications, queries and refunds, and keeps its id. `revision` grows
-- with every change (an edit is a compare-and-set on it).
CREATE TABLE channels (
    id          TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    methods     TEXT    NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    weight      INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 1),
    enabled     INTEGER NOT NULL DEFAULT 1,
    archived    INTEGER NOT NULL DEFAULT 0,
    settings    TEXT    NOT NULL DEFAULT '{}',
    secrets     BLOB    NOT NULL,
    revision    INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
