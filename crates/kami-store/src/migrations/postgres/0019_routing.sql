-- Routing and failover (issue 11 part 1).
-- A stored channel's amount limits, in minor units of the shop's currency (NULL: none).
ALTER TABLE channels ADD COLUMN min_amount BIGINT;
ALTER TABLE channels ADD COLUMN max_amount BIGINT;
ALTER TABLE channels ADD COLUMN daily_limit BIGINT;
-- Each (channel, method)'s health as the kami processes sharing this database last decided
-- it: written on every state change (with the ChannelDown alert signal in the same
-- transaction), read by every process every few seconds. `rest_until`: when down, until when
-- it takes no orders. `calls`/`failures`: the deciding process's window at the change.
CREATE TABLE channel_health (
    channel_id  TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    since       BIGINT NOT NULL,
    rest_until  BIGINT,
    calls       BIGINT NOT NULL DEFAULT 0,
    failures    BIGINT NOT NULL DEFAULT 0,
    last_code   TEXT,
    reason      TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (channel_id, method)
);
-- The day's paid total per channel (daily_limit).
CREATE INDEX payments_paid_at ON payments (paid_at) WHERE paid_at IS NOT NULL;
